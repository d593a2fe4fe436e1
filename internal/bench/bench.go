// Package bench measures pcwatch's performance figures next to their
// floors, in the same run: each figure is only meaningful as a ratio to
// what the machine can do at best. cmd/pcwatch-bench prints the table and
// writes docs/performance.md; the Benchmark* functions in this package's
// tests run the same measurements under `go test -bench`.
package bench

import (
	"context"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// server is an embedded nats-server as the watcher runs it (file storage,
// SyncAlways), a connection, and PCWATCH_EVENTS on it.
type server struct {
	srv    *natsembed.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

func startServer(dir string) (*server, error) {
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return nil, err
	}
	s := &server{srv: srv}
	if s.nc, err = natsconn.Connect(natsconn.Options{URL: srv.ClientURL()}); err != nil {
		s.close()
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(256)); err != nil {
		s.close()
		return nil, err
	}
	if s.stream, err = stream.Ensure(context.Background(), s.js, stream.Options{}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *server) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	s.srv.Shutdown()
}

// cpuTime is the CPU (user+system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median of a small sample.
func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(d []float64) float64 {
	s := append([]float64(nil), d...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// parallel calls fn for 0..n-1 from workers goroutines, like the poller's
// worker pool, and returns the first error (workers stop taking new items
// after one).
func parallel(n, workers int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		first atomic.Pointer[error]
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	return nil
}
