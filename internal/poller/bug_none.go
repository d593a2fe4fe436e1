//go:build !chaosbug_removals

package poller

import "github.com/pcwatch/pcwatch/internal/resource"

// chaosListing is a hook for the chaos suite's deliberate bug (build tag
// chaosbug_removals, see bug_removals.go). In every normal build it
// returns a listing's result unchanged.
func chaosListing(*resource.Kind) func([]resource.Entity, error) ([]resource.Entity, error) {
	return func(ents []resource.Entity, err error) ([]resource.Entity, error) { return ents, err }
}
