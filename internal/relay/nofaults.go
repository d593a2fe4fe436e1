//go:build !pcwatch_faults

package relay

import "github.com/pcwatch/pcwatch/internal/state"

// beforePublish does nothing. (A build with the tag pcwatch_faults can arm
// a deliberate bug here; see faults.go.)
func beforePublish(Outbox, []state.OutboxRecord) {}
