//go:build chaosbug_removals

package poller

import "github.com/pcwatch/pcwatch/internal/resource"

// chaosListing is a DELIBERATE BUG, compiled only with the build tag
// chaosbug_removals, so that the chaos suite (test/chaos) can show it
// catches it: a failed subscription listing is taken for a complete, empty
// one, and the subscriptions it failed to list are reported removed.
func chaosListing(k *resource.Kind) func([]resource.Entity, error) ([]resource.Entity, error) {
	return func(ents []resource.Entity, err error) ([]resource.Entity, error) {
		if err != nil && k == resource.Subscriptions {
			return nil, nil
		}
		return ents, err
	}
}
