// Package inspect answers `watcher state` and `watcher deadlines`: what a
// watcher's state file knows. With no watcher running it opens the file
// read-only; while a watcher holds it, it asks that watcher's operations
// server (/api/state, /api/deadlines) for the same views. Both ways
// compute with the configuration of `watcher run` (watcher.LoadWith: the
// --config file, PCWATCH_* variables and flags), so the deadline settings
// (--renewal-all-terms decides which renewals are listed) and --clock give
// the same answer offline and online.
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// Source is where the views are read: Config.DataDir's state file, else
// the watcher running at Config.Listen.
type Source struct {
	// Config is the watcher's configuration (watcher.LoadWith): the data
	// directory, the operations address, the deadline configuration
	// (Config.DeadlineConfig) and the clock deadlines are counted from.
	Config watcher.Config
	// Getenv reads the operations token (PCWATCH_OPS_TOKEN or
	// PCWATCH_OPS_TOKEN_FILE) sent to a running watcher. Required.
	Getenv func(string) string
	// Warn receives what is worth saying besides the answer: records of
	// the state file that no longer decode (the answer is what could be
	// read), the running watcher's Warning header. Nil discards.
	Warn func(msg string)
	// HTTPClient asks the running watcher; default a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Clock overrides Config.Clock (tests).
	Clock clock.Clock
}

// lockWait is how long opening the state file waits for a watcher's lock
// before asking that watcher instead.
const lockWait = 500 * time.Millisecond

// Deadlines returns the upcoming deadlines, soonest first, as the running
// watcher's /api/deadlines answers them: computed with
// Config.DeadlineConfig() at the configured clock's now. Errors: a bad
// --clock is a *cli.UsageError; an unreadable state file, a watcher that
// does not answer or refuses the token are runtime failures.
func (s Source) Deadlines(ctx context.Context) ([]watcher.UpcomingDeadline, error) {
	clk := s.Clock
	if clk == nil {
		var err error
		if clk, err = clock.Parse(s.Config.Clock); err != nil {
			return nil, cli.Usagef("--clock: %w", err)
		}
	}
	dcfg := s.Config.DeadlineConfig()
	var ds []watcher.UpcomingDeadline
	err := s.read(ctx, "/api/deadlines", func(st *state.Store) (any, error) {
		return watcher.Upcoming(st, dcfg, clk.Now())
	}, &ds)
	return ds, err
}

// State returns the summary of the state file, as /api/state answers it.
func (s Source) State(ctx context.Context) (*watcher.StateSummary, error) {
	var sum watcher.StateSummary
	err := s.read(ctx, "/api/state", func(st *state.Store) (any, error) { return watcher.Inspect(st) }, &sum)
	if err != nil {
		return nil, err
	}
	return &sum, nil
}

func (s Source) warn(format string, args ...any) {
	if s.Warn != nil {
		s.Warn(fmt.Sprintf(format, args...))
	}
}

// read opens the state file read-only and decodes local's view into into,
// or, when a running watcher holds the file, decodes that watcher's answer
// at apiPath. The local view goes through JSON too: both ways give the
// same values (time zones, omitted members).
func (s Source) read(ctx context.Context, apiPath string, local func(*state.Store) (any, error), into any) error {
	path := filepath.Join(s.Config.DataDir, state.FileName)
	st, err := state.Open(path, state.Options{ReadOnly: true, LockTimeout: lockWait})
	if err == nil {
		defer st.Close()
		v, err := local(st)
		var damaged *state.DamagedError
		if errors.As(err, &damaged) {
			s.warn("%v", err) // what could be read follows
		} else if err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, into)
	}
	if !errors.Is(err, state.ErrLocked) {
		return err
	}
	return s.ask(ctx, err, apiPath, into)
}

// ask fetches apiPath from the running watcher that holds the state file
// (locked is the error of opening it, said with any failure).
func (s Source) ask(ctx context.Context, locked error, apiPath string, into any) error {
	hc := s.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := s.get(ctx, hc, locked, apiPath)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := decodeAnswer(resp.Body, into); err != nil {
		return fmt.Errorf("%s%s: the answer is not the view: %w", s.Config.Listen, apiPath, err)
	}
	return nil
}

// get asks the running watcher at --listen for apiPath with the
// operations token; the answer is 200 or an error saying what to fix.
func (s Source) get(ctx context.Context, hc *http.Client, locked error, apiPath string) (*http.Response, error) {
	listen := s.Config.Listen
	if listen == "" {
		return nil, fmt.Errorf("%w; and --listen is empty, so there is no running watcher's operations server to ask (set --listen or PCWATCH_LISTEN to its address)", locked)
	}
	token, err := opsguard.TokenFromEnv(s.Getenv)
	if err != nil {
		return nil, fmt.Errorf("%w; %w", locked, err)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+listen+apiPath, nil)
	if err != nil {
		return nil, fmt.Errorf("%w; and --listen %q is not an address: %w", locked, listen, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w; and the running watcher's operations server at %s did not answer (%w)", locked, listen, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("%s%s answered %s: set %s or %s to the running watcher's operations token", listen, apiPath, resp.Status, opsguard.TokenEnv, opsguard.TokenFileEnv)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s%s answered %s", listen, apiPath, resp.Status)
	}
	if w := resp.Header.Get("Warning"); w != "" {
		s.warn("from the running watcher: %s", w)
	}
	return resp, nil
}

// maxAnswer bounds the answer read from a running watcher: the views of
// tens of thousands of subscriptions are a few MiB.
const maxAnswer = 256 << 20

// decodeAnswer decodes a running watcher's JSON answer into into.
func decodeAnswer(r io.Reader, into any) error {
	return json.NewDecoder(io.LimitReader(r, maxAnswer)).Decode(into)
}
