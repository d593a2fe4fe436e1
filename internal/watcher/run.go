// Package watcher assembles pcwatch's watcher: Partner Center client, state
// store, embedded or remote NATS, outbox relay, poll loop, deadline
// evaluator and the operations HTTP server. cmd/watcher parses flags and
// signals and calls Run; tests and the demo embed it the same way.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/actor"
	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// Options configure Run.
type Options struct {
	Config Config
	// Getenv reads credentials and NATS auth; default os.Getenv.
	Getenv func(string) string
	Logger *slog.Logger
	// Stderr receives the one-line failure summaries of --once; default
	// os.Stderr.
	Stderr io.Writer
	// TokenSource, when set, is used instead of credentials from the
	// environment (the demo, tests).
	TokenSource oauth2.TokenSource
	// HTTPClient carries Partner Center requests; default a client with
	// sane timeouts.
	HTTPClient *http.Client
	// Started is called once everything runs, before the first cycle.
	Started func(*Runtime)
	// Cycled is called after every cycle, before the wait for the next.
	Cycled func(*poller.Report)
	// Clock overrides Config.Clock (tests).
	Clock clock.Clock

	hooks *testHooks
}

// Runtime describes a started watcher.
type Runtime struct {
	NATSURL   string // where events are published
	Embedded  bool   // NATS runs in this process
	StatePath string
	Listen    string // bound operations address, "" if disabled
	// WebhookListen is the bound address of the webhook intake, "" if
	// disabled.
	WebhookListen string
	Store         *state.Store
	Conn          *nats.Conn
	// NATSCredentials are the embedded server's identities (seed files);
	// nil with --nats-url. The notifier connects with NotifierSeed.
	NATSCredentials *natsembed.Credentials

	nats *natsembed.Server // the embedded server, nil with --nats-url
}

// StartupError is a problem found before the first cycle (Partner Center
// unreachable or refusing the credentials, the state file locked or
// foreign, the stream misconfigured); the watcher exits with status 2.
type StartupError struct{ Err error }

func (e *StartupError) Error() string { return e.Err.Error() }
func (e *StartupError) Unwrap() error { return e.Err }

// ErrPartial is returned by a --once run in which some customers (or the
// customer list) could not be polled; the watcher exits with status 1.
var ErrPartial = errors.New("some customers could not be polled")

// Actors of the watcher's group (package actor), as named in logs, the
// pcwatch_actor_restarts_total metric and /readyz. What a failure of each
// does, and why:
//
//   - poll loop: the group's main function; it fails only if the state file
//     cannot be used at all (a cycle that cannot run is logged, counted and
//     shown by /readyz, and the next cycle tries again), and then the
//     watcher stops with status 1: polling is what it is for.
//   - deadline evaluator, relay: restarted with backoff. Both keep
//     everything they need in the state file (the ledger, the outbox), so
//     a new Run picks up where the failed one stopped; meanwhile polling
//     goes on and events wait in the outbox.
//   - stream keeper (only while the stream could not be created at start):
//     restarted with backoff; its work is done once the stream exists.
//   - deadline query (query.go): restarted with backoff; it answers the
//     notifier's digests from the state file and keeps nothing itself.
//   - operations server: restarted with backoff on the address it bound;
//     losing /metrics must not stop polling.
//   - embedded NATS: fatal. Its JetStream store, and the notifier's
//     connection to it, cannot be rebuilt behind the clients' backs in
//     this process; the outbox keeps every event, so exiting (status 1)
//     and being restarted by the service manager loses nothing.
const (
	actorPollLoop  = "poll-loop"
	actorEvaluator = "deadline-evaluator"
	actorRelay     = "relay"
	actorKeeper    = "stream-keeper"
	actorOps       = "ops-server"
	actorNATS      = "embedded-nats"
)

// testHooks let the package's tests perturb Run; production code never
// sets them.
type testHooks struct {
	// wrap, when set, wraps the Run function of every actor (by name):
	// a test makes one fail.
	wrap func(name string, run func(context.Context) error) func(context.Context) error
	// group, when set, adjusts the actor group's options (backoff).
	group func(*actor.Options)
}

func (o *Options) actor(a actor.Actor) actor.Actor {
	if o.hooks != nil && o.hooks.wrap != nil {
		a.Run = o.hooks.wrap(a.Name, a.Run)
	}
	return a
}

// Run runs the watcher until ctx ends (or, with Once, for one cycle). On
// cancellation it stops starting new work, abandons customers in flight
// without committing anything of them, flushes the outbox for a few seconds
// if NATS is reachable, and closes everything in reverse order of start-up,
// each step bounded in time. An actor that fails is restarted or stops the
// watcher (see the actor names above): then Run returns an *actor.Error
// naming it.
func Run(ctx context.Context, o Options) (err error) {
	c := o.Config
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	log := o.Logger
	if log == nil {
		log = NewLogger(os.Stderr, c.LogFormat, c.LogLevel)
	}
	// The NATS credentials come from the environment (or files named by
	// it), never from Config; read them once. Their errors name the
	// variable, never the value.
	nopts, err := natsconn.Credentials(o.Getenv, c.NATS)
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	// Every configured secret is redacted, in every encoding, from what
	// leaves the process: logs, stderr, the error Run returns, stored
	// failure messages and the events built from them.
	red, err := newRedactor(o.Getenv, nopts)
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	defer func() { err = red.WrapError(err) }()
	log = slog.New(red.Handler(log.Handler()))
	o.Stderr = red.Writer(o.Stderr)
	opsToken, err := opsguard.TokenFromEnv(o.Getenv)
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	red.Add(opsToken)
	clk := o.Clock
	if clk == nil {
		var err error
		if clk, err = clock.Parse(c.Clock); err != nil {
			return &ConfigError{Msg: "--clock: " + err.Error()}
		}
	}
	m := newMetrics()
	gopts := actor.Options{Logger: log.With("component", "actors"), Restarted: m.ActorRestarted, StopTimeout: 10 * time.Second}
	if o.hooks != nil && o.hooks.group != nil {
		o.hooks.group(&gopts)
	}
	g := actor.New(gopts)
	// Until the group runs, a start-up failure closes what was opened.
	started := false
	defer func() {
		if !started {
			if aerr := g.Abort(); aerr != nil {
				log.Error("start-up failed and shutting down was incomplete", "err", aerr)
			}
		}
	}()

	// Partner Center.
	ts := o.TokenSource
	tenant := o.Getenv("PCWATCH_PC_TENANT_ID")
	if ts == nil {
		creds, err := pc.CredentialsFromEnv(o.Getenv)
		if err != nil {
			return &ConfigError{Msg: err.Error()}
		}
		cloud := pc.Clouds["global"]
		if c.Cloud != "" {
			cloud = pc.Clouds[c.Cloud]
		}
		if ts, err = creds.TokenSource(ctx, cloud, nil); err != nil {
			return &ConfigError{Msg: err.Error()}
		}
		log.Info("Partner Center credentials", "credentials", creds)
	}
	ts = rotatingToken{ts: ts, red: red}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: max(8, c.Concurrency*2),
			TLSHandshakeTimeout: 15 * time.Second, ResponseHeaderTimeout: 90 * time.Second, IdleConnTimeout: 90 * time.Second,
		}}
	}
	client, err := pc.New(pc.Options{BaseURL: c.PCURL, TokenSource: ts, HTTPClient: hc, RequestsPerMinute: c.Rate, RetryBudget: c.RetryBudget,
		MaxRetries: noneIsNegative(c.MaxRetries), MaxResponseBytes: int64(c.MaxResponseMiB) << 20, MaxListingBytes: int64(c.MaxListingMiB) << 20,
		MaxPages: c.MaxPages, MaxItems: c.MaxItems, LimitHints: map[string]string{pc.LimitResponseBytes: "--max-response-mib",
			pc.LimitListingBytes: "--max-listing-mib", pc.LimitPages: "--max-pages", pc.LimitItems: "--max-items"},
		Burst: max(1, min(c.Concurrency, 20)), Observer: m, Logger: log.With("component", "partnercenter")})
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	source := c.Source
	if source == "" {
		source = client.BaseURL()
		if tenant != "" {
			source += "/tenants/" + tenant
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = client.Probe(pctx, min(20*time.Second, c.RetryBudget))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &StartupError{fmt.Errorf("the Partner Center API at %s is not usable: %w (check --pc-url/--cloud, network and proxy settings, and the PCWATCH_PC_* credentials)", client.BaseURL(), err)}
	}

	// State.
	statePath := filepath.Join(c.DataDir, state.FileName)
	store, err := state.Open(statePath, state.Options{})
	if err != nil {
		return &StartupError{err}
	}
	g.OnStop("state file", 0, func(context.Context) error { return store.Close() })
	rt := &Runtime{StatePath: statePath, Store: store}
	m.reg.MustRegister(newStaleness(store, clk.Now), newBudgetCollector(client.Gate()))

	// NATS.
	natsURL := nopts.URL
	nopts.Name, nopts.Logger = "pcwatch-watcher", log.With("component", "nats-client")
	if natsURL == "" {
		// The embedded server requires authentication: the watcher's and
		// the notifier's NKey seeds live in <data-dir>/nats-auth.
		srv, err := natsembed.Start(natsembed.Options{Port: c.NATSPort, StoreDir: filepath.Join(c.DataDir, "nats"), Logger: log,
			CredentialsDir: filepath.Join(c.DataDir, natsembed.CredentialsDirName), NotifierSubjects: c.NATSNotifierSubjects})
		if err != nil {
			return &StartupError{err}
		}
		g.Add(o.actor(actor.Actor{Name: actorNATS, OnFailure: actor.Fatal, Run: func(ctx context.Context) error {
			return embeddedNATS(ctx, srv)
		}, Interrupt: func(context.Context) error { srv.Shutdown(); return nil }}))
		natsURL, rt.Embedded, rt.NATSCredentials, rt.nats = srv.ClientURL(), true, srv.Credentials(), srv
		nopts = natsconn.Options{URL: natsURL, Name: "pcwatch-watcher", Logger: log.With("component", "nats-client"),
			NKeySeedFile: rt.NATSCredentials.WatcherSeed}
	}
	nc, err := natsconn.Connect(nopts)
	if err != nil {
		return &StartupError{err}
	}
	g.OnStop("NATS connection", 0, func(context.Context) error { nc.Close(); return nil })
	rt.NATSURL, rt.Conn = natsURL, nc
	js, err := jetstream.New(nc)
	if err != nil {
		return &StartupError{err}
	}
	streamOpts := stream.Options{MaxAge: c.StreamMaxAge, MaxBytes: c.StreamMaxBytes, Replicas: c.StreamReplicas}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, serr := stream.Ensure(sctx, js, streamOpts)
	cancel()
	var sce *stream.ConfigError
	if errors.As(serr, &sce) {
		return &StartupError{serr}
	}
	// On the embedded server the notifier may not create streams; on a
	// server of one's own it should not either (README, Security): the
	// watcher creates its dead-letter stream and deliveries bucket when
	// its permissions allow (deploy/nats/nats.conf grants them).
	provisionNotifier(ctx, js, log, rt.Embedded)

	rel, err := relay.New(relay.Options{Conn: nc, Outbox: store, Metrics: m, Redact: red.Bytes, Logger: log.With("component", "relay")})
	if err != nil {
		return err
	}
	dcfg := c.DeadlineConfigAt(clock.Rate(clk)) // the intervals in the clock's time
	eval := &deadline.Evaluator{Store: store, Clock: clk, Config: dcfg, Source: source, Interval: c.DeadlineInterval,
		Logger: log.With("component", "deadlines"), Committed: func(int) { rel.Kick() }, Metrics: m}
	pl, err := poller.New(poller.Options{
		Client: client, Store: store, Clock: clk, Source: source, Concurrency: c.Concurrency,
		Kinds:       c.Kinds(),
		TargetViews: c.TargetViews, Customers: c.Customers, MPNIDs: c.MPNIDs, FailureThreshold: c.FailureThreshold,
		RefundFetchBudget: c.RefundFetchBudget, Spread: c.Spread(), MaxStaleness: c.EffectiveMaxStaleness(),
		Diff: diff.Options{CreatedOnFirstSighting: c.CreatedOnFirstSighting, MassRemovalShare: c.MassRemovalShare,
			HoldCycles: c.HoldCycles},
		Logger: log.With("component", "poller"), Metrics: m, Committed: rel.Kick, Redact: red.String,
	})
	if err != nil {
		return err
	}

	h := &health{store: store, nc: nc, relay: rel.Health, actors: g.Status, interval: c.Interval, started: time.Now(), listFailures: c.FailureThreshold,
		progress: pl.Progress}
	if c.Listen != "" {
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return &StartupError{fmt.Errorf("operations server cannot listen on %s: %w (choose another --listen, or empty to disable)", c.Listen, err)}
		}
		rt.Listen = ln.Addr().String()
		guard, err := opsguard.New(opsguard.Options{Listen: rt.Listen, AllowedHosts: c.AllowedHosts, Token: opsToken})
		if err != nil {
			ln.Close()
			return &ConfigError{Msg: err.Error()}
		}
		if w := opsguard.ListenWarning("the operations server", "--listen", c.Listen, guard.HasToken()); w != "" {
			log.Warn(w)
		}
		srv := &http.Server{Handler: opsHandler(m, h, store, dcfg, clk, red, guard), ReadHeaderTimeout: 10 * time.Second}
		g.Add(o.actor(actor.Serve(actorOps, srv, ln, 3*time.Second)))
	}
	// Stopped after the evaluator and the stream keeper, before the relay:
	// the last events committed get a last chance to go out.
	if !c.Once {
		g.Add(o.actor(actor.Actor{Name: actorRelay, OnFailure: actor.Restart, Run: rel.Run, StopTimeout: 15 * time.Second}))
	}
	g.OnStop("outbox flush", 7*time.Second, func(context.Context) error {
		if !nc.IsConnected() {
			return nil
		}
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if n, err := rel.Flush(fctx); err != nil {
			return fmt.Errorf("outbox not fully drained (%d published); the rest goes out at next start: %w", n, err)
		}
		return nil
	})
	if serr != nil {
		log.Warn("NATS not reachable yet; polling continues and events wait in the outbox", "nats", natsconn.Describe(nc), "err", serr)
		g.Add(o.actor(actor.Actor{Name: actorKeeper, OnFailure: actor.Restart, Finite: true, Run: func(ctx context.Context) error {
			return keepStream(ctx, js, streamOpts, log, rel.Kick)
		}}))
	}
	if !c.Once {
		g.Add(o.actor(actor.Actor{Name: actorEvaluator, OnFailure: actor.Restart, Run: eval.Run}))
		// The notifier's digests ask for the open deadlines on NATS.
		qs := newQueryServer(nc, store, dcfg, clk, red, log.With("component", "deadline-query"))
		g.Add(o.actor(actor.Actor{Name: actorQuery, OnFailure: actor.Restart, Run: qs.Run}))
		// The change feed: hints first (they may be left from a previous
		// run), then the activity-log tail that stores them.
		kick := make(chan struct{}, 1)
		g.Add(o.actor(actor.Actor{Name: actorHints, OnFailure: actor.Restart, Run: func(ctx context.Context) error {
			return pl.RunHints(ctx, poller.HintOptions{Kick: kick})
		}}))
		if c.HotInterval > 0 {
			ho := hotOptions(c, dcfg)
			g.Add(o.actor(actor.Actor{Name: actorHot, OnFailure: actor.Restart, Run: func(ctx context.Context) error {
				return pl.RunHot(ctx, ho)
			}}))
		}
		if c.AuditInterval > 0 {
			tail, err := activity.New(activity.Options{Client: client, Store: store, Clock: clk, Interval: c.AuditInterval,
				Known: knownCustomer(store, c.Customers), Metrics: m, Logger: log.With("component", "activity-log"),
				Hinted: func() {
					select {
					case kick <- struct{}{}:
					default:
					}
				}})
			if err != nil {
				return err
			}
			g.Add(o.actor(actor.Actor{Name: actorActivity, OnFailure: actor.Restart, Run: tail.Run}))
		}
		if c.WebhookListen != "" {
			a, addr, err := webhookIntake(c, store, clk, hc, m, log, kick)
			if err != nil {
				return err
			}
			rt.WebhookListen = addr
			g.Add(o.actor(a))
		}
	}
	log.Info("watcher started", "partner_center", client.BaseURL(), "source", source, "state", statePath,
		"nats", natsconn.Describe(nc), "embedded_nats", rt.Embedded, "listen", rt.Listen, "interval", c.Interval, "once", c.Once)
	if rt.NATSCredentials != nil {
		log.Info("embedded NATS requires credentials: give the notifier its NKey seed (notifier run --nats-nkey, or PCWATCH_NATS_NKEY)",
			"notifier_nkey", rt.NATSCredentials.NotifierSeed)
	}
	if o.Started != nil {
		o.Started(rt)
	}

	started = true
	if c.Once {
		return g.Run(ctx, func(ctx context.Context) error { return runOnce(ctx, pl, eval, rel, o) })
	}
	loop := &pollLoop{cycle: pl.Cycle, interval: c.Interval, paced: c.Spread() > 0, maxStaleness: c.EffectiveMaxStaleness(),
		rnd: rand.Float64, health: h, cycled: o.Cycled, log: log}
	return g.Run(ctx, loop.run)
}

// knownCustomer says whether the activity log's customer id is one the
// watcher watches: in the state file (as the customer list spells it) and
// in --customers when that is set. Hints of others are dropped: the
// customer list brings new customers.
func knownCustomer(store *state.Store, only []string) func(string) bool {
	return func(id string) bool {
		if len(only) > 0 && !slices.Contains(only, id) {
			return false
		}
		known := false
		_ = store.View(func(r *state.ReadTx) error {
			_, known, _ = r.Get(resource.Customers, id)
			return nil
		})
		return known
	}
}

// embeddedNATS waits until ctx ends or the embedded server stops by
// itself, which is a failure.
func embeddedNATS(ctx context.Context, srv *natsembed.Server) error {
	down := make(chan struct{})
	go func() { srv.NATS().WaitForShutdown(); close(down) }()
	select {
	case <-ctx.Done():
		return nil
	case <-down:
		return fmt.Errorf("the embedded NATS server at %s shut down", srv.ClientURL())
	}
}

// pollLoop is the watcher's main function: a cycle, then the interval
// (with 10% jitter, so that watchers started together drift apart), until
// ctx ends. A paced loop (--sweep spread: the cycle itself spreads its
// customers over most of the interval) measures the interval from the
// start of a cycle, and starts the next one at once when a cycle overran
// it; otherwise the interval is the pause after a cycle. A cycle that
// cannot run is logged and shown by /readyz; the next one tries again.
type pollLoop struct {
	cycle    func(context.Context) (*poller.Report, error)
	interval time.Duration
	paced    bool
	// maxStaleness: a cycle that took longer is warned about (the budget
	// cannot list every customer that often).
	maxStaleness time.Duration
	rnd          func() float64 // in [0, 1): the jitter's draw
	health       *health
	cycled       func(*poller.Report) // Options.Cycled
	log          *slog.Logger
}

func (l *pollLoop) run(ctx context.Context) error {
	for {
		began := time.Now()
		rep, err := l.cycle(ctx)
		if ctx.Err() != nil {
			l.log.Info("shutting down: customers in flight were abandoned without committing")
			return nil
		}
		if err != nil {
			l.log.Error("poll cycle failed", "err", err)
			l.health.cycleFailed(err)
		} else {
			l.health.cycled(rep)
			if l.cycled != nil {
				l.cycled(rep)
			}
			if took := time.Since(began); l.maxStaleness > 0 && took > l.maxStaleness {
				l.log.Warn("a sweep took longer than --max-staleness: the request budget cannot list every customer that often; raise --rate (Partner Center allows about 500/min) or --max-staleness",
					"took", took.Round(time.Second), "max_staleness", l.maxStaleness, "customers", rep.Customers, "requests", rep.APIRequests)
			}
		}
		wait := jitter(l.interval, l.rnd())
		if l.paced {
			wait -= time.Since(began)
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runOnce: one cycle, one deadline evaluation, outbox drained.
func runOnce(ctx context.Context, pl *poller.Poller, eval *deadline.Evaluator, rel *relay.Relay, o Options) error {
	rep, err := pl.Cycle(ctx)
	if err != nil {
		return err
	}
	if o.Cycled != nil {
		o.Cycled(rep)
	}
	// An evaluation that skipped damaged records still committed the
	// others' events: publish them before reporting it.
	_, evalErr := eval.EvaluateOnce(ctx)
	var damaged *state.DamagedError
	if evalErr != nil && !errors.As(evalErr, &damaged) {
		return evalErr
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := rel.Flush(fctx); err != nil {
		return errors.Join(evalErr, fmt.Errorf("events are safe in the outbox but were not all published: %w", err))
	}
	if evalErr != nil {
		return evalErr
	}
	if rep.Complete() {
		return nil
	}
	if !rep.CustomerListOK {
		fmt.Fprintf(o.Stderr, "customer list: %s\n", cli.ErrorLine(rep.CustomerList))
	}
	for _, f := range rep.Failures {
		var kinds []string
		for _, k := range f.Kinds {
			kinds = append(kinds, k.Name())
		}
		fmt.Fprintf(o.Stderr, "customer %s (%s) %s: %s\n", f.CustomerID, f.Name, strings.Join(kinds, ","), cli.ErrorLine(f.Err))
	}
	return ErrPartial
}

// provisionNotifier creates the notifier's dead-letter stream and
// buckets (notify.Provision) when they do not exist: its identity on the embedded
// server may not create streams (a stream's options could copy its
// messages into the event stream), nor should it on a server of one's
// own. Existing ones are left as they are. A failure is logged, not
// fatal: the notifier waits for them (or, allowed to, creates them). On
// an external server (embedded false) the watcher may lack the permission
// (a refused request is not answered): the wait is shorter and a failure
// is said at debug level.
func provisionNotifier(ctx context.Context, js jetstream.JetStream, log *slog.Logger, embedded bool) {
	wait := 10 * time.Second
	if !embedded {
		wait = 3 * time.Second
		log = slog.New(debugOnly{log.Handler()})
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := notify.Provision(pctx, js); err != nil {
		log.Warn("cannot create what the notifier needs on NATS; it waits for it (or creates it, if allowed)", "err", err)
	}
}

// debugOnly logs every record at debug level.
type debugOnly struct{ slog.Handler }

func (d debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.Handler.Enabled(ctx, slog.LevelDebug)
}

func (d debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.Handler.Handle(ctx, r)
}

// keepStream retries creating the stream until it exists (nil) or ctx
// ends (nil).
func keepStream(ctx context.Context, js jetstream.JetStream, so stream.Options, log *slog.Logger, ready func()) error {
	wait := time.Second
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := stream.Ensure(sctx, js, so)
		cancel()
		if err == nil {
			log.Info("JetStream stream ready", "stream", stream.Name)
			ready()
			return nil
		}
		log.Debug("JetStream stream not ready", "err", err)
		wait = min(30*time.Second, wait*2)
	}
}

// noneIsNegative maps --max-retries 0 (no retries) to the client's
// "negative means none" (its zero value means the default).
func noneIsNegative(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// jitter is d plus or minus 10%: r, in [0, 1), maps to [0.9d, 1.1d).
func jitter(d time.Duration, r float64) time.Duration {
	return d + time.Duration((r*0.2-0.1)*float64(d))
}

// NewLogger builds the slog logger for --log-format and --log-level.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	ho := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
