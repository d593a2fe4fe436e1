package main

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// streamTypes counts the event types the watcher left in its data
// directory's stream.
func streamTypes(t *testing.T, dir string) map[events.Type]int {
	t.Helper()
	srv := natstest.StartAt(t, filepath.Join(dir, "nats"), -1)
	defer srv.Shutdown()
	out := map[events.Type]int{}
	for _, m := range natstest.ReadStream(t, natstest.Connect(t, srv.ClientURL()), stream.Name) {
		var ev struct {
			Type events.Type `json:"type"`
		}
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("undecodable event %s: %v", m.Header.Get(jetstream.MsgIDHeader), err)
		}
		out[ev.Type]++
	}
	return out
}

// The built watcher against a hostile Partner Center (issue 11): each
// answer fails what it is about, names it on stderr, never reads as a
// removal, and the rest is still polled. Two --once runs per case: a clean
// baseline, then the hostile one (removals need two complete listings, so
// a second hostile run follows where a false removal could appear).
func TestOnceAgainstHostilePartnerCenter(t *testing.T) {
	tok := []string{"PCWATCH_PC_TOKEN=tok"}
	for _, tc := range []struct {
		name    string
		hostile func(sim *pcsim.Sim, victim string) pcsim.Hostile
		extra   []string
		want    string // on stderr
		victim  bool   // the victim customer is named as failed
	}{
		{"malformed 200 bodies", func(_ *pcsim.Sim, v string) pcsim.Hostile {
			return pcsim.Hostile{Malformed: []pcsim.MalformedRule{{Scope: pcsim.Scope{Endpoint: pcsim.EndpointSubscriptions, Customers: []string{v}},
				Shapes: []string{pcsim.ShapeNull, pcsim.ShapeEmptyObject, pcsim.ShapeItemsEmpty}}}}
		}, nil, "wrong shape", true},
		{"endless paging", func(*pcsim.Sim, string) pcsim.Hostile {
			return pcsim.Hostile{EndlessPaging: &pcsim.EndlessPaging{Mode: pcsim.EndlessNewIDs}}
		}, []string{"--max-pages", "5"}, "raise --max-pages", false},
		{"huge Retry-After", func(_ *pcsim.Sim, v string) pcsim.Hostile {
			return pcsim.Hostile{Errors: []pcsim.ErrorRule{{Scope: pcsim.Scope{Endpoint: pcsim.EndpointSubscriptions, Customers: []string{v}},
				Status: 429, RetryAfter: 24 * time.Hour}}}
		}, nil, "Retry-After", true},
		{"redirect to another origin", func(_ *pcsim.Sim, v string) pcsim.Hostile {
			return pcsim.Hostile{Redirects: []pcsim.RedirectRule{{Scope: pcsim.Scope{Endpoint: pcsim.EndpointSubscriptions, Customers: []string{v}}, Status: 307}}}
		}, nil, "redirect", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, url := simServer(t, 8)
			off := httptest.NewServer(sim.OffOriginHandler())
			defer off.Close()
			sim.SetOffOriginURL(off.URL)
			victim := sim.State().Customers[3].ID
			dir := t.TempDir()
			if r := runBin(t, tok, runArgs(url, dir)...); r.code != 0 {
				t.Fatalf("baseline: exit %d\n%s", r.code, r.stderr)
			}
			if err := sim.SetHostile(tc.hostile(sim, victim)); err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				r := runBin(t, tok, runArgs(url, dir, tc.extra...)...)
				if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
					t.Fatalf("hostile run %d: exit %d, want 1 and %q on stderr:\n%s", run, r.code, tc.want, r.stderr)
				}
				named := strings.Contains(r.stderr, "customer "+victim+" (")
				if named != tc.victim {
					t.Fatalf("hostile run %d: victim named as failed: %v, want %v\n%s", run, named, tc.victim, r.stderr)
				}
				failed := 0
				for _, l := range strings.Split(r.stderr, "\n") {
					if strings.HasPrefix(l, "customer ") && !strings.HasPrefix(l, "customer list:") {
						failed++
					}
				}
				if want := map[bool]int{true: 1, false: 0}[tc.victim]; failed != want {
					t.Fatalf("hostile run %d: %d customers failed, want %d (the others are still polled):\n%s", run, failed, want, r.stderr)
				}
			}
			types := streamTypes(t, dir)
			for _, typ := range []events.Type{events.SubscriptionRemoved, events.CustomerRemoved, events.ManagedServiceRemoved, events.CustomerAdded} {
				if types[typ] > 0 {
					t.Errorf("hostile answers produced %d %s", types[typ], typ)
				}
			}
			if off := sim.CurrentOffOriginStats(); off.WithAuthorization > 0 {
				t.Errorf("the other origin received credentials %d times", off.WithAuthorization)
			}
		})
	}
}
