package natsembed_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/deadlinequery"
)

// The notifier identity may ask the watcher for its open deadlines (a
// request on pcwatch.query.deadlines) and the watcher identity may answer
// it (a publish on the asker's inbox), without a permission violation; the
// notifier still may not publish on the rest of pcwatch.>, and the
// watcher's right to answer stops at inboxes: a request naming a JetStream
// API subject as its reply cannot make the watcher delete the event
// stream.
func TestDeadlineQueryPermissions(t *testing.T) {
	s := startAuth(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	creds := s.Credentials()
	wc := mustDial(t, s.ClientURL(), creds.WatcherSeed)
	closes := time.Date(2026, 7, 2, 0, 0, 0, 0, time.UTC)
	sub, err := wc.Subscribe(deadlinequery.Subject, func(m *nats.Msg) {
		b, _ := json.Marshal(deadlinequery.Reply{AsOf: closes.Add(-time.Hour), Until: closes.Add(time.Hour), Total: 1,
			Deadlines: []deadlinequery.Deadline{{CustomerID: "c1", SubscriptionID: "s1", Kind: "cancellation", ClosesAt: closes}}})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := wc.FlushTimeout(testTimeout); err != nil {
		t.Fatal(err)
	}

	nc := mustDial(t, s.ClientURL(), creds.NotifierSeed)
	res, err := deadlinequery.Fetch(ctx, nc, deadlinequery.Request{Within: "24h"}, 50)
	if err != nil {
		t.Fatalf("the notifier asking for deadlines: %v; violations: %v", err, s.violations())
	}
	if res.Total != 1 || len(res.Deadlines) != 1 || res.Deadlines[0].SubscriptionID != "s1" {
		t.Errorf("reply %+v", res)
	}
	if v := s.violations(); len(v) != 0 {
		t.Fatalf("asking and answering hit permission violations:\n%s", strings.Join(v, "\n"))
	}

	if err := refused(t, s, "pcwatch.query.other", []byte(`{}`)); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("the notifier publishing on pcwatch.query.other: %v, want a permission violation", err)
	}
	// The watcher answering a reply subject outside the inboxes.
	m := nats.NewMsg("$JS.API.STREAM.DELETE.PCWATCH_EVENTS")
	if err := wc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := wc.FlushTimeout(testTimeout); err != nil {
		t.Fatal(err)
	}
	if err := wc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("the watcher publishing on a JetStream API subject it was not given: %v, want a permission violation", err)
	}
}
