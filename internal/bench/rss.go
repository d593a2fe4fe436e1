package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// RSSOptions size figure 3.
type RSSOptions struct {
	Customers       int    // default 10,000
	SubsPerCustomer int    // default 10
	Watcher         string // path of a built watcher binary; required
	// Floor is the command of the floor process; ListFloor is its body
	// (cmd/pcwatch-bench runs itself with a hidden subcommand).
	Floor []string
	Dir   string // scratch; required
}

// RSSResult is figure 3: the peak RSS of the watcher process running one
// cycle at scale, next to the peak RSS of the same binary listing the same
// data and discarding it (its floor: the Go runtime, the client and the
// decoded listings, without state, diff or NATS).
type RSSResult struct {
	Customers, Subscriptions int
	WatcherRSS               int64 // bytes
	FloorRSS                 int64 // bytes
	Ratio                    float64
	WatcherWall              time.Duration
	FloorWall                time.Duration
}

// PeakRSS measures figure 3 with a simulator served from this process.
func PeakRSS(o RSSOptions) (*RSSResult, error) {
	if o.Customers == 0 {
		o.Customers = 10000
	}
	if o.SubsPerCustomer == 0 {
		o.SubsPerCustomer = 10
	}
	sim := pcsim.New(pcsim.Options{Seed: 2, Customers: o.Customers, SubscriptionsPerCustomer: o.SubsPerCustomer, Token: "bench"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	res := &RSSResult{Customers: o.Customers, Subscriptions: o.Customers * o.SubsPerCustomer}
	run := func(bin string, args ...string) (int64, time.Duration, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PCWATCH_PC_TOKEN=bench")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		// The child's high-water mark, VmHWM, read while it runs: rusage's
		// ru_maxrss would include the parent's RSS, which a child started
		// with vfork+exec inherits as its starting maximum on Linux.
		var peak atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				if v := vmHWM(cmd.Process.Pid); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		err := cmd.Wait()
		close(stop)
		<-sampled
		el := time.Since(t0)
		if err != nil {
			return 0, el, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, tail(stderr.String(), 2000))
		}
		if peak.Load() == 0 {
			return 0, el, fmt.Errorf("could not read the child's VmHWM from /proc")
		}
		return peak.Load(), el, nil
	}
	var err error
	res.WatcherRSS, res.WatcherWall, err = run(o.Watcher, "run", "--once", "--pc-url", srv.URL, "--data-dir", filepath.Join(o.Dir, "rss"),
		"--nats-port", "-1", "--listen", "", "--rate", "100000", "--concurrency", "8", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	res.FloorRSS, res.FloorWall, err = run(o.Floor[0], append(o.Floor[1:], srv.URL)...)
	if err != nil {
		return nil, err
	}
	res.Ratio = float64(res.WatcherRSS) / float64(res.FloorRSS)
	return res, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// ListFloor lists every customer and its subscriptions with the real client
// and worker-pool shape of the poller, decoding and discarding them: the
// floor of figure 3. It returns the number of subscriptions seen.
func ListFloor(ctx context.Context, baseURL, token string, workers int) (int, error) {
	c, err := pc.New(pc.Options{BaseURL: baseURL, RequestsPerMinute: 600000, Burst: 100,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})})
	if err != nil {
		return 0, err
	}
	custs, err := c.ListCustomers(ctx)
	if err != nil {
		return 0, err
	}
	var total atomic.Int64
	err = parallel(len(custs), workers, func(i int) error {
		subs, err := c.ListSubscriptions(ctx, custs[i].ID, pc.SubscriptionFilter{})
		total.Add(int64(len(subs)))
		return err
	})
	return int(total.Load()), err
}

// vmHWM reads a process's peak resident set size from /proc, in bytes; 0
// if it cannot.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}
