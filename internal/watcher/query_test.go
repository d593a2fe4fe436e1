package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/deadlinequery"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// queryState is a state file with customers c1..c3, each with
// subscriptions whose cancellation windows close 10h, 30h, ... apart, and
// one subscription whose facts no longer decode.
func queryState(t *testing.T, now time.Time) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ch state.Change
	for c := 1; c <= 3; c++ {
		name := fmt.Sprintf("Customer %d", c)
		if c == 3 {
			name = strings.Repeat("Ä", 2000) // a huge name: cut in replies
		}
		raw := fmt.Appendf(nil, `{"id":"c%d","companyProfile":{"companyName":%q}}`, c, name)
		ch.Puts = append(ch.Puts, state.Put{Kind: resource.Customers, Key: fmt.Sprintf("c%d", c), Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw}})
		for s := 1; s <= 4; s++ {
			closes := now.Add(time.Duration(10*c+30*s) * time.Hour)
			f := deadline.Facts{NCE: true, Status: "active", Quantity: s, CancelBy: closes, CancelSeenOpen: closes, Term: "P1Y"}
			raw := fmt.Appendf(nil, `{"id":"s%d","offerName":"Microsoft 365 E%d","quantity":%d,"status":"active","partnerId":"p%d"}`, s, s, s, c)
			ch.Puts = append(ch.Puts, state.Put{Kind: resource.Subscriptions, Key: fmt.Sprintf("c%d/s%d", c, s),
				Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: f.Encode()}})
		}
	}
	if err := st.Commit(&ch); err != nil {
		t.Fatal(err)
	}
	return st
}

func startQueryServer(t *testing.T, st *state.Store, clk clock.Clock) *nats.Conn {
	t.Helper()
	return startQueryServerOn(t, natstest.Start(t).ClientURL(), st, clk)
}

// startQueryServerOn runs the query server on the NATS server at url and
// returns once it answers.
func startQueryServerOn(t *testing.T, url string, st *state.Store, clk clock.Clock) *nats.Conn {
	t.Helper()
	wc := natstest.Connect(t, url)
	q := newQueryServer(wc, st, deadline.DefaultConfig(), clk, secret.New(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- q.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	nc := natstest.Connect(t, url)
	// Wait until the subscription is in place: a request answered.
	go func() {
		defer close(ready)
		for {
			rctx, c := context.WithTimeout(context.Background(), time.Second)
			_, err := deadlinequery.Fetch(rctx, nc, deadlinequery.Request{Within: "1h"}, 1)
			c()
			if err == nil || ctx.Err() != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the query server does not answer")
	}
	return nc
}

// The query answers what Upcoming computes, within the window, soonest
// first, page after page without a gap or a repeat; filters apply; names
// are cut to a bound.
func TestDeadlineQueryPages(t *testing.T) {
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	st := queryState(t, now)
	clk := clock.NewFake(now)
	nc := startQueryServer(t, st, clk)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	all, err := Upcoming(st, deadline.DefaultConfig(), now)
	if err != nil {
		t.Fatal(err)
	}
	within := 100 * time.Hour
	var want []string
	for _, u := range all {
		if !u.ClosesAt.After(now.Add(within)) {
			want = append(want, u.CustomerID+"/"+u.SubscriptionID+"/"+u.Rule)
		}
	}
	if len(want) < 5 {
		t.Fatalf("the fixture has %d deadlines in the window", len(want))
	}
	// Pages of two, followed by hand, while the clock moves: the window
	// stays the first page's.
	var got []string
	req := deadlinequery.Request{Within: within.String(), Limit: 2}
	var first deadlinequery.Reply
	for page := 0; page < 20; page++ {
		res, err := deadlinequery.Fetch(ctx, nc, req, 2)
		if err != nil {
			t.Fatal(err)
		}
		if page == 0 {
			first.AsOf, first.Until, first.Total = res.AsOf, res.Until, res.Total
		}
		for _, d := range res.Deadlines {
			got = append(got, d.CustomerID+"/"+d.SubscriptionID+"/"+d.Kind)
			if len(d.CustomerName) > deadlinequery.MaxFieldLen {
				t.Errorf("customer name of %d bytes", len(d.CustomerName))
			}
		}
		if len(got) >= first.Total {
			break
		}
		// The cursor of the last row: ask Fetch for one page only, so
		// build the next request from a raw reply.
		req.Cursor = deadlinequery.EncodeCursor(deadlinequery.KeyOf(res.Deadlines[len(res.Deadlines)-1]), first.AsOf, first.Until)
		clk.Advance(time.Minute)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pages:\n got %v\nwant %v", got, want)
	}
	if first.Total != len(want) || !first.Until.Equal(now.Add(within)) {
		t.Errorf("total %d until %v, want %d and %v", first.Total, first.Until, len(want), now.Add(within))
	}

	// Fetch follows the cursors itself.
	res, err := deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: within.String(), Limit: 3}, 0)
	if err != nil || len(res.Deadlines) != len(want) {
		t.Fatalf("Fetch: %d rows, %v; want %d", len(res.Deadlines), err, len(want))
	}
	// Filters.
	res, err = deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "1000h", Customers: []string{"c2"}, PartnerIDs: []string{"p2"}, Offers: []string{"* E1", "* E2"}, Kinds: []string{"cancellation"}, Types: []string{"subscription.cancellation-*"}}, 50)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 2 || len(res.Deadlines) != 2 || res.Deadlines[0].SubscriptionID != "s1" || res.Deadlines[1].SubscriptionID != "s2" || res.Deadlines[0].CustomerName != "Customer 2" {
		t.Errorf("filtered: %+v", res)
	}
	// Total counts beyond the rows asked for.
	res, err = deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "1000h"}, 1)
	if err != nil || len(res.Deadlines) != 1 || res.Total != 12 {
		t.Errorf("one row of all: %d rows, total %d, %v", len(res.Deadlines), res.Total, err)
	}
}

// A malformed request gets an error reply naming the field; a reply
// subject outside the inboxes gets no answer at all (the watcher may
// publish events: it must not publish where a request tells it to).
func TestDeadlineQueryRefuses(t *testing.T) {
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	st := queryState(t, now)
	nc := startQueryServer(t, st, clock.NewFake(now))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "168h", Kinds: []string{"bogus"}}, 10)
	var qe *deadlinequery.Error
	if !errors.As(err, &qe) || qe.Code != deadlinequery.CodeBadRequest || !strings.Contains(qe.Message, "kinds[0]") || qe.Temporary() {
		t.Errorf("bad kind: %v", err)
	}
	m, err := nc.RequestWithContext(ctx, deadlinequery.Subject, []byte(strings.Repeat("x", deadlinequery.MaxRequestBytes+1)))
	if err != nil || !strings.Contains(string(m.Data), `"bad_request"`) {
		t.Errorf("too large: %v %s", err, m.Data)
	}

	forged, err := nc.SubscribeSync("pcwatch.events.forged")
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(deadlinequery.Subject)
	msg.Reply = "pcwatch.events.forged"
	msg.Data = []byte(`{"within":"168h"}`)
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	// Requests are answered in order: once a later one is answered, the
	// forged one was handled.
	if _, err := deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "1h"}, 1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := forged.NextMsg(0); err == nil {
		t.Errorf("the watcher answered on %s: %s", m.Subject, m.Data)
	}
}

// Damaged records: the others are listed, with a warning that says the
// list may be incomplete (not silence, not an empty digest).
func TestDeadlineQueryDamagedState(t *testing.T) {
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	st := queryState(t, now)
	raw := []byte(`{"id":"bad","offerName":"x","status":"active"}`)
	if err := st.Commit(&state.Change{Puts: []state.Put{{Kind: resource.Subscriptions, Key: "c1/bad",
		Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: []byte(`{"nce":tru`)}}}}); err != nil {
		t.Fatal(err)
	}
	nc := startQueryServer(t, st, clock.NewFake(now))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "1000h"}, 50)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 12 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "c1/bad") || !strings.Contains(res.Warnings[0], "incomplete") {
		t.Errorf("total %d, warnings %q", res.Total, res.Warnings)
	}
}
