// Package actor runs a program's long-lived parts as one supervised group:
// the watcher's poll loop, deadline evaluator, relay, operations server and
// embedded NATS server, and the notifier's channel consumers and health
// server. Both binaries use it the same way.
//
// The model is github.com/oklog/run's (every actor is an execute function
// and an interrupt; the group ends when its main actor returns), plus what
// that package deliberately leaves out and pcwatch needs:
//
//   - a supervision policy per actor: an actor that fails (returns, with an
//     error or without, or panics, while the group runs) is either
//     restarted with exponential backoff, counted and logged by name
//     (Restart), or stops the whole group, whose Run then returns an
//     *Error naming it (Fatal);
//   - a status per actor (running, restarting, failed, stopped) for
//     readiness checks;
//   - an ordered shutdown: actors and plain shutdown steps (closing a file,
//     flushing a queue) are stopped one at a time, in the reverse order of
//     their registration, each bounded in time; a step that does not finish
//     in time is abandoned, logged and reported, and the next one runs.
//
// oklog/run interrupts every actor at once and waits for all of them
// without a bound, so it can express neither the order nor the bound, and
// has no restarts; hence this package rather than that library.
//
// A Group is used from one goroutine: Add and OnStop during start-up, then
// Run (or Abort, when start-up fails before Run). Status may be called from
// any goroutine at any time.
package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy says what happens when an actor fails.
type Policy uint8

const (
	// Fatal: the failure stops the group. Run cancels the main actor,
	// shuts everything down in order and returns an *Error naming the
	// actor; the binaries exit with status 1.
	Fatal Policy = iota
	// Restart: the failure is logged (naming the actor), counted
	// (Options.Restarted) and the actor's Run is called again after an
	// exponential backoff; meanwhile its status is Restarting.
	Restart
)

func (p Policy) String() string {
	if p == Restart {
		return "restart"
	}
	return "fatal"
}

// Actor is one long-lived part of a program.
type Actor struct {
	// Name names the actor in logs, metrics, errors and /readyz.
	Name string
	// Run does the actor's work until ctx is cancelled, then returns.
	// Returning earlier, with or without an error, or panicking, before
	// the group's shutdown began, is a failure and is handled by
	// OnFailure; once shutdown began, returning is stopping.
	Run func(ctx context.Context) error
	// Interrupt, when set, asks Run to return at shutdown (an
	// http.Server's Shutdown, say), within ctx; Run's ctx is cancelled
	// after it. Without it, cancelling Run's ctx is the interrupt.
	Interrupt func(ctx context.Context) error
	// OnFailure is Fatal (the zero value) or Restart.
	OnFailure Policy
	// Finite says that Run returning nil means its work is done (a
	// retry loop that succeeded), not a failure.
	Finite bool
	// StopTimeout bounds the actor's shutdown step (Interrupt, then Run's
	// return); default Options.StopTimeout.
	StopTimeout time.Duration
}

// State is an actor's state.
type State string

const (
	Starting   State = "starting"   // registered, Run not called yet
	Running    State = "running"    // Run is running
	Restarting State = "restarting" // failed; waiting to be run again
	Failed     State = "failed"     // failed and Fatal: the group is stopping
	Done       State = "done"       // a Finite actor finished its work
	Stopped    State = "stopped"    // stopped at shutdown
)

// Status is an actor's state and record.
type Status struct {
	Name     string
	State    State
	Restarts int       // failures restarted so far
	LastErr  error     // the last failure, nil if none
	Since    time.Time // when State was entered
}

// Down reports whether the actor should be running but is not: it is
// restarting after a failure, or failed.
func (s Status) Down() bool { return s.State == Restarting || s.State == Failed }

// Down describes, one line each, the actors of st that should run and do
// not: restarting after a failure, or failed (the process is stopping).
// Both binaries' /readyz give these lines as reasons.
func Down(st []Status) []string {
	var why []string
	for _, s := range st {
		switch s.State {
		case Restarting:
			why = append(why, fmt.Sprintf("%s is down, restarting after a failure (%d restarts so far): %v", s.Name, s.Restarts, s.LastErr))
		case Failed:
			why = append(why, fmt.Sprintf("%s failed; the process is stopping: %v", s.Name, s.LastErr))
		}
	}
	return why
}

// Error is the failure of a Fatal actor (or of the main function) that
// stopped the group.
type Error struct {
	Actor string
	Err   error
}

func (e *Error) Error() string { return e.Actor + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ErrStoppedEarly is the failure of an actor whose Run returned nil while
// the group was running.
var ErrStoppedEarly = errors.New("stopped by itself while the program was running")

// PanicError is a panic recovered from an actor's Run (or the main
// function), with the goroutine's stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// ErrShutdownIncomplete is joined to Run's result when a shutdown step did
// not finish within its bound (and was abandoned).
var ErrShutdownIncomplete = errors.New("shutdown incomplete")

// StepTimeoutError names a shutdown step abandoned after its bound.
type StepTimeoutError struct {
	Step    string
	Timeout time.Duration
}

func (e *StepTimeoutError) Error() string {
	return fmt.Sprintf("shutdown step %q did not finish within %s; abandoned", e.Step, e.Timeout)
}
func (e *StepTimeoutError) Unwrap() error { return ErrShutdownIncomplete }

// Options configure a Group.
type Options struct {
	// Logger receives failures, restarts and shutdown steps; nil
	// discards them.
	Logger *slog.Logger
	// Restarted, when set, is called each time an actor's failure is to
	// be restarted (a metric); it must not block.
	Restarted func(actor string)
	// InitialBackoff and MaxBackoff shape the wait before a restart;
	// defaults 1s and 1m. The wait starts again from InitialBackoff once
	// an actor ran for MaxBackoff without failing.
	InitialBackoff, MaxBackoff time.Duration
	// StopTimeout bounds each shutdown step that sets no bound of its
	// own, and the main function's return once it is asked to stop;
	// default 10s.
	StopTimeout time.Duration
}

// member is a registered actor or shutdown step.
type member struct {
	actor *Actor // nil for a plain step
	step  func(ctx context.Context) error
	name  string
	bound time.Duration

	cancel   context.CancelFunc
	stopping chan struct{} // closed when its shutdown step begins
	done     chan struct{} // closed when its supervising goroutine ends

	mu     sync.Mutex
	status Status
}

func (m *member) set(f func(*Status)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.status)
}

// Group is a set of actors and shutdown steps. The zero value is not
// usable: call New.
type Group struct {
	o       Options
	log     *slog.Logger
	members []*member
	fatal   chan *Error // the first Fatal failure
	running bool
	once    sync.Once
	// closing is closed when shutdown begins: from then on an actor
	// that returns has stopped, not failed (an earlier step may have
	// stopped what it depends on).
	closing chan struct{}
}

// New returns an empty group.
func New(o Options) *Group {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{o: o, log: log, fatal: make(chan *Error, 1), closing: make(chan struct{})}
}

// Add registers an actor; Run starts it. Actors are stopped in the reverse
// order of Add and OnStop calls. Add after Run panics.
func (g *Group) Add(a Actor) {
	if g.running {
		panic("actor: Add after Run")
	}
	if a.Run == nil || a.Name == "" {
		panic("actor: an actor needs a name and a Run function")
	}
	bound := a.StopTimeout
	if bound <= 0 {
		bound = g.o.StopTimeout
	}
	g.members = append(g.members, &member{actor: &a, name: a.Name, bound: bound,
		stopping: make(chan struct{}), done: make(chan struct{}),
		status: Status{Name: a.Name, State: Starting, Since: time.Now()}})
}

// OnStop registers a shutdown step: f runs at shutdown, in the reverse
// order of registration among actors and steps, with a context that ends
// after timeout (zero: Options.StopTimeout). An error is logged naming the
// step; a step still running after its timeout is abandoned and reported
// (ErrShutdownIncomplete).
func (g *Group) OnStop(name string, timeout time.Duration, f func(ctx context.Context) error) {
	if g.running {
		panic("actor: OnStop after Run")
	}
	if timeout <= 0 {
		timeout = g.o.StopTimeout
	}
	g.members = append(g.members, &member{step: f, name: name, bound: timeout})
}

// Status returns the status of every actor, in registration order.
func (g *Group) Status() []Status {
	var out []Status
	for _, m := range g.members {
		if m.actor == nil {
			continue
		}
		m.mu.Lock()
		out = append(out, m.status)
		m.mu.Unlock()
	}
	return out
}

// Run starts every actor, runs main until it returns, ctx ends or a Fatal
// actor fails, then shuts the group down in order and returns.
//
// main gets a context that ends with ctx or at a Fatal failure; once that
// context ended main has StopTimeout to return. Run returns main's error
// (a panic in main is a *PanicError inside an *Error named "main"), or the
// *Error of the Fatal actor that stopped the group, joined with a
// *StepTimeoutError for each shutdown step that had to be abandoned. Run is
// called once.
func (g *Group) Run(ctx context.Context, main func(ctx context.Context) error) error {
	if g.running {
		panic("actor: Run called twice")
	}
	g.running = true
	for _, m := range g.members {
		if m.actor != nil {
			actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			m.cancel = cancel
			go g.supervise(actx, m)
		}
	}
	mctx, cancelMain := context.WithCancel(ctx)
	defer cancelMain()
	mainDone := make(chan error, 1)
	go func() { mainDone <- protect(mctx, main) }()

	var result error
	waitMain := func(why string) {
		t := time.NewTimer(g.o.StopTimeout)
		defer t.Stop()
		select {
		case err := <-mainDone:
			if result == nil {
				result = err
			}
		case <-t.C:
			g.log.Error("the main loop did not stop in time; abandoned", "after", g.o.StopTimeout, "asked_by", why)
			result = errors.Join(result, &StepTimeoutError{Step: "main", Timeout: g.o.StopTimeout})
		}
	}
	select {
	case err := <-mainDone:
		result = err
	case f := <-g.fatal:
		result = f
		cancelMain()
		waitMain("failure of " + f.Actor)
	case <-ctx.Done():
		waitMain("cancellation")
	}
	var pe *PanicError
	if errors.As(result, &pe) && !errors.As(result, new(*Error)) {
		g.log.Error("the main loop panicked", "err", pe, "stack", string(pe.Stack))
		result = &Error{Actor: "main", Err: result}
	}
	return errors.Join(result, g.shutdown())
}

// Abort shuts down what was registered when start-up fails before Run:
// plain steps run and actors' Interrupt functions are called, in reverse
// order. It returns what shutdown could not finish. Calling it after Run
// does nothing.
func (g *Group) Abort() error { return g.shutdown() }

// shutdown stops every member in reverse order, once.
func (g *Group) shutdown() error {
	var err error
	g.once.Do(func() {
		close(g.closing)
		for i := len(g.members) - 1; i >= 0; i-- {
			err = errors.Join(err, g.stop(g.members[i]))
		}
	})
	return err
}

// stop runs one member's shutdown step within its bound.
func (g *Group) stop(m *member) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.bound)
	defer cancel()
	finished := make(chan error, 1)
	switch {
	case m.actor == nil:
		go func() { finished <- protect(ctx, m.step) }()
	case m.cancel == nil: // registered, never started (Abort)
		if m.actor.Interrupt == nil {
			return nil
		}
		go func() { finished <- protect(ctx, m.actor.Interrupt) }()
	default:
		close(m.stopping)
		go func() {
			var err error
			if m.actor.Interrupt != nil {
				err = protect(ctx, m.actor.Interrupt)
			}
			m.cancel()
			<-m.done
			finished <- err
		}()
	}
	select {
	case err := <-finished:
		if err != nil {
			g.log.Warn("shutdown step failed", "step", m.name, "err", err)
		} else {
			g.log.Debug("shutdown step done", "step", m.name)
		}
		return nil
	case <-ctx.Done():
		return g.abandoned(m)
	}
}

func (g *Group) abandoned(m *member) error {
	g.log.Error("shutdown step did not finish in time; abandoned", "step", m.name, "after", m.bound)
	return &StepTimeoutError{Step: m.name, Timeout: m.bound}
}

// supervise runs m's actor until it is stopped, applying its policy to
// each failure.
func (g *Group) supervise(ctx context.Context, m *member) {
	defer close(m.done)
	a := m.actor
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(g.o.InitialBackoff),
		backoff.WithMaxInterval(g.o.MaxBackoff), backoff.WithMaxElapsedTime(0))
	stopping := func() bool {
		select {
		case <-m.stopping:
			return true
		case <-g.closing:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	for {
		started := time.Now()
		m.set(func(s *Status) { s.State, s.Since = Running, started })
		err := protect(ctx, a.Run)
		if stopping() {
			m.set(func(s *Status) { s.State, s.Since = Stopped, time.Now() })
			return
		}
		if err == nil && a.Finite {
			m.set(func(s *Status) { s.State, s.Since = Done, time.Now() })
			return
		}
		if err == nil {
			err = ErrStoppedEarly
		}
		if pe := (*PanicError)(nil); errors.As(err, &pe) {
			g.log.Error("actor panicked", "actor", a.Name, "err", pe, "stack", string(pe.Stack))
		}
		if a.OnFailure == Fatal {
			m.set(func(s *Status) { s.State, s.LastErr, s.Since = Failed, err, time.Now() })
			g.log.Error("actor failed; stopping the program", "actor", a.Name, "err", err)
			select {
			case g.fatal <- &Error{Actor: a.Name, Err: err}:
			default: // another failure is already stopping the group
			}
			return
		}
		if time.Since(started) >= g.o.MaxBackoff {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		var n int
		m.set(func(s *Status) {
			s.Restarts++
			n = s.Restarts
			s.State, s.LastErr, s.Since = Restarting, err, time.Now()
		})
		if g.o.Restarted != nil {
			g.o.Restarted(a.Name)
		}
		g.log.Error("actor failed; restarting", "actor", a.Name, "err", err, "restarts", n, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			m.set(func(s *Status) { s.State, s.Since = Stopped, time.Now() })
			return
		case <-m.stopping:
			t.Stop()
			m.set(func(s *Status) { s.State, s.Since = Stopped, time.Now() })
			return
		case <-g.closing:
			t.Stop()
			m.set(func(s *Status) { s.State, s.Since = Stopped, time.Now() })
			return
		case <-t.C:
		}
	}
}

// Serve is an actor serving srv on ln (an operations endpoint). It is
// restarted when Serve fails, listening again on the address ln had bound;
// at shutdown srv.Shutdown gives requests in flight up to grace.
func Serve(name string, srv *http.Server, ln net.Listener, grace time.Duration) Actor {
	addr := ln.Addr().String()
	return Actor{Name: name, OnFailure: Restart, StopTimeout: grace + 2*time.Second,
		Run: func(context.Context) error {
			if ln == nil {
				var err error
				if ln, err = net.Listen("tcp", addr); err != nil {
					return fmt.Errorf("listening again on %s: %w", addr, err)
				}
			}
			err := srv.Serve(ln)
			ln = nil // Serve closed it
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
		Interrupt: func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, grace)
			defer cancel()
			return srv.Shutdown(sctx)
		}}
}

// protect calls f, turning a panic into a *PanicError.
func protect(ctx context.Context, f func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return f(ctx)
}
