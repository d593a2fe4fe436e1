package clock

import (
	"strings"
	"testing"
	"time"
)

func TestAccelerated(t *testing.T) {
	wall := NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := Accelerated{Start: time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC), Epoch: wall.Now(), Speed: 3600, Wall: wall}
	wall.Advance(2 * time.Second)
	if got, want := a.Now(), time.Date(2030, 6, 1, 2, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("after 2 wall seconds at 3600x: %v, want %v", got, want)
	}
	// Two processes handed the same spec agree.
	b, err := Parse(a.String())
	if err != nil {
		t.Fatal(err)
	}
	bb := b.(Accelerated)
	bb.Wall = wall
	if !bb.Now().Equal(a.Now()) {
		t.Errorf("parsed clock reads %v, original %v", bb.Now(), a.Now())
	}
}

func TestParse(t *testing.T) {
	for _, spec := range []string{"", "real"} {
		if c, err := Parse(spec); err != nil || c != (Real{}) {
			t.Errorf("Parse(%q) = %v, %v", spec, c, err)
		}
	}
	for spec, want := range map[string]string{
		"start=x":                            "start",
		"speed=2":                            "start is required",
		"start=2026-01-01T00:00:00Z,speed=0": "must be positive",
		"start=2026-01-01T00:00:00Z,bogus=1": "unknown key",
		"nonsense":                           "not key=value",
	} {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", spec, err, want)
		}
	}
}

func TestFake(t *testing.T) {
	f := NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)))
	if f.Now().Location() != time.UTC {
		t.Error("Fake does not read UTC")
	}
	f.Advance(time.Hour)
	f.Set(f.Now().Add(time.Minute))
	if got := f.Now(); !got.Equal(time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)) {
		t.Errorf("Now = %v", got)
	}
}

func TestRate(t *testing.T) {
	a := Accelerated{Start: time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC), Speed: 3600}
	for _, tc := range []struct {
		c    Clock
		want float64
	}{{Real{}, 1}, {NewFake(time.Time{}), 1}, {a, 3600}, {&a, 3600}, {Accelerated{}, 1}} {
		if got := Rate(tc.c); got != tc.want {
			t.Errorf("Rate(%T) = %g, want %g", tc.c, got, tc.want)
		}
	}
	if Scale(2*time.Second, 3600) != 2*time.Hour || Scale(time.Minute, 1) != time.Minute || Scale(time.Minute, 0) != time.Minute {
		t.Error("Scale")
	}
}
