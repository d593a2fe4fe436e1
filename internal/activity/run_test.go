package activity_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/clock"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/state"
)

// scriptedLister answers call n (from 1) with one new relevant record, or
// with fail(n) when that is not nil. Safe for concurrent use.
type scriptedLister struct {
	mu    sync.Mutex
	calls int
	fail  func(n int) error
	clk   clock.Clock
}

func (s *scriptedLister) ListAuditRecords(ctx context.Context, q pc.AuditQuery, each func(pc.AuditPage) error) error {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(n); err != nil {
			return err
		}
	}
	r := rec(fmt.Sprint("rec-", n), "c1", "update_subscription", "succeeded", s.clk.Now(), "SubscriptionId", "s1")
	return each(pc.AuditPage{Number: 1, Records: []pc.AuditRecord{r}})
}

func (s *scriptedLister) n() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// runEnv is a Tail over a real state file with a scripted log, inside a
// synctest bubble (its timers run on fake time).
type runEnv struct {
	lister *scriptedLister
	store  *state.Store
	tail   *activity.Tail
	m      *metrics
	kicks  chan struct{}
}

func newRunEnv(t *testing.T, fail func(int) error) *runEnv {
	clk := clock.NewFake(t0)
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &runEnv{lister: &scriptedLister{fail: fail, clk: clk}, store: st, m: newMetrics(), kicks: make(chan struct{}, 1)}
	r.tail, err = activity.New(activity.Options{Client: r.lister, Store: st, Clock: clk, Metrics: r.m, Interval: 30 * time.Second,
		Known: func(string) bool { return true },
		Hinted: func() {
			select {
			case r.kicks <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunPollsEveryIntervalUntilCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		listErr := errors.New("503 from Partner Center")
		r := newRunEnv(t, func(n int) error {
			if n == 2 {
				return listErr
			}
			return nil
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.tail.Run(ctx) }()

		// The poll's commit waits out bbolt's batch delay (10ms of fake
		// time); the interval counts from the poll's end.
		time.Sleep(time.Second)
		synctest.Wait()
		if r.lister.n() != 1 {
			t.Fatalf("%d polls at start, want 1 at once", r.lister.n())
		}
		select {
		case <-r.kicks:
		default:
			t.Error("a poll that committed a hint did not kick the refresher")
		}
		time.Sleep(28 * time.Second) // t = 29s
		synctest.Wait()
		if r.lister.n() != 1 {
			t.Fatalf("%d polls before the interval passed", r.lister.n())
		}
		time.Sleep(1500 * time.Millisecond) // t = 30.5s
		synctest.Wait()
		if r.lister.n() != 2 || r.m.failures() != 1 {
			t.Fatalf("after 30s: %d polls, %d failures; want the second poll, failed and counted", r.lister.n(), r.m.failures())
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned after a failed poll: %v", err)
		default:
		}
		time.Sleep(30 * time.Second) // t = 60.5s: the failed poll committed nothing, so 30s after it
		synctest.Wait()
		if r.lister.n() != 3 {
			t.Fatalf("%d polls after 60s, want the retry", r.lister.n())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run after cancel: %v, want nil", err)
		}
		if r.lister.n() != 3 {
			t.Errorf("polled after cancel")
		}
	})
}

func TestRunReturnsAStoreFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunEnv(t, nil)
		disk := errors.New("input/output error")
		activity.WrapCommit(r.tail, func(func(*state.Change) error) func(*state.Change) error {
			return func(*state.Change) error { return disk }
		})
		err := r.tail.Run(t.Context())
		if !errors.Is(err, activity.ErrStore) || !errors.Is(err, disk) {
			t.Fatalf("Run: %v, want the state file's error wrapping ErrStore", err)
		}
	})
}

func TestRunStopsDuringAPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		blocked := make(chan struct{})
		r := newRunEnv(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		r.lister.fail = func(int) error {
			close(blocked)
			<-ctx.Done()
			return ctx.Err()
		}
		done := make(chan error, 1)
		go func() { done <- r.tail.Run(ctx) }()
		<-blocked
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run cancelled during a poll: %v, want nil", err)
		}
		if r.m.failures() != 0 {
			t.Errorf("a cancelled poll counted as failed")
		}
	})
}
