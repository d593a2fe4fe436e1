package diff_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// testdata/release-1 holds a state file written by pcwatch at commit
// 18649a1 (before the resource descriptors; schema 1): three poll cycles of
// cycle1..3.json, which leave records of every kind, a pending removal (s2),
// tombstones (s3, product P2), baselines of every kind and of a product
// view, and one deadline-ledger entry. This build must read it as that
// release would have: the same listing again gives only the removal that
// was due, and entities that come back continue their revisions.
type releaseListing struct {
	Customers       []pc.Customer                      `json:"customers"`
	Subscriptions   map[string][]pc.Subscription       `json:"subscriptions"`
	ManagedServices map[string][]pc.ManagedService     `json:"managedservices"`
	Products        map[string]map[string][]pc.Product `json:"products"`
}

func readReleaseListing(t *testing.T, n int) releaseListing {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "release-1", fmt.Sprintf("cycle%d.json", n)))
	if err != nil {
		t.Fatal(err)
	}
	var l releaseListing
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// pollRelease diffs and commits one cycle of a release listing and returns
// the events, as "<type> <entity> rev <n>".
func pollRelease(t *testing.T, st *state.Store, l releaseListing, now time.Time) []string {
	t.Helper()
	o := diff.Options{Source: "https://pc.test", Now: now, Cycle: 9}
	var got []string
	collect := func(res *diff.Result) {
		for _, env := range res.Change.Events {
			ev, err := events.Decode(env.Body)
			if err != nil {
				t.Fatal(err)
			}
			d, err := ev.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s %s rev %d", ev.Type, env.Entity, d.Revision))
		}
	}
	res, err := diff.CommitCustomerList(st, resource.CustomerEntities(l.Customers), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	collect(res)
	for _, c := range l.Customers {
		ents := resource.SubscriptionEntities(l.Subscriptions[c.ID])
		ents = append(ents, resource.ManagedServiceEntities(l.ManagedServices[c.ID])...)
		for tv, ps := range l.Products[c.ID] {
			ents = append(ents, resource.ProductEntities(tv, ps)...)
		}
		res, err := diff.CommitCustomer(st, &diff.Listing{CustomerID: c.ID, CustomerName: c.CompanyProfile.CompanyName,
			Kinds: []*resource.Kind{resource.Subscriptions, resource.ManagedServices, resource.Products}, Entities: ents,
			TargetViews: []string{"OnlineServices"}}, o)
		if err != nil {
			t.Fatal(err)
		}
		collect(res)
	}
	slices.Sort(got)
	return got
}

func TestReadsAStateFileOfTheRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	copyFile(t, filepath.Join("testdata", "release-1", "pcwatch.db"), path)
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	counts, err := st.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[*resource.Kind]int{resource.Customers: 2, resource.Subscriptions: 3, resource.ManagedServices: 2, resource.Products: 1}
	for _, k := range resource.All() {
		if counts.Records[k] != want[k] {
			t.Errorf("%s records: %d, want %d", k, counts.Records[k], want[k])
		}
	}
	if counts.Pending != 1 || counts.Ledger != 1 {
		t.Errorf("pending %d, ledger %d; want 1 and 1", counts.Pending, counts.Ledger)
	}
	err = st.View(func(r *state.ReadTx) error {
		snap, err := r.Customer("c1", resource.All()...)
		if err != nil {
			return err
		}
		if _, ok := snap.Pending[resource.Subscriptions]["s2"]; !ok {
			t.Errorf("s2's pending mark not read: %v", snap.Pending)
		}
		if snap.Tombs[resource.Subscriptions]["s3"] != 2 || snap.Tombs[resource.Products]["OnlineServices/P2"] != 2 {
			t.Errorf("tombstones not read: %v", snap.Tombs)
		}
		for _, k := range []*resource.Kind{resource.Subscriptions, resource.ManagedServices} {
			if !snap.Baselined[k] {
				t.Errorf("%s baseline not read", k)
			}
		}
		if !snap.BaselinedScopes[resource.Products]["OnlineServices"] || !r.Baselined(resource.Customers, "") {
			t.Errorf("product view or customer list baseline not read")
		}
		if rec := snap.Records[resource.ManagedServices]["Exchange"]; rec.Rev != 2 {
			t.Errorf("Exchange revision %d, want 2", rec.Rev)
		}
		key := deadline.LedgerKey("subscription/c1/s1", deadline.Cancellation, time.Date(2026, 1, 12, 10, 0, 0, 0, time.UTC), 72*time.Hour)
		if !r.LedgerHas(key) {
			t.Errorf("ledger entry %q not found", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	now := time.Date(2026, 1, 6, 13, 0, 0, 0, time.UTC)
	// The release's last listing again: only s2, missing from a second
	// listing, is removed.
	got := pollRelease(t, st, readReleaseListing(t, 3), now)
	if want := []string{"io.pcwatch.subscription.removed subscription/c1/s2 rev 2"}; !slices.Equal(got, want) {
		t.Errorf("the release's last listing again:\n got %q\nwant %q", got, want)
	}
	// What the release removed comes back and continues its revisions.
	got = pollRelease(t, st, readReleaseListing(t, 4), now.Add(time.Hour))
	want2 := []string{"io.pcwatch.product.added product/c1/OnlineServices/P2 rev 3", "io.pcwatch.subscription.created subscription/c1/s3 rev 3"}
	if !slices.Equal(got, want2) {
		t.Errorf("removed entities coming back:\n got %q\nwant %q", got, want2)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
