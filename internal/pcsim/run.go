package pcsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// RunOptions configure Run.
type RunOptions struct {
	// Addr is the listen address, e.g. "127.0.0.1:0".
	Addr string
	// Sim configures the simulator.
	Sim Options
	// MutateEvery applies Mutations random mutations every MutateEvery of
	// wall time; 0 disables them. Due lifecycle transitions are applied on
	// the same tick even without requests.
	MutateEvery time.Duration
	Mutations   int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Ready, if set, is called once the server accepts connections, with its
	// base URL ("http://127.0.0.1:PORT") and the simulator.
	Ready func(baseURL string, s *Sim)
}

// Run builds a simulator, serves it on opts.Addr until ctx is done, then
// shuts the server down gracefully. It returns nil after a clean shutdown.
// Commands embed the simulator in-process through it (cmd/pcsim, a watcher
// demo).
func Run(ctx context.Context, opts RunOptions) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Sim.Logger == nil {
		opts.Sim.Logger = logger
	}
	if opts.MutateEvery < 0 || opts.Mutations < 0 {
		return fmt.Errorf("pcsim: mutate-every and mutations must not be negative")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("pcsim: listen on %s: %w", opts.Addr, err)
	}
	sim := New(opts.Sim)
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	baseURL := "http://" + ln.Addr().String()
	logger.Info("pcsim serving", "url", baseURL, "customers", opts.Sim.Customers, "seed", opts.Sim.Seed)
	if opts.Ready != nil {
		opts.Ready(baseURL, sim)
	}

	var tick <-chan time.Time
	if opts.MutateEvery > 0 {
		t := time.NewTicker(opts.MutateEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(shutCtx); err != nil {
				return fmt.Errorf("pcsim: shutdown: %w", err)
			}
			logger.Info("pcsim stopped")
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("pcsim: serve: %w", err)
		case <-tick:
			life := sim.Advance()
			muts := sim.RandomMutations(opts.Mutations)
			logger.Debug("pcsim tick", "lifecycle", len(life), "random", len(muts))
		}
	}
}
