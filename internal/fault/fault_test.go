package fault

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		armed   []string
		wantErr string // in the error; "" for none
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{"state.commit.before", []string{"state.commit.before"}, ""},
		{"state.commit.after=3", []string{"state.commit.after"}, ""},
		{"poller.failed-listing-as-empty, relay.delete-before-ack", []string{"poller.failed-listing-as-empty", "relay.delete-before-ack"}, ""},
		{"chaosbug_ack", nil, `"chaosbug_ack" is not a fault point (known: state.commit.before, state.commit.after, poller.failed-listing-as-empty, relay.delete-before-ack)`},
		{"state.commit.puts", nil, "is not a fault point"},
		{"relay.delete-before-ack=2", nil, `deliberate bug, on or off: drop "=2"`},
		{"state.commit.after=0", nil, `"0" is not a hit count (want state.commit.after=N, N >= 1)`},
		{"state.commit.after=x", nil, "is not a hit count"},
		{"state.commit.after,state.commit.after=2", nil, "armed twice"},
		{"state.commit.after,", nil, `"" is not a fault point`},
	}
	for _, tt := range tests {
		p, err := Parse(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %v, want an error saying %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if got := strings.Join(p.Names(), ","); got != strings.Join(tt.armed, ",") {
			t.Errorf("Parse(%q) arms %q, want %q", tt.spec, got, tt.armed)
		}
	}
}

func TestHitCrashesAtTheNthHitOnly(t *testing.T) {
	p, err := Parse("state.commit.after=3")
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 5 {
		got = append(got, p.Hit(StateCommitAfter))
	}
	if want := []bool{false, false, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("hits of an armed point: %v, want %v", got, want)
	}
	if p.Hit(StateCommitBefore) {
		t.Error("a point that is not armed crashes")
	}
	var none *Plan
	if none.Hit(StateCommitAfter) || none.On(RelayDeleteBeforeAck) {
		t.Error("a nil plan arms something")
	}
}

func TestOn(t *testing.T) {
	p, err := Parse(PollerFailedListingAsEmpty)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !p.On(PollerFailedListingAsEmpty) {
			t.Errorf("an armed bug is off at its hit %d", i+1)
		}
	}
	if p.On(RelayDeleteBeforeAck) {
		t.Error("a bug that is not armed is on")
	}
}

// A call site naming a point of the wrong sort (or a typo) is a
// programming error that must not pass silently.
func TestWrongSortPanics(t *testing.T) {
	p, _ := Parse("")
	for name, f := range map[string]func(){
		"Hit of a bug":     func() { p.Hit(RelayDeleteBeforeAck) },
		"On of a crash":    func() { p.On(StateCommitAfter) },
		"Hit of a typo":    func() { p.Hit("state.comit.after") },
		"On of an unknown": func() { p.On("chaosbug_ack") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestBugs(t *testing.T) {
	if got := strings.Join(Bugs(), ","); got != "poller.failed-listing-as-empty,relay.delete-before-ack" {
		t.Errorf("Bugs() = %s", got)
	}
}
