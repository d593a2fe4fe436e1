//go:build !chaosbug_ack

package relay

import "github.com/pcwatch/pcwatch/internal/state"

// chaosDeleteBeforeAck is a hook for the chaos suite's deliberate bug
// (build tag chaosbug_ack, see bug_ack.go). In every normal build it does
// nothing.
func chaosDeleteBeforeAck(Outbox, []state.OutboxRecord) {}
