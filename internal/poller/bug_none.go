//go:build !chaosbug_removals

package poller

import pc "github.com/pcwatch/pcwatch/internal/partnercenter"

// chaosSubscriptionListing is a hook for the chaos suite's deliberate bug
// (build tag chaosbug_removals, see bug_removals.go). In every normal build
// it returns its arguments unchanged.
func chaosSubscriptionListing(subs []pc.Subscription, err error) ([]pc.Subscription, error) {
	return subs, err
}
