package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/clock"
)

func TestBadFlagsExit2WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"--customers", "many"},
		{"--customers", "-1"},
		{"--clock", "start=yesterday"},
		{"--clock", "fake=soon"},
		{"--log-level", "loud"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if lines := strings.Count(errOut.String(), "\n"); lines != 1 || !strings.HasPrefix(errOut.String(), "pcsim: ") || out.Len() != 0 {
			t.Errorf("%v: stderr %q, stdout %q", args, errOut.String(), out.String())
		}
	}
}

func TestHelpExits0(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "--mutate-every") && !strings.Contains(errOut.String(), "-mutate-every") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestParseFlags(t *testing.T) {
	o, _, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--seed", "9", "--customers", "12", "--subs-per-customer", "3",
		"--token", "T", "--clock", "fake=2025-01-01T00:00:00Z", "--mutate-every", "2s", "--mutations", "4", "--include-refundable-in-list"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != "127.0.0.1:0" || o.Sim.Seed != 9 || o.Sim.Customers != 12 || o.Sim.SubscriptionsPerCustomer != 3 || o.Sim.Token != "T" ||
		o.MutateEvery.String() != "2s" || o.Mutations != 4 || !o.Sim.IncludeRefundableInList {
		t.Fatalf("options %+v", o)
	}
	if f, ok := o.Sim.Clock.(*clock.Fake); !ok || f.Now().Year() != 2025 {
		t.Fatalf("clock %#v", o.Sim.Clock)
	}
	if o.OffOriginAddr != "" {
		t.Fatalf("off-origin address by default %q, want empty (--listen's host, a free port)", o.OffOriginAddr)
	}
	if o, _, err = parseFlags([]string{"--off-origin-listen", "127.0.0.1:9999"}, &bytes.Buffer{}); err != nil || o.OffOriginAddr != "127.0.0.1:9999" {
		t.Fatalf("--off-origin-listen: %v %q", err, o.OffOriginAddr)
	}
	o, _, err = parseFlags([]string{"--clock", "start=2025-01-01T00:00:00Z,epoch=2025-01-01T00:00:00Z,speed=60"}, &bytes.Buffer{})
	if _, ok := o.Sim.Clock.(clock.Accelerated); err != nil || !ok {
		t.Fatalf("accelerated clock: %v %#v", err, o.Sim.Clock)
	}
}
