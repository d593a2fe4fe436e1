package watcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Readiness reflects a customer list that keeps failing (defect 8 of issue
// 11: a cycle that polled nobody left /readyz at 200) and a cycle that
// could not run at all.
func TestReadinessReflectsFailingCycles(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nc := natstest.Connect(t, natstest.Start(t).ClientURL())
	h := &health{store: st, nc: nc, interval: time.Minute, started: time.Now(), listFailures: 2}
	ready := func() (bool, string) {
		ok, why := h.ready()
		return ok, strings.Join(why, "; ")
	}
	listFailed := &poller.Report{CustomerList: errors.New("customer 42 listed twice with different content")}
	steps := []struct {
		name  string
		do    func()
		ready bool
		why   string
	}{
		{"complete cycle", func() { h.cycled(&poller.Report{CustomerListOK: true}) }, true, ""},
		{"list failed once", func() { h.cycled(listFailed) }, true, ""},
		{"list failed twice", func() { h.cycled(listFailed) }, false, "customer list failed in the last 2 cycles"},
		{"list failed three times", func() { h.cycled(listFailed) }, false, "listed twice"},
		{"list back", func() { h.cycled(&poller.Report{CustomerListOK: true}) }, true, ""},
		{"cycle could not run", func() { h.cycleFailed(errors.New("committing to pcwatch.db: disk full")) }, false, "disk full"},
		{"next cycle fine", func() { h.cycled(&poller.Report{CustomerListOK: true}) }, true, ""},
	}
	for _, s := range steps {
		s.do()
		ok, why := ready()
		if ok != s.ready || !strings.Contains(why, s.why) {
			t.Fatalf("%s: ready %v (%q), want %v containing %q", s.name, ok, why, s.ready, s.why)
		}
	}
}

// A record damaged while the watcher runs (Open refuses a damaged file, so
// this is damage after start) is named by /api/state and /api/deadlines,
// which still show everything else.
func TestInspectAndUpcomingSkipDamagedRecords(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 4, Clock: clk, Token: "tok"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c := Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen, c.Once = srv.URL, t.TempDir(), -1, "", true
	if err := Run(context.Background(), Options{Config: c, Clock: clk, Logger: NewLogger(io.Discard, "text", "error"),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.DataDir, state.FileName)
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before, err := Upcoming(st, deadline.DefaultConfig(), clk.Now())
	if err != nil || len(before) == 0 {
		t.Fatalf("upcoming before the damage: %d, %v", len(before), err)
	}
	// Damage one subscription record in place: its key is stored as is,
	// its value (record version byte first) right after it.
	cust := sim.State().Customers[1]
	key := []byte(cust.ID + "/" + cust.Subscriptions[0].ID)
	db, _ := os.ReadFile(path)
	off := -1
	for i := bytes.Index(db, key); i >= 0; {
		if end := i + len(key); end < len(db) && db[end] >= 3 && db[end] <= 9 {
			off = end + 20
			break
		}
		j := bytes.Index(db[i+1:], key)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if off < 0 {
		t.Fatal("subscription record not found in the file")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{db[off] ^ 0x5a}, int64(off))
	f.Close()

	sum, err := Inspect(st)
	if err != nil || sum.DamagedCount != 1 || len(sum.PerCustomer) != 4 || !strings.Contains(strings.Join(sum.DamagedRecords, " "), string(key)) {
		t.Fatalf("Inspect: %v, damaged %d %v, customers %d", err, sum.DamagedCount, sum.DamagedRecords, len(sum.PerCustomer))
	}
	after, err := Upcoming(st, deadline.DefaultConfig(), clk.Now())
	var de *state.DamagedError
	if !errors.As(err, &de) || de.Count != 1 || len(after) == 0 {
		t.Fatalf("Upcoming: %d deadlines, %v; want the others and a DamagedError", len(after), err)
	}
	for _, d := range after {
		if d.CustomerID+"/"+d.SubscriptionID == string(key) {
			t.Errorf("the damaged subscription's deadline is still listed: %+v", d)
		}
	}
}
