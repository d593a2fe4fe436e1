package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pcwatch/pcwatch/internal/actor"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/opsguard"
)

// DefaultNATSURL is the watcher's embedded NATS server.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Options configure Run.
type Options struct {
	// Config is the validated configuration (LoadConfig). Required.
	Config *Config
	// NATS says how to reach NATS; URL defaults to DefaultNATSURL.
	NATS natsconn.Options
	// Listen is the health and metrics address; default the
	// configuration's listen, else DefaultListen. Port 0 picks one.
	Listen string
	// Logger receives the notifier's logs; nil discards them.
	Logger *slog.Logger
	// Clock stamps signatures and mails and times retries and claims;
	// default the wall clock.
	Clock clock.Clock
	// Calendar is what deadlines, silences, reminders and groups are read
	// on; default Clock. The demo and the chaos suite run the watcher on an
	// accelerated calendar (--clock): the notifier then takes the same.
	Calendar clock.Clock
	// HTTPClient sends webhooks, Slack and Teams messages; default a client
	// that follows no redirects. Timeouts come from the channels.
	HTTPClient *http.Client
	// ShutdownGrace is how long sends in flight may finish once ctx ends;
	// default 10s. Those still running are then cancelled and their
	// messages redelivered later.
	ShutdownGrace time.Duration
	// Ready, when set, is called once the health endpoint listens and every
	// channel's consumer runs.
	Ready func(ReadyInfo)
	// OpsToken, when set, is required as a bearer token for /metrics and
	// for the details of a failing /readyz asked from another host
	// (opsguard; cmd/notifier reads PCWATCH_OPS_TOKEN or
	// PCWATCH_OPS_TOKEN_FILE).
	OpsToken string
	// AllowedHosts are added to the configuration's allowed_hosts: names
	// clients may send as Host to the health endpoint.
	AllowedHosts []string

	hooks       *testHooks
	digestHooks *digestHooks
}

// ReadyInfo describes a notifier that is ready.
type ReadyInfo struct {
	Addr     string   // the health and metrics address
	Channels []string // the channels consuming (those some route uses)
	Instance string   // this process's id in delivery records
}

// Run runs the notifier until ctx ends: one durable JetStream consumer per
// channel, the dead-letter stream and the deliveries bucket, and the
// /healthz, /readyz and /metrics endpoints. It waits for NATS and for the
// event stream rather than failing when they are not there yet. It returns
// nil after a clean shutdown, or the error that stopped it from starting.
func Run(ctx context.Context, o Options) error {
	if o.Config == nil || len(o.Config.names) == 0 {
		return errors.New("notify.Run: no configuration (load it with notify.LoadConfig)")
	}
	cfg := o.Config
	if o.NATS.URL == "" {
		o.NATS.URL = DefaultNATSURL
	}
	if o.NATS.Name == "" {
		o.NATS.Name = "pcwatch-notifier"
	}
	if o.Listen == "" {
		o.Listen = cfg.ListenAddr()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Calendar == nil {
		o.Calendar = o.Clock
	}
	if o.HTTPClient == nil {
		o.HTTPClient = newHTTPClient()
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 10 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	red := cfg.Redactor()
	red.Add(o.NATS.Secrets()...)
	red.Add(o.OpsToken)
	log = slog.New(red.Handler(log.Handler()))
	if o.NATS.Logger == nil {
		o.NATS.Logger = log
	} else {
		o.NATS.Logger = slog.New(red.Handler(o.NATS.Logger.Handler()))
	}
	host, _ := os.Hostname()
	instance := fmt.Sprintf("%s-%d-%s", strings.ReplaceAll(host, ".", "_"), os.Getpid(), randomHex(3))
	for _, w := range cfg.warnings {
		log.Warn("configuration: " + w)
	}

	// The notifier's actors (package actor, the watcher's too): the health
	// server, one consumer per channel and the DLQ gauge, all restarted with
	// backoff when they fail (counted in
	// pcwatch_notifier_actor_restarts_total): a channel whose consumer fails
	// must not stop the others, and what a consumer needs (its durable
	// consumer, the delivery records) lives in NATS, so a new one resumes
	// where the failed one stopped. The main function sets up the DLQ
	// stream and the deliveries bucket; a refusal of the credentials there
	// stops the notifier (status 1): waiting would not fix it.
	m := newMetrics(cfg.names)
	g := actor.New(actor.Options{Logger: log, Restarted: m.actorRestarted, InitialBackoff: 500 * time.Millisecond,
		MaxBackoff: 30 * time.Second, StopTimeout: o.ShutdownGrace + 5*time.Second})
	started := false
	defer func() {
		if !started {
			_ = g.Abort()
		}
	}()
	h := &health{actors: g.Status}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("health and metrics endpoint: %w (choose another address with --listen or listen:)", err)
	}
	guard, err := opsguard.New(opsguard.Options{Listen: ln.Addr().String(), AllowedHosts: append(slices.Clone(cfg.AllowedHosts), o.AllowedHosts...), Token: o.OpsToken})
	if err != nil {
		ln.Close()
		return err
	}
	if w := opsguard.ListenWarning("the health and metrics endpoint", "listen (or --listen)", o.Listen, guard.HasToken()); w != "" {
		log.Warn(w)
	}
	srv := &http.Server{Handler: h.handler(m, guard), ReadHeaderTimeout: 5 * time.Second}
	// Stopped last but for the NATS connection: /readyz answers while the
	// consumers stop.
	g.OnStop("NATS connection", 0, func(context.Context) error {
		if h.conn() != nil {
			h.conn().Close()
		}
		return nil
	})
	g.Add(actor.Serve("health-server", srv, ln, 5*time.Second))
	log.Info("health and metrics listening", "addr", ln.Addr().String())
	if o.hooks != nil && o.hooks.listening != nil {
		o.hooks.listening(ln.Addr().String())
	}

	nc, err := natsconn.Connect(o.NATS)
	if ae := (*natsconn.AuthError)(nil); errors.As(err, &ae) {
		return NATSRefused(o.NATS, ae.Err)
	}
	if err != nil {
		return err
	}
	h.set(nc, nil)
	log.Info("connecting to NATS", "nats", o.NATS.String())
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}

	refreshDLQ := make(chan struct{}, 1)
	kick := func() {
		select {
		case refreshDLQ <- struct{}{}:
		default:
		}
	}
	// Shutdown: first the consumers stop fetching, all at once; sends in
	// flight get ShutdownGrace to finish, then they are cancelled (their
	// messages are redelivered later).
	fetchCtx, stopFetching := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFetching()
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	g.OnStop("cancel sends in flight", 0, func(context.Context) error { cancelWork(); return nil })
	setUp := make(chan struct{}) // closed once the runners' store is set
	readyc := make(chan string, len(cfg.names))
	var runners []*channelRunner
	var active []string
	for _, name := range cfg.names {
		if len(cfg.FilterSubjects(name)) == 0 {
			if cfg.digestChannel(name) {
				log.Info("channel is used by digests only: not consuming events for it", "channel", name)
			} else {
				log.Warn("channel is not used by any route: not consuming for it", "channel", name)
			}
			continue
		}
		active = append(active, name)
		ch := cfg.Channels[name]
		snd, err := newSender(ch, senderDeps{http: o.HTTPClient, conn: nc, clock: o.Clock})
		if err != nil {
			return err
		}
		r := &channelRunner{
			name: name, ch: ch, cfg: cfg, snd: snd, js: js, m: m, clk: o.Calendar, hooks: o.hooks,
			log: log.With("channel", name), rnd: rand.Float64, onDLQ: kick,
			ready: func() { readyc <- name },
		}
		runners = append(runners, r)
		g.Add(actor.Actor{Name: "channel:" + name, OnFailure: actor.Restart, Run: func(actx context.Context) error {
			select {
			case <-setUp:
			case <-actx.Done():
				return nil
			}
			cctx, cancel := context.WithCancel(actx)
			defer cancel()
			defer context.AfterFunc(fetchCtx, cancel)()
			return r.consume(cctx, workCtx)
		}})
	}
	sp := &silencePoller{cfg: cfg, log: log, hooks: o.hooks}
	g.Add(actor.Actor{Name: "silences", OnFailure: actor.Restart, Run: func(actx context.Context) error {
		select {
		case <-setUp:
		case <-actx.Done():
			return nil
		}
		return sp.run(actx)
	}})
	// The digests: one actor for all, restarted with backoff (what it
	// needs, the watcher's state and the runs' records, lives elsewhere;
	// a new Run catches up the runs within their grace).
	var deliveriesKV jetstream.KeyValue
	if len(cfg.digests) > 0 {
		ds, err := newDigestSchedulerFor(cfg, o, nc, log, instance, m)
		if err != nil {
			return err
		}
		g.Add(actor.Actor{Name: "digests", OnFailure: actor.Restart, Run: func(actx context.Context) error {
			select {
			case <-setUp:
			case <-actx.Done():
				return nil
			}
			ds.kv = deliveriesKV
			return ds.Run(actx)
		}})
	}
	g.Add(actor.Actor{Name: "dlq-gauge", OnFailure: actor.Restart, Run: func(ctx context.Context) error {
		refreshDLQGauge(ctx, js, m, refreshDLQ)
		return nil
	}})
	g.OnStop("stop consuming", 0, func(context.Context) error {
		log.Info("shutting down: letting sends in flight finish", "grace", o.ShutdownGrace)
		stopFetching()
		time.AfterFunc(o.ShutdownGrace, func() {
			if workCtx.Err() == nil {
				log.Warn("shutdown grace over: cancelling sends still in flight; their events will be redelivered")
				cancelWork()
			}
		})
		return nil
	})

	natsDesc := o.NATS.String()
	started = true
	err = g.Run(ctx, func(ctx context.Context) error {
		kv, err := setupWithRetry(ctx, log, func(ctx context.Context) (buckets, error) {
			if nc.IsClosed() {
				return buckets{}, NATSRefused(o.NATS, nc.LastError())
			}
			if !nc.IsConnected() {
				return buckets{}, fmt.Errorf("%s is not reachable (set --nats-url or PCWATCH_NATS_URL)", natsDesc)
			}
			if _, err := EnsureDLQ(ctx, js); err != nil {
				return buckets{}, err
			}
			return openDeliveries(ctx, js, cfg.Delivery.DedupeTTL.D(), log)
		})
		if err != nil || kv.deliveries == nil {
			return err // nil: ctx ended while waiting for NATS
		}
		store := newDeliveryStore(js, kv.deliveries, kv.claims, instance, o.Clock, cfg.Delivery.DedupeTTL.D(), func(ch string) time.Duration {
			return cfg.Delivery.AckWait.D() + cfg.Channels[ch].Timeout.D()
		})
		store.reconnects = func() uint64 { return nc.Stats().Reconnects }
		store.recreate = func(ctx context.Context) error {
			_, err := EnsureClaims(ctx, js, cfg.Delivery.DedupeTTL.D())
			return err
		}
		// The runtime silences are in force before the first event.
		sp.kv = kv.silences
		sp.refresh(ctx)
		for _, r := range runners {
			r.store = store
			r.akv, r.alerts = kv.alerts, &alertCache{}
		}
		deliveriesKV = kv.deliveries
		close(setUp)
		h.set(nc, runners)
		for range runners {
			select {
			case <-readyc:
			case <-ctx.Done():
				return nil
			}
		}
		log.Info("notifier ready", "channels", strings.Join(active, ","), "instance", instance)
		if o.Ready != nil {
			o.Ready(ReadyInfo{Addr: ln.Addr().String(), Channels: active, Instance: instance})
		}
		<-ctx.Done()
		return nil
	})
	log.Info("notifier stopped")
	return err
}

// Provision creates, on a server where the notifier may not, what it
// needs: the dead-letter stream, the deliveries bucket (when missing: an
// existing one keeps its TTL), and the claims, alerts and silences
// buckets. The watcher calls it on its embedded server. Errors name each
// stream or bucket that could not be made.
func Provision(ctx context.Context, js jetstream.JetStream) error {
	var errs []error
	if _, err := EnsureDLQ(ctx, js); err != nil {
		errs = append(errs, err)
	}
	if _, err := js.KeyValue(ctx, DeliveriesBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		if _, err := EnsureDeliveries(ctx, js, DefaultDedupeTTL); err != nil {
			errs = append(errs, err)
		}
	} else if err != nil {
		errs = append(errs, fmt.Errorf("looking up KV bucket %s: %w", DeliveriesBucket, err))
	}
	// A memory bucket: made again at every start (a server restart lost it).
	if _, err := EnsureClaims(ctx, js, DefaultDedupeTTL); err != nil {
		errs = append(errs, err)
	}
	for _, b := range []struct {
		name   string
		ensure func(context.Context, jetstream.JetStream, time.Duration) (jetstream.KeyValue, error)
	}{{AlertsBucket, EnsureAlerts}, {SilencesBucket, EnsureSilences}} {
		if _, err := js.KeyValue(ctx, b.name); errors.Is(err, jetstream.ErrBucketNotFound) {
			if _, err := b.ensure(ctx, js, 0); err != nil {
				errs = append(errs, err)
			}
		} else if err != nil {
			errs = append(errs, fmt.Errorf("looking up KV bucket %s: %w", b.name, err))
		}
	}
	return errors.Join(errs...)
}

// deliveriesUpdateWait bounds an attempt to change the deliveries bucket's
// TTL; shorter than the 10s a setup attempt has.
const deliveriesUpdateWait = 4 * time.Second

// buckets are the notifier's key-value buckets.
type buckets struct {
	deliveries, claims, alerts, silences jetstream.KeyValue
}

// openDeliveries returns the deliveries bucket and the claims bucket, each
// the existing one when it already keeps its records for ttl (no change
// asked of the server), else the bucket created or reconfigured by
// EnsureDeliveries or EnsureClaims. On the watcher's embedded NATS server
// the notifier may not create or reconfigure streams (the watcher creates
// the buckets with DefaultDedupeTTL): when the change is refused the
// existing bucket is used as it is, with a warning.
func openDeliveries(ctx context.Context, js jetstream.JetStream, ttl time.Duration, log *slog.Logger) (buckets, error) {
	kv, err := openBucket(ctx, js, DeliveriesBucket, ttl, EnsureDeliveries, log)
	if err != nil {
		return buckets{}, err
	}
	claims, err := openBucket(ctx, js, ClaimsBucket, ttl, EnsureClaims, log)
	if err != nil {
		return buckets{}, err
	}
	alerts, err := openBucket(ctx, js, AlertsBucket, alertsTTL, EnsureAlerts, log)
	if err != nil {
		return buckets{}, err
	}
	silences, err := openBucket(ctx, js, SilencesBucket, 0, EnsureSilences, log)
	if err != nil {
		return buckets{}, err
	}
	return buckets{deliveries: kv, claims: claims, alerts: alerts, silences: silences}, nil
}

func openBucket(ctx context.Context, js jetstream.JetStream, name string, ttl time.Duration,
	ensure func(context.Context, jetstream.JetStream, time.Duration) (jetstream.KeyValue, error), log *slog.Logger) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		st, serr := kv.Status(ctx)
		if serr == nil && st.TTL() == ttl {
			return kv, nil
		}
	} else {
		kv = nil
	}
	uctx := ctx
	if kv != nil {
		// A refused change is not answered (the server sends a permission
		// error to the connection, not to the request): bound the wait so
		// that the existing bucket can still be used.
		var cancel context.CancelFunc
		uctx, cancel = context.WithTimeout(ctx, deliveriesUpdateWait)
		defer cancel()
	}
	nkv, err := ensure(uctx, js, ttl)
	if err == nil {
		return nkv, nil
	}
	if kv == nil || ctx.Err() != nil {
		return nil, err
	}
	st, serr := kv.Status(ctx)
	if serr != nil {
		return nil, err
	}
	log.Warn("a bucket of the notifier could not be changed to delivery.dedupe_ttl; using it as it is (on the watcher's embedded NATS server the notifier may not reconfigure streams: set dedupe_ttl to the bucket's TTL to silence this)",
		"bucket", name, "bucket_ttl", st.TTL(), "dedupe_ttl", ttl, "err", err)
	return kv, nil
}

// ErrNATSRefused says the server refused the notifier's credentials when
// it connected (natsconn.Connect's *natsconn.AuthError), or that the NATS
// client gave up on the connection for good.
var ErrNATSRefused = errors.New("NATS refused the connection")

// NATSRefused describes a refused or closed connection to o's server and
// the fix; last is the connection's last error (or the refusal). Run
// returns it, and cmd/notifier's one-shot commands print it, instead of
// waiting for NATS forever.
func NATSRefused(o natsconn.Options, last error) error {
	what := "closed the connection"
	if natsconn.Refused(last) {
		what = "refused the credentials"
	}
	return fmt.Errorf("%w: %s %s: %v; give the notifier the credentials the server expects (the watcher's embedded server: --nats-nkey <data-dir>/nats-auth/notifier.nk): %s",
		ErrNATSRefused, o, what, last, natsconn.CredentialsHint())
}

// setupWithRetry runs f until it succeeds or ctx ends (zero value, nil),
// logging why it waits; an ErrNATSRefused from f ends it with that error:
// waiting would not help.
func setupWithRetry[T any](ctx context.Context, log *slog.Logger, f func(context.Context) (T, error)) (T, error) {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := f(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		var zero T
		if errors.Is(err, ErrNATSRefused) {
			return zero, err
		}
		if ctx.Err() != nil {
			return zero, nil
		}
		wait := bo.NextBackOff()
		log.Warn("waiting for NATS JetStream (is the watcher or NATS running?)", "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, nil
		case <-t.C:
		}
	}
}

// refreshDLQGauge keeps the DLQ gauge current: every 30s and after each
// dead-lettering.
func refreshDLQGauge(ctx context.Context, js jetstream.JetStream, m *metrics, kick <-chan struct{}) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if s, err := js.Stream(actx, DLQStream); err == nil {
			m.dlq.Set(float64(s.CachedInfo().State.Msgs))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// health serves /healthz, /readyz and /metrics.
type health struct {
	actors  func() []actor.Status
	nc      *nats.Conn
	mu      sync.Mutex
	runners []*channelRunner
}

func (h *health) conn() *nats.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nc
}

func (h *health) set(nc *nats.Conn, runners []*channelRunner) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nc, h.runners = nc, runners
}

// handler serves the endpoints behind guard's Host check; /metrics needs
// the token when one is set, and a failing /readyz says why only to those
// guard lets see details.
func (h *health) handler(m *metrics, guard *opsguard.Guard) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		nc, runners := h.nc, h.runners
		h.mu.Unlock()
		var problems []string
		if nc == nil || !nc.IsConnected() {
			problems = append(problems, "NATS not connected")
		}
		if len(runners) == 0 {
			problems = append(problems, "consumers not started")
		}
		for _, rn := range runners {
			if !rn.active.Load() {
				problems = append(problems, "channel "+rn.name+": consumer not running")
			}
		}
		problems = append(problems, actor.Down(h.actors())...)
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			if !guard.MayShowDetails(r) {
				fmt.Fprintln(w, "not ready")
				return
			}
			fmt.Fprintln(w, strings.Join(problems, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", guard.Protect(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})))
	return guard.CheckHost(mux)
}
