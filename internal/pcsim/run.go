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
	// OffOriginAddr is the listen address of the off-origin server (the
	// target of hostile off-origin redirects, see OffOriginHandler); ""
	// means Addr's host on a free port.
	OffOriginAddr string
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
	offAddr := opts.OffOriginAddr
	if offAddr == "" {
		host, _, err := net.SplitHostPort(ln.Addr().String())
		if err != nil {
			ln.Close()
			return fmt.Errorf("pcsim: listen address %s: %w", ln.Addr(), err)
		}
		offAddr = net.JoinHostPort(host, "0")
	}
	offLn, err := lc.Listen(ctx, "tcp", offAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("pcsim: listen on %s (the off-origin server): %w", offAddr, err)
	}
	sim := New(opts.Sim)
	newServer := func(h http.Handler) *http.Server {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
		// Slow and endless bodies end when the server shuts down.
		srv.RegisterOnShutdown(sim.stopStreams)
		return srv
	}
	srv, offSrv := newServer(sim), newServer(sim.OffOriginHandler())
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	go func() { serveErr <- offSrv.Serve(offLn) }()
	baseURL := "http://" + ln.Addr().String()
	sim.SetOffOriginURL("http://" + offLn.Addr().String())
	logger.Info("pcsim serving", "url", baseURL, "offOrigin", "http://"+offLn.Addr().String(), "customers", opts.Sim.Customers, "seed", opts.Sim.Seed)
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
			offErr := offSrv.Shutdown(shutCtx)
			if err := srv.Shutdown(shutCtx); err != nil {
				return fmt.Errorf("pcsim: shutdown: %w", err)
			}
			if offErr != nil {
				return fmt.Errorf("pcsim: shutdown of the off-origin server: %w", offErr)
			}
			logger.Info("pcsim stopped")
			return nil
		case err := <-serveErr:
			srv.Close()
			offSrv.Close()
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
