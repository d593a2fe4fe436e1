package watcher

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/natstest"
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
