package notify

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

type countSender struct {
	mu sync.Mutex
	at []time.Time
	c  clock.Clock
}

func (s *countSender) send(context.Context, *notification) error {
	s.mu.Lock()
	s.at = append(s.at, s.c.Now())
	s.mu.Unlock()
	return nil
}
func (s *countSender) target() string { return "test" }

// TestPacing: Slack channels send at most one message a second, Teams
// four; webhooks are not paced. Time is a fake clock that the pacer's
// sleep advances.
func TestPacing(t *testing.T) {
	for _, tc := range []struct {
		kind string
		gap  time.Duration
	}{
		{KindSlack, time.Second},
		{KindTeams, 250 * time.Millisecond},
		{KindWebhook, 0},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			var mu sync.Mutex
			sleep := func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				defer mu.Unlock()
				clk.Advance(d)
				return ctx.Err()
			}
			inner := &countSender{c: clk}
			s := pace(inner, tc.kind, clk, sleep)
			for i := 0; i < 5; i++ {
				if err := s.send(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i < len(inner.at); i++ {
				if gap := inner.at[i].Sub(inner.at[i-1]); gap < tc.gap {
					t.Errorf("send %d came %v after the previous one, want at least %v", i, gap, tc.gap)
				}
			}
			if total := inner.at[4].Sub(inner.at[0]); total != 4*tc.gap {
				t.Errorf("5 sends took %v of channel time, want %v", total, 4*tc.gap)
			}
		})
	}
	// A cancelled context stops the wait.
	clk := clock.NewFake(time.Now())
	s := pace(&countSender{c: clk}, KindSlack, clk, func(ctx context.Context, d time.Duration) error { return ctx.Err() })
	s.send(context.Background(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.send(ctx, nil); err == nil {
		t.Error("a cancelled send was not stopped")
	}
}
