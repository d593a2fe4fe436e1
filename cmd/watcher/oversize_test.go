package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOversizedEventIsPublishedAndCounted is the bug report end to end: a
// subscription's friendly name grows to 1.2 MB, so its event is over the
// embedded NATS server's 1 MiB max_payload. It used to fail "nats: maximum
// payload exceeded" forever, hold every later event in the outbox and make
// --once exit 1 at every run. Now the run succeeds, the outbox empties, the
// event is in the stream (shrunk, same id) and `watcher state` counts it.
func TestOversizedEventIsPublishedAndCounted(t *testing.T) {
	sim, url := simServer(t, 3)
	tok := []string{"PCWATCH_PC_TOKEN=tok"}
	dir := t.TempDir()
	if r := runBin(t, tok, runArgs(url, dir)...); r.code != 0 {
		t.Fatalf("baseline run: exit %d\n%s", r.code, r.stderr)
	}
	c := sim.State().Customers[0]
	if len(c.Subscriptions) == 0 {
		t.Fatal("the simulator gave the first customer no subscription")
	}
	if err := sim.Rename(c.ID, c.Subscriptions[0].ID, strings.Repeat("Finance and Operations ", 1_200_000/23)); err != nil {
		t.Fatal(err)
	}
	before := streamIDs(t, dir)
	r := runBin(t, tok, runArgs(url, dir)...)
	if r.code != 0 {
		t.Fatalf("run with the oversized event: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "publishing it shrunk") {
		t.Errorf("the log does not say the event was shrunk:\n%s", r.stderr)
	}
	after := streamIDs(t, dir)
	if len(after) < len(before)+2 { // the updated event and the cycle summary at least
		t.Errorf("stream: %d events before, %d after", len(before), len(after))
	}

	s := runBin(t, nil, "state", "--data-dir", dir, "--format", "json")
	var sum struct {
		Outbox    int    `json:"outboxDepth"`
		Truncated uint64 `json:"eventsTruncated"`
		Dropped   uint64 `json:"eventsDropped"`
	}
	if s.code != 0 || json.Unmarshal([]byte(s.stdout), &sum) != nil || sum.Outbox != 0 || sum.Truncated != 1 || sum.Dropped != 0 {
		t.Fatalf("watcher state: exit %d, %s %s", s.code, s.stdout, s.stderr)
	}
	s = runBin(t, nil, "state", "--data-dir", dir)
	if !strings.Contains(s.stdout, "events too large for NATS: 1 published shrunk (data.truncated), 0 replaced by ops.event-dropped") {
		t.Errorf("watcher state does not show the count:\n%s", s.stdout)
	}
}
