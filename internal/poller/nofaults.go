//go:build !pcwatch_faults

package poller

import "github.com/pcwatch/pcwatch/internal/resource"

// listed is what the poller makes of a listing's result: the result. (A
// build with the tag pcwatch_faults can arm a deliberate bug here; see
// faults.go.)
func listed(_ *resource.Kind, ents []resource.Entity, err error) ([]resource.Entity, error) {
	return ents, err
}
