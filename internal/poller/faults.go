//go:build pcwatch_faults

package poller

import (
	"github.com/pcwatch/pcwatch/internal/fault"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// listed is what the poller makes of a listing's result. With the fault
// poller.failed-listing-as-empty armed (package fault) it is a DELIBERATE
// BUG, for the chaos suite (test/chaos) to show it catches it: a failed
// subscription listing is taken for a complete, empty one, and the
// subscriptions it failed to list are reported removed.
func listed(k *resource.Kind, ents []resource.Entity, err error) ([]resource.Entity, error) {
	if err != nil && k == resource.Subscriptions && fault.On(fault.PollerFailedListingAsEmpty) {
		return nil, nil
	}
	return ents, err
}
