package actor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// journal records what happened, in order, from any goroutine.
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.log = append(j.log, s)
	j.mu.Unlock()
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.log)
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// idle runs until its context ends, journalling its stop.
func idle(j *journal, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		j.add("stopped " + name)
		return nil
	}
}

func statusOf(g *Group, name string) Status {
	for _, s := range g.Status() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

// A failing Restart actor is run again after a backoff, counted, logged by
// name and shown as restarting meanwhile; the others are not disturbed.
func TestRestartWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedBuffer
		var restarted []string
		var mu sync.Mutex
		g := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), InitialBackoff: time.Second, MaxBackoff: time.Minute,
			Restarted: func(a string) { mu.Lock(); restarted = append(restarted, a); mu.Unlock() }})
		var j journal
		runs := 0
		var starts []time.Time
		g.Add(Actor{Name: "relay", OnFailure: Restart, Run: func(ctx context.Context) error {
			runs++
			starts = append(starts, time.Now())
			switch runs {
			case 1:
				return errors.New("boom")
			case 2:
				panic("kaboom")
			case 3:
				return nil // stopping early is a failure too
			}
			<-ctx.Done()
			return nil
		}})
		g.Add(Actor{Name: "other", Run: idle(&j, "other")})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- g.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()

		synctest.Wait() // the first run failed; waiting for the restart
		if s := statusOf(g, "relay"); s.State != Restarting || !s.Down() || s.Restarts != 1 || s.LastErr == nil || s.LastErr.Error() != "boom" {
			t.Fatalf("after the first failure: %+v", s)
		}
		if s := statusOf(g, "other"); s.State != Running || s.Down() {
			t.Errorf("other actor: %+v", s)
		}
		time.Sleep(time.Hour) // fake time: every backoff has passed
		synctest.Wait()
		if s := statusOf(g, "relay"); s.State != Running || s.Restarts != 3 {
			t.Fatalf("after the restarts: %+v", s)
		}
		var pe *PanicError
		if s := statusOf(g, "relay"); !errors.As(s.LastErr, &pe) && !errors.Is(s.LastErr, ErrStoppedEarly) {
			t.Errorf("last error %v", s.LastErr)
		}
		if runs != 4 {
			t.Errorf("%d runs, want 4", runs)
		}
		// Backoff: at least half the initial wait (its randomisation), and
		// growing.
		for i := 1; i < len(starts); i++ {
			if gap := starts[i].Sub(starts[i-1]); gap < time.Second/2 || gap > 10*time.Second {
				t.Errorf("restart %d after %s", i, gap)
			}
		}
		mu.Lock()
		if !slices.Equal(restarted, []string{"relay", "relay", "relay"}) {
			t.Errorf("Restarted calls: %v", restarted)
		}
		mu.Unlock()
		for _, want := range []string{`msg="actor failed; restarting" actor=relay err=boom restarts=1`, `msg="actor panicked" actor=relay err="panic: kaboom"`,
			`err="stopped by itself while the program was running" restarts=3`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after cancel", err)
		}
		if s := statusOf(g, "relay"); s.State != Stopped {
			t.Errorf("after shutdown: %+v", s)
		}
	})
}

// A failing Fatal actor stops the group: main's context ends, everything
// shuts down in reverse order of registration, and Run names the actor.
func TestFatalFailureStopsTheGroupInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var j journal
		g := New(Options{})
		g.OnStop("state file", 0, func(context.Context) error { j.add("closed state file"); return nil })
		nats := make(chan struct{})
		g.Add(Actor{Name: "embedded NATS", Run: func(ctx context.Context) error {
			select {
			case <-nats:
				return errors.New("server shut down")
			case <-ctx.Done():
				j.add("stopped embedded NATS")
				return nil
			}
		}})
		g.Add(Actor{Name: "operations server", OnFailure: Restart, Run: idle(&j, "operations server"),
			Interrupt: func(context.Context) error { j.add("interrupted operations server"); return nil }})
		g.OnStop("flush", 0, func(context.Context) error { j.add("flushed"); return nil })
		g.Add(Actor{Name: "relay", OnFailure: Restart, Run: idle(&j, "relay")})
		done := make(chan error)
		go func() {
			done <- g.Run(context.Background(), func(ctx context.Context) error {
				<-ctx.Done()
				j.add("main returned")
				return nil
			})
		}()
		synctest.Wait()
		close(nats)
		err := <-done
		var ae *Error
		if !errors.As(err, &ae) || ae.Actor != "embedded NATS" || !strings.Contains(err.Error(), "embedded NATS: server shut down") {
			t.Fatalf("Run = %v, want the embedded NATS failure", err)
		}
		want := []string{"main returned", "stopped relay", "flushed", "interrupted operations server", "stopped operations server", "closed state file"}
		if got := j.get(); !slices.Equal(got, want) {
			t.Errorf("shutdown order:\n got %q\nwant %q", got, want)
		}
		if s := statusOf(g, "embedded NATS"); s.State != Failed || !s.Down() {
			t.Errorf("failed actor: %+v", s)
		}
	})
}

// Shutdown steps and actors that hang are abandoned after their bound; the
// steps after them still run, and Run reports what was abandoned.
func TestHangingShutdownStepsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		var logs lockedBuffer
		var j journal
		g := New(Options{StopTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		g.OnStop("close store", 0, func(context.Context) error { j.add("closed store"); return nil })
		g.Add(Actor{Name: "stubborn", StopTimeout: 3 * time.Second, Run: func(ctx context.Context) error {
			<-release // ignores ctx
			return nil
		}})
		g.OnStop("flush", 2*time.Second, func(ctx context.Context) error {
			<-release // ignores ctx
			return nil
		})
		g.OnStop("quick", 0, func(context.Context) error { return errors.New("nothing to flush") })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		err := g.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil })
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("shutdown took %s, want the two bounds (2s + 3s)", took)
		}
		var te *StepTimeoutError
		if !errors.Is(err, ErrShutdownIncomplete) || !errors.As(err, &te) {
			t.Fatalf("Run = %v, want the abandoned steps", err)
		}
		for _, s := range []string{`shutdown step \"flush\" did not finish within 2s`, `shutdown step \"stubborn\" did not finish within 3s`} {
			if !strings.Contains(strings.ReplaceAll(err.Error(), `"`, `\"`), s) {
				t.Errorf("Run's error lacks %s: %v", s, err)
			}
		}
		if got := j.get(); !slices.Equal(got, []string{"closed store"}) {
			t.Errorf("steps after the hanging ones: %q", got)
		}
		if !strings.Contains(logs.String(), `msg="shutdown step failed" step=quick err="nothing to flush"`) {
			t.Errorf("a failing step is not logged by name:\n%s", logs.String())
		}
	})
}

// A main function that does not return once asked to stop is bounded too.
func TestHangingMainIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		g := New(Options{StopTimeout: 4 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		err := g.Run(ctx, func(context.Context) error { <-release; return nil })
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("Run took %s, want 1s + the 4s bound", took)
		}
		if te := (*StepTimeoutError)(nil); !errors.As(err, &te) || te.Step != "main" {
			t.Errorf("Run = %v", err)
		}
	})
}

// main's result is Run's; a panic in main is an *Error named main; a Finite
// actor that is done is not restarted.
func TestMainResultPanicAndFinite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(Options{})
		runs := 0
		g.Add(Actor{Name: "stream keeper", OnFailure: Restart, Finite: true, Run: func(context.Context) error { runs++; return nil }})
		errPartial := errors.New("some customers could not be polled")
		err := g.Run(context.Background(), func(context.Context) error {
			synctest.Wait()
			return errPartial
		})
		if !errors.Is(err, errPartial) {
			t.Errorf("Run = %v, want main's error", err)
		}
		if s := statusOf(g, "stream keeper"); runs != 1 || s.State != Done || s.Restarts != 0 {
			t.Errorf("finite actor: %d runs, %+v", runs, s)
		}

		g = New(Options{})
		err = g.Run(context.Background(), func(context.Context) error { panic("oops") })
		var ae *Error
		var pe *PanicError
		if !errors.As(err, &ae) || ae.Actor != "main" || !errors.As(err, &pe) || pe.Value != "oops" {
			t.Errorf("Run = %v, want main's panic", err)
		}
	})
}

// Abort, when start-up fails before Run: steps run and the actors'
// interrupts are called, in reverse order; the actors are never run.
func TestAbort(t *testing.T) {
	var j journal
	g := New(Options{})
	g.OnStop("state file", 0, func(context.Context) error { j.add("closed"); return nil })
	g.Add(Actor{Name: "embedded NATS", Run: func(context.Context) error { j.add("ran"); return nil },
		Interrupt: func(context.Context) error { j.add("shut down NATS"); return nil }})
	g.Add(Actor{Name: "relay", Run: func(context.Context) error { j.add("ran"); return nil }})
	if err := g.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := j.get(); !slices.Equal(got, []string{"shut down NATS", "closed"}) {
		t.Errorf("Abort: %q", got)
	}
	if err := g.Abort(); err != nil || len(j.get()) != 2 {
		t.Errorf("a second Abort ran the steps again: %q", j.get())
	}
}

// An actor that returns because an earlier shutdown step stopped what it
// uses has stopped, not failed: it is not restarted.
func TestReturningDuringShutdownIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		restarts := 0
		g := New(Options{Restarted: func(string) { restarts++ }})
		source := make(chan struct{})
		g.Add(Actor{Name: "consumer", OnFailure: Restart, Run: func(ctx context.Context) error {
			select {
			case <-source:
				return errors.New("source gone")
			case <-ctx.Done():
				return nil
			}
		}})
		g.OnStop("stop consuming", 0, func(context.Context) error { close(source); synctest.Wait(); return nil })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := g.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }); err != nil {
			t.Fatal(err)
		}
		if s := statusOf(g, "consumer"); restarts != 0 || s.State != Stopped {
			t.Errorf("%d restarts, %+v", restarts, s)
		}
	})
}

// failOnce is a listener whose first Accept fails for good.
type failOnce struct {
	net.Listener
	failed bool
}

func (f *failOnce) Accept() (net.Conn, error) {
	if !f.failed {
		f.failed = true
		return nil, errors.New("accept: too many open files (injected)")
	}
	return f.Listener.Accept()
}

// Serve: a server whose listener fails is restarted on the same address
// and answers again; shutdown stops it.
func TestServeRestartsOnTheSameAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serving := make(chan net.Listener, 2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		BaseContext: func(l net.Listener) context.Context { serving <- l; return context.Background() }}
	restarted := make(chan string, 1)
	g := New(Options{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Restarted: func(a string) { restarted <- a }})
	g.Add(Serve("ops-server", srv, &failOnce{Listener: ln}, time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()
	<-serving // the first Serve, whose Accept fails
	if a := <-restarted; a != "ops-server" {
		t.Fatalf("restarted %q", a)
	}
	if l := <-serving; l.Addr().String() != addr {
		t.Fatalf("restarted on %s, want %s", l.Addr(), addr)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("answer %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("still listening after shutdown")
	}
}
