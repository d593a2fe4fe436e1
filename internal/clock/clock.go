// Package clock provides the time sources pcwatch runs on.
//
// Every component that reasons about Partner Center time (deadlines, the
// simulator's NCE lifecycle, the poller's bookkeeping) takes a Clock instead of
// calling time.Now, so tests drive time explicitly and the demo can run an
// accelerated calendar.
package clock

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Clock tells the current time. Implementations are safe for concurrent use.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock. Its zero value is ready to use.
type Real struct{}

// Now returns time.Now().UTC().
func (Real) Now() time.Time { return time.Now().UTC() }

// Fake is a manually driven clock for tests. The zero value starts at the
// zero time; use NewFake to start elsewhere.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t.UTC()} }

// Now returns the clock's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d (a negative d moves it back).
func (f *Fake) Advance(d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	return f.now
}

// Set moves the clock to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t.UTC()
}

// Accelerated maps wall time onto a faster calendar: at wall instant Epoch
// it reads Start, and every wall second adds Speed seconds. Two processes
// given the same Accelerated value agree on the time, which is how the
// watcher and a separately running simulator share an accelerated calendar.
type Accelerated struct {
	Start time.Time // simulated instant at Epoch
	Epoch time.Time // wall instant at which the clock reads Start
	Speed float64   // simulated seconds per wall second; 0 means 1
	Wall  Clock     // wall source; nil means Real
}

// Now returns the accelerated time.
func (a Accelerated) Now() time.Time {
	wall := a.Wall
	if wall == nil {
		wall = Real{}
	}
	speed := a.Speed
	if speed == 0 {
		speed = 1
	}
	elapsed := wall.Now().Sub(a.Epoch)
	return a.Start.Add(time.Duration(float64(elapsed) * speed)).UTC()
}

// Rate is how many of c's seconds pass per wall second: an Accelerated
// clock's Speed, 1 for any other clock. Durations meant in wall time (a
// poll interval, a grace) are multiplied by it to compare with c's times.
func Rate(c Clock) float64 {
	switch a := c.(type) {
	case Accelerated:
		if a.Speed > 0 {
			return a.Speed
		}
	case *Accelerated:
		if a != nil && a.Speed > 0 {
			return a.Speed
		}
	}
	return 1
}

// Scale multiplies a wall duration by rate (see Rate).
func Scale(d time.Duration, rate float64) time.Duration {
	if rate <= 0 || rate == 1 {
		return d
	}
	return time.Duration(float64(d) * rate)
}

// String renders the clock as a spec that Parse accepts.
func (a Accelerated) String() string {
	return fmt.Sprintf("start=%s,epoch=%s,speed=%g",
		a.Start.UTC().Format(time.RFC3339Nano), a.Epoch.UTC().Format(time.RFC3339Nano), a.Speed)
}

// Parse reads a clock spec: "" or "real" for the wall clock, or
// "start=RFC3339,epoch=RFC3339,speed=N" for an Accelerated clock (epoch
// defaults to now, speed to 1). It exists so that cooperating processes
// (watcher, simulator, test harness) can be handed the same calendar.
func Parse(spec string) (Clock, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "real" {
		return Real{}, nil
	}
	a := Accelerated{Epoch: time.Now().UTC(), Speed: 1}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("clock spec %q: %q is not key=value (want start=RFC3339,epoch=RFC3339,speed=N)", spec, part)
		}
		var err error
		switch k {
		case "start":
			a.Start, err = time.Parse(time.RFC3339Nano, v)
		case "epoch":
			a.Epoch, err = time.Parse(time.RFC3339Nano, v)
		case "speed":
			a.Speed, err = strconv.ParseFloat(v, 64)
			if err == nil && a.Speed <= 0 {
				err = fmt.Errorf("must be positive")
			}
		default:
			err = fmt.Errorf("unknown key (want start, epoch or speed)")
		}
		if err != nil {
			return nil, fmt.Errorf("clock spec %q: %s: %w", spec, k, err)
		}
	}
	if a.Start.IsZero() {
		return nil, fmt.Errorf("clock spec %q: start is required", spec)
	}
	return a, nil
}

// Sleep waits d of wall time or until ctx ends, whichever comes first; it
// returns ctx's error in the second case. It is the default wait of the
// components that take an injectable sleep (tests pass one that advances a
// Fake clock instead).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
