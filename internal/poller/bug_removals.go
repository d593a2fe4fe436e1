//go:build chaosbug_removals

package poller

import pc "github.com/pcwatch/pcwatch/internal/partnercenter"

// chaosSubscriptionListing is a DELIBERATE BUG, compiled only with the
// build tag chaosbug_removals, so that the chaos suite (test/chaos) can
// show it catches it: a failed subscription listing is taken for a
// complete, empty one, and the subscriptions it failed to list are
// reported removed.
func chaosSubscriptionListing(subs []pc.Subscription, err error) ([]pc.Subscription, error) {
	if err != nil {
		return nil, nil
	}
	return subs, err
}
