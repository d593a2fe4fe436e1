package watcher

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// Config is the watcher's configuration. Every field has a flag, a
// PCWATCH_* environment variable and a key in the YAML config file; flags
// win over the environment, the environment over the file. Credentials are
// not here: they come only from the environment (or files named by it).
type Config struct {
	PCURL       string
	Cloud       string
	DataDir     string
	NATSPort    int
	Interval    time.Duration
	Once        bool
	Concurrency int
	Rate        float64 // requests per minute
	RetryBudget time.Duration
	// Bounds on what one Partner Center request and one listing may cost
	// (see internal/partnercenter's package doc, "Memory").
	MaxRetries     int
	MaxResponseMiB int
	MaxListingMiB  int
	MaxPages       int
	MaxItems       int

	Resources   []string
	TargetViews []string
	Customers   []string
	MPNIDs      []string
	LogFormat   string
	LogLevel    string
	Listen      string
	Source      string
	// AllowedHosts are further Host names the operations server answers
	// (loopback names and the bound address always are).
	AllowedHosts []string
	// NATSNotifierSubjects are the subjects the notifier identity may
	// publish on, on the embedded NATS server (its nats channels).
	NATSNotifierSubjects []string
	// NATS says how to reach an external NATS server (package natsconn:
	// its flags, variables and config-file keys are the notifier's too);
	// an empty URL runs the embedded server. It holds no credentials: Run
	// reads them from the environment (natsconn.Credentials).
	NATS natsconn.Options

	DeadlineInterval time.Duration
	// AuditInterval is the time between reads of the activity log
	// (audit records), whose records trigger refreshes of the customers
	// they name; 0 turns the tail off.
	AuditInterval time.Duration
	// Sweep is how a cycle spends the request budget: "spread" starts
	// the customers evenly over 80% of --interval (those never listed
	// since the start, or overdue, at once), "burst" all at once.
	Sweep string
	// MaxStaleness bounds how long a customer goes without a sweep's
	// listing: one about to exceed it is fetched ahead of every hint and
	// hot customer. 0 means 4 x --interval (EffectiveMaxStaleness).
	MaxStaleness time.Duration
	// HotInterval: customers with a deadline within 24h, a renewal due or
	// a change in the last hour are listed at least this often, between
	// sweeps, and each deadline alert's subscription is read again shortly
	// before it fires; 0 turns the hot refresher off.
	HotInterval time.Duration
	// Webhook intake (opt-in): WebhookListen is the address of its own
	// HTTP listener (empty: off), WebhookPath the callback path,
	// WebhookURL the public URL Partner Center calls (what `watcher
	// webhooks register` registers). WebhookRoots and
	// WebhookIntermediates are PEM files (empty: the system roots, none);
	// WebhookCertHosts and WebhookCertNames override the documented
	// certificate host and name.
	WebhookListen, WebhookPath, WebhookURL string
	WebhookRoots, WebhookIntermediates     string
	WebhookCertHosts, WebhookCertNames     []string
	// Thresholds are the thresholds of each deadline rule (one option per
	// rule: --cancellation-thresholds, ...).
	Thresholds      map[*deadline.Rule][]time.Duration
	RenewalAllTerms bool

	CreatedOnFirstSighting bool
	MassRemovalShare       float64
	HoldCycles             int
	FailureThreshold       int
	RefundFetchBudget      int

	StreamMaxAge   time.Duration
	StreamMaxBytes int64
	StreamReplicas int

	// Clock is a clock spec (internal/clock.Parse); empty is the wall
	// clock. The demo and the chaos suite use an accelerated calendar.
	Clock string
}

// Default returns the documented defaults.
func Default() Config {
	d := deadline.DefaultConfig()
	return Config{
		PCURL:                pc.GlobalBaseURL,
		DataDir:              "./data",
		NATSPort:             4222,
		Interval:             15 * time.Minute,
		Concurrency:          8,
		Rate:                 pc.DefaultRequestsPerMinute,
		RetryBudget:          pc.DefaultRetryBudget,
		MaxRetries:           pc.DefaultMaxRetries,
		MaxResponseMiB:       pc.DefaultMaxResponseBytes >> 20,
		MaxListingMiB:        pc.DefaultMaxListingBytes >> 20,
		MaxPages:             pc.DefaultMaxPages,
		MaxItems:             pc.DefaultMaxItems,
		Resources:            defaultResources(),
		TargetViews:          []string{"OnlineServices"},
		LogFormat:            "text",
		LogLevel:             "info",
		Listen:               "127.0.0.1:9464",
		NATSNotifierSubjects: slices.Clone(natsembed.DefaultNotifierSubjects),
		DeadlineInterval:     time.Minute,
		AuditInterval:        30 * time.Second,
		Sweep:                "spread",
		HotInterval:          5 * time.Minute,
		WebhookPath:          "/webhooks/partner-center",
		Thresholds:           d.Thresholds,
		MassRemovalShare:     0.5,
		HoldCycles:           3,
		FailureThreshold:     3,
		RefundFetchBudget:    200,
		StreamMaxAge:         30 * 24 * time.Hour,
		StreamMaxBytes:       1 << 30,
		StreamReplicas:       1,
	}
}

// option is one setting: its flag name (the env var is PCWATCH_ + the name
// upper-cased with '-' as '_', the YAML key the name with '-' as '_').
type option struct {
	name  string
	usage string
	set   func(c *Config, v string) error
	show  func(c *Config) string
}

func (o option) env() string {
	return "PCWATCH_" + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}
func (o option) yaml() string { return strings.ReplaceAll(o.name, "-", "_") }

func str(p func(*Config) *string) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error { *p(c) = strings.TrimSpace(v); return nil },
		func(c *Config) string { return *p(c) }
}

func list(p func(*Config) *[]string) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			var out []string
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			*p(c) = out
			return nil
		},
		func(c *Config) string { return strings.Join(*p(c), ",") }
}

func dur(p func(*Config) *time.Duration) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d <= 0 {
				return fmt.Errorf("%q is not a positive duration (write e.g. 90s, 15m or 1h)", v)
			}
			*p(c) = d
			return nil
		},
		func(c *Config) string { return p(c).String() }
}

// durOrOff is dur for an option that 0 turns off.
func durOrOff(p func(*Config) *time.Duration) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return fmt.Errorf("%q is not a duration (write e.g. 30s or 2m, or 0 to turn it off)", v)
			}
			*p(c) = d
			return nil
		},
		func(c *Config) string { return p(c).String() }
}

// thresholds is the option of a deadline rule's thresholds.
func thresholds(r *deadline.Rule) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			ds, err := deadline.ParseThresholds(v)
			if err != nil {
				return err
			}
			if c.Thresholds == nil {
				c.Thresholds = map[*deadline.Rule][]time.Duration{}
			}
			c.Thresholds[r] = ds
			return nil
		},
		func(c *Config) string {
			var s []string
			for _, d := range c.Thresholds[r] {
				if d%(24*time.Hour) == 0 {
					s = append(s, fmt.Sprintf("%dd", d/(24*time.Hour)))
				} else {
					s = append(s, strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m"))
				}
			}
			return strings.Join(s, ",")
		}
}

func integer(p func(*Config) *int, lo, hi int) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("%q is not a whole number between %d and %d", v, lo, hi)
			}
			*p(c) = n
			return nil
		},
		func(c *Config) string { return strconv.Itoa(*p(c)) }
}

func boolean(p func(*Config) *bool) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p(c) = b
			return nil
		},
		func(c *Config) string { return strconv.FormatBool(*p(c)) }
}

func number(p func(*Config) *float64, lo, hi float64) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			// NaN compares false with everything: test the range so that
			// NaN fails it (--rate NaN used to disable the rate limiter).
			if err != nil || !(f >= lo && f <= hi) {
				return fmt.Errorf("%q is not a number between %g and %g", v, lo, hi)
			}
			*p(c) = f
			return nil
		},
		func(c *Config) string { return strconv.FormatFloat(*p(c), 'g', -1, 64) }
}

func opt(name, usage string, f func(*Config, string) error, s func(*Config) string) option {
	return option{name: name, usage: usage, set: f, show: s}
}

// options is the single table flags, environment and file are read from.
var options = func() []option {
	o := []option{}
	add := func(name, usage string, f func(*Config, string) error, s func(*Config) string) {
		o = append(o, opt(name, usage, f, s))
	}
	f, s := str(func(c *Config) *string { return &c.PCURL })
	add("pc-url", "Partner Center API base URL (without /v1)", f, s)
	add("cloud", "shorthand for --pc-url: global, usgov or china", func(c *Config, v string) error {
		cl, err := pc.LookupCloud(v)
		if err != nil {
			return err
		}
		c.Cloud, c.PCURL = cl.Name, cl.BaseURL
		return nil
	}, func(c *Config) string { return c.Cloud })
	f, s = str(func(c *Config) *string { return &c.DataDir })
	add("data-dir", "directory for the state file and the embedded NATS store", f, s)
	f, s = integer(func(c *Config) *int { return &c.NATSPort }, -1, 65535)
	add("nats-port", "port of the embedded NATS server (127.0.0.1); -1 picks a free one", f, s)
	f, s = dur(func(c *Config) *time.Duration { return &c.Interval })
	add("interval", "time between poll cycles (10% jitter is added)", f, s)
	f, s = boolean(func(c *Config) *bool { return &c.Once })
	add("once", "run one cycle and one deadline evaluation, drain the outbox, exit (0 all polled, 1 some failed)", f, s)
	f, s = integer(func(c *Config) *int { return &c.Concurrency }, 1, 256)
	add("concurrency", "customers polled at once (they share the rate limit)", f, s)
	f, s = number(func(c *Config) *float64 { return &c.Rate }, 1, 100000)
	add("rate", "Partner Center requests per minute, for all workers together", f, s)
	f, s = dur(func(c *Config) *time.Duration { return &c.RetryBudget })
	add("retry-budget", "how long one Partner Center request may spend retrying (429, 5xx, network) before the customer counts as failed", f, s)
	f, s = integer(func(c *Config) *int { return &c.MaxRetries }, 0, 100)
	add("max-retries", "retries of one Partner Center request after its first attempt (5xx, network, malformed body; a 429 with Retry-After does not count), within --retry-budget", f, s)
	f, s = integer(func(c *Config) *int { return &c.MaxResponseMiB }, 1, 1024)
	add("max-response-mib", "largest Partner Center response body accepted, in MiB (a page of 500 subscriptions is about 1.5 MiB)", f, s)
	f, s = integer(func(c *Config) *int { return &c.MaxListingMiB }, 1, 65536)
	add("max-listing-mib", "largest listing accepted (all its pages together, decoded), in MiB", f, s)
	f, s = integer(func(c *Config) *int { return &c.MaxPages }, 1, 1000000)
	add("max-pages", "most pages one listing may have (500 customers per page); more fails the listing instead of paging forever", f, s)
	f, s = integer(func(c *Config) *int { return &c.MaxItems }, 1, 100000000)
	add("max-items", "most items one listing may have (customers in the customer list, subscriptions of one customer)", f, s)
	f, s = list(func(c *Config) *[]string { return &c.Resources })
	add("resources", "what to poll per customer: "+strings.Join(resource.Options(), ","), f, s)
	f, s = list(func(c *Config) *[]string { return &c.TargetViews })
	add("target-views", "product catalog views polled when products are on", f, s)
	f, s = list(func(c *Config) *[]string { return &c.Customers })
	add("customers", "poll only these customer ids (comma-separated)", f, s)
	f, s = list(func(c *Config) *[]string { return &c.MPNIDs })
	add("mpn-id", "poll only subscriptions of these resellers (partner MPN ids)", f, s)
	f, s = str(func(c *Config) *string { return &c.LogFormat })
	add("log-format", "text or json", f, s)
	f, s = str(func(c *Config) *string { return &c.LogLevel })
	add("log-level", "debug, info, warn or error", f, s)
	f, s = str(func(c *Config) *string { return &c.Listen })
	add("listen", "address of the operations HTTP server (/healthz, /readyz, /metrics, /api/...); empty disables", f, s)
	f, s = list(func(c *Config) *[]string { return &c.AllowedHosts })
	add("allowed-hosts", "further Host names the operations server answers, e.g. a Kubernetes service name (loopback names and the --listen address always work; other names get 421)", f, s)
	f, s = list(func(c *Config) *[]string { return &c.NATSNotifierSubjects })
	add("nats-notifier-subjects", "subjects the notifier's identity may publish on, on the embedded NATS server (its nats channels); never pcwatch.>", f, s)
	f, s = str(func(c *Config) *string { return &c.Source })
	add("source", "CloudEvents source; default the Partner Center URL, plus /tenants/<id> when a tenant is configured", f, s)
	f, s = dur(func(c *Config) *time.Duration { return &c.DeadlineInterval })
	add("deadline-interval", "time between deadline evaluations", f, s)
	f, s = str(func(c *Config) *string { return &c.WebhookListen })
	add("webhook-listen", "address of the Partner Center webhook intake, e.g. :8443 behind your TLS-terminating proxy (empty: off; callbacks need a public URL)", f, s)
	f, s = str(func(c *Config) *string { return &c.WebhookPath })
	add("webhook-path", "path the webhook intake answers on", f, s)
	f, s = str(func(c *Config) *string { return &c.WebhookURL })
	add("webhook-url", "the public https URL Partner Center calls (watcher webhooks register registers it)", f, s)
	f, s = str(func(c *Config) *string { return &c.WebhookRoots })
	add("webhook-roots", "PEM file of the roots a callback's certificate must chain to (default: the system roots)", f, s)
	f, s = str(func(c *Config) *string { return &c.WebhookIntermediates })
	add("webhook-intermediates", "PEM file of issuing CAs for callback certificates served without their issuer", f, s)
	f, s = list(func(c *Config) *[]string { return &c.WebhookCertHosts })
	add("webhook-cert-hosts", "hosts a callback's X-MS-Certificate-Url may name (default: the documented Microsoft host)", f, s)
	f, s = list(func(c *Config) *[]string { return &c.WebhookCertNames })
	add("webhook-cert-names", "names a callback's certificate must be issued to (default: the documented Microsoft name)", f, s)
	f, s = durOrOff(func(c *Config) *time.Duration { return &c.AuditInterval })
	add("audit-interval", "time between reads of Partner Center's activity log, whose records trigger a refresh of the customer they name (about 2 requests a minute); 0 turns it off and changes wait for the sweep", f, s)
	f, s = str(func(c *Config) *string { return &c.Sweep })
	add("sweep", "spread: start each cycle's customers evenly over 80% of --interval, leaving room in the request budget for hinted refreshes; burst: all at once", f, s)
	f, s = durOrOff(func(c *Config) *time.Duration { return &c.MaxStaleness })
	add("max-staleness", "longest a customer may go without a sweep's listing: one about to exceed it is fetched ahead of everything else (0: 4 x --interval)", f, s)
	f, s = durOrOff(func(c *Config) *time.Duration { return &c.HotInterval })
	add("hot-interval", "list customers with a deadline within 24h, a renewal due or a recent change at least this often, and read each deadline alert's subscription again shortly before it fires; 0 turns it off", f, s)
	for _, r := range deadline.Rules() {
		if r.Option() != "" {
			f, s = thresholds(r)
			add(r.Option(), r.Usage(), f, s)
		}
	}
	f, s = boolean(func(c *Config) *bool { return &c.RenewalAllTerms })
	add("renewal-all-terms", "announce renewals of monthly terms too (default: a year or more)", f, s)
	f, s = boolean(func(c *Config) *bool { return &c.CreatedOnFirstSighting })
	add("created-on-first-sighting", "emit created/added events for a customer's first listing instead of a silent baseline", f, s)
	f, s = number(func(c *Config) *float64 { return &c.MassRemovalShare }, 0.01, 1)
	add("mass-removal-share", "hold removals when more than this share of a customer's subscriptions vanish at once (1 disables)", f, s)
	f, s = integer(func(c *Config) *int { return &c.HoldCycles }, 1, 1000)
	add("hold-cycles", "complete listings a held mass removal must persist before removals are emitted", f, s)
	f, s = integer(func(c *Config) *int { return &c.FailureThreshold }, 1, 1000)
	add("failure-threshold", "consecutive failed polls of a customer before ops.customer-poll-failed", f, s)
	f, s = integer(func(c *Config) *int { return &c.RefundFetchBudget }, -1, 1000000)
	add("refund-fetch-budget", "get-subscription-by-id calls per cycle to read per-seat refund windows (-1 disables)", f, s)
	f, s = dur(func(c *Config) *time.Duration { return &c.StreamMaxAge })
	add("stream-max-age", "how long PCWATCH_EVENTS keeps events", f, s)
	add("stream-max-bytes", "size cap of PCWATCH_EVENTS in bytes", func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("%q is not a byte count of at least 1048576", v)
		}
		c.StreamMaxBytes = n
		return nil
	}, func(c *Config) string { return strconv.FormatInt(c.StreamMaxBytes, 10) })
	f, s = integer(func(c *Config) *int { return &c.StreamReplicas }, 1, 5)
	add("stream-replicas", "replicas of PCWATCH_EVENTS (a NATS cluster)", f, s)
	f, s = str(func(c *Config) *string { return &c.Clock })
	add("clock", "clock spec (testing and the demo): start=RFC3339,epoch=RFC3339,speed=N", f, s)
	return o
}()

// ConfigError is a configuration problem; the watcher exits with status 2.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// ExitStatus is 2 (cli.StatusUsage): the watcher could not start.
func (e *ConfigError) ExitStatus() int { return cli.StatusUsage }

// ExitStatus is 2 (cli.StatusUsage): the watcher could not start. (The
// type is declared in run.go, with the start-up it is about.)
func (e *StartupError) ExitStatus() int { return cli.StatusUsage }

func cfgErr(format string, a ...any) error { return &ConfigError{Msg: fmt.Sprintf(format, a...)} }

// Load builds the configuration from args (after the subcommand), the
// environment (getenv) and the config file named by --config or
// PCWATCH_CONFIG. Errors are *ConfigError and name the flag, variable or
// file line at fault; -h is flag.ErrHelp. Load reads no credential (Run
// reads them from the environment), so it serves the commands that only
// read the state file too.
func Load(name string, args []string, getenv func(string) string) (Config, error) {
	return LoadWith(name, args, getenv, nil)
}

// LoadWith is Load for a command with flags of its own besides the
// watcher's: flags, when not nil, registers them on the flag set before
// args are parsed (`watcher deadlines --format json`); their names must
// not be the watcher's (the flag package panics on a second definition).
// The configuration is the one `watcher run` runs with, given the same
// arguments, environment and file: the read-only commands compute what
// the running watcher computes.
func LoadWith(name string, args []string, getenv func(string) string, flags func(*flag.FlagSet)) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("watcher "+name, flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	configPath := fs.String("config", getenv("PCWATCH_CONFIG"), "YAML config file (env PCWATCH_CONFIG)")
	if flags != nil {
		flags(fs)
	}
	natsFlags := natsconn.AddFlags(fs)
	flagVals := map[string]*string{}
	for _, o := range options {
		v := new(string)
		flagVals[o.name] = v
		help := fmt.Sprintf("%s (env %s, default %q)", o.usage, o.env(), o.show(&c))
		if slices.Contains(boolOptions, o.name) {
			fs.Var(boolFlag{v}, o.name, help) // may be given bare: --once
			continue
		}
		fs.StringVar(v, o.name, "", help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, cfgErr("%v (run 'watcher %s -h' for the flags)", err, name)
	}
	if fs.NArg() > 0 {
		return c, cfgErr("unexpected argument %q (run 'watcher %s -h' for the flags)", fs.Arg(0), name)
	}
	if *configPath != "" {
		if err := c.loadFile(*configPath); err != nil {
			return c, err
		}
	}
	for _, o := range options {
		if v := getenv(o.env()); v != "" {
			if err := o.set(&c, v); err != nil {
				return c, cfgErr("environment %s: %v", o.env(), err)
			}
		}
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		if ferr != nil || f.Name == "config" {
			return
		}
		for _, o := range options {
			if o.name == f.Name {
				if err := o.set(&c, *flagVals[o.name]); err != nil {
					ferr = cfgErr("flag --%s: %v", o.name, err)
				}
			}
		}
	})
	if ferr != nil {
		return c, ferr
	}
	c.NATS = natsFlags.Settings(getenv, c.NATS)
	return c, c.validate()
}

var boolOptions = []string{"once", "renewal-all-terms", "created-on-first-sighting"}

type boolFlag struct{ v *string }

func (b boolFlag) String() string {
	if b.v == nil {
		return ""
	}
	return *b.v
}
func (b boolFlag) Set(s string) error { *b.v = s; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }

// maxConfigFile bounds the config file read: it holds a few dozen settings.
const maxConfigFile = 1 << 20

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d KiB: not a pcwatch config file?", path, limit>>10)
	}
	return b, nil
}

// loadFile applies a YAML file of option keys. Unknown keys, keys set
// twice and a second YAML document are errors, as in the notifier's file.
func (c *Config) loadFile(path string) error {
	b, err := readLimited(path, maxConfigFile)
	if err != nil {
		return cfgErr("config file: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return cfgErr("config file %s: %v", path, err)
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		line := second.Line
		if err != nil {
			return cfgErr("config file %s: after the first document: %v", path, err)
		}
		return cfgErr("config file %s line %d: a second YAML document (after ---); put every setting in one mapping", path, line)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return cfgErr("config file %s line %d: want a mapping of settings (key: value)", path, m.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			return cfgErr("config file %s line %d: %s is set twice (first on line %d); keep one", path, k.Line, k.Value, first)
		}
		seen[k.Value] = k.Line
		var o *option
		for j := range options {
			if options[j].yaml() == k.Value {
				o = &options[j]
			}
		}
		// The NATS connection's settings are package natsconn's (nats_url).
		natsKey := strings.ReplaceAll(k.Value, "_", "-")
		if o == nil && !slices.Contains(natsconn.FlagNames(), natsKey) {
			return cfgErr("config file %s line %d: unknown key %q (keys are the flag names with '_' for '-', e.g. data_dir)", path, k.Line, k.Value)
		}
		val := v.Value
		if v.Kind == yaml.SequenceNode {
			var parts []string
			for _, it := range v.Content {
				parts = append(parts, it.Value)
			}
			val = strings.Join(parts, ",")
		} else if v.Kind != yaml.ScalarNode {
			return cfgErr("config file %s line %d: %s: want a value or a list", path, v.Line, k.Value)
		}
		if o == nil {
			c.NATS.Set(natsKey, val)
			continue
		}
		if err := o.set(c, val); err != nil {
			return cfgErr("config file %s line %d: %s: %v", path, v.Line, k.Value, err)
		}
	}
	return nil
}

func (c *Config) validate() error {
	u, err := url.Parse(c.PCURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return cfgErr("--pc-url %q: want an absolute https URL such as %s, or --cloud global|usgov|china", c.PCURL, pc.GlobalBaseURL)
	}
	if c.NATS.URL != "" {
		nu, err := url.Parse(c.NATS.URL)
		if err != nil || nu.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, nu.Scheme) {
			return cfgErr("--nats-url %q: want e.g. nats://host:4222 or tls://host:4222 (empty runs an embedded server)", c.NATS.URL)
		}
	}
	for _, r := range c.Resources {
		if _, ok := resource.ByOption(r); !ok {
			return cfgErr("--resources: unknown resource %q (want some of %s)", r, strings.Join(resource.Options(), ","))
		}
	}
	if len(c.Resources) == 0 {
		return cfgErr("--resources: nothing to poll (want some of %s)", strings.Join(resource.Options(), ","))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return cfgErr("--log-format %q: want text or json", c.LogFormat)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		return cfgErr("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return cfgErr("--listen %q: want host:port such as 127.0.0.1:9464 (empty disables)", c.Listen)
		}
	}
	for _, h := range c.AllowedHosts {
		if _, err := opsguard.CheckHost(h); err != nil {
			return cfgErr("--allowed-hosts: %v", err)
		}
	}
	if err := natsembed.CheckNotifierSubjects(c.NATSNotifierSubjects); err != nil {
		return cfgErr("--nats-notifier-subjects: %v", err)
	}
	if c.DataDir == "" {
		return cfgErr("--data-dir is empty")
	}
	if c.WebhookListen != "" {
		if _, _, err := net.SplitHostPort(c.WebhookListen); err != nil {
			return cfgErr("--webhook-listen %q: want host:port such as :8443 (empty turns the intake off)", c.WebhookListen)
		}
		if !strings.HasPrefix(c.WebhookPath, "/") {
			return cfgErr("--webhook-path %q: want a path such as /webhooks/partner-center", c.WebhookPath)
		}
	}
	if c.AuditInterval < 0 || (c.AuditInterval > 0 && c.AuditInterval < 5*time.Second) {
		return cfgErr("--audit-interval %v: want at least 5s (each read costs a request or two), or 0 to turn the activity-log tail off", c.AuditInterval)
	}
	if c.Sweep != "spread" && c.Sweep != "burst" {
		return cfgErr("--sweep %q: want spread or burst", c.Sweep)
	}
	if c.MaxStaleness < 0 || (c.MaxStaleness > 0 && c.MaxStaleness < c.Interval) {
		return cfgErr("--max-staleness %v: want at least --interval (%v), since a sweep lists each customer once per interval; or 0 for 4 x --interval", c.MaxStaleness, c.Interval)
	}
	if c.HotInterval < 0 || (c.HotInterval > 0 && c.HotInterval < 30*time.Second) {
		return cfgErr("--hot-interval %v: want at least 30s (each hot customer costs a listing per interval), or 0 to turn the hot refresher off", c.HotInterval)
	}
	return nil
}

// EffectiveMaxStaleness is --max-staleness, or 4 x --interval when it is 0.
func (c Config) EffectiveMaxStaleness() time.Duration {
	if c.MaxStaleness > 0 {
		return c.MaxStaleness
	}
	return 4 * c.Interval
}

// Spread is how long a cycle's customers are spread over: 80% of the
// interval with --sweep spread (the rest absorbs the jitter and a slow
// listing), none with --sweep burst or --once.
func (c Config) Spread() time.Duration {
	if c.Sweep != "spread" || c.Once {
		return 0
	}
	return c.Interval * 4 / 5
}

// DeadlineConfig returns the deadline evaluator's configuration for the
// clock of --clock (see DeadlineConfigAt).
func (c Config) DeadlineConfig() deadline.Config {
	rate := 1.0
	if clk, err := clock.Parse(c.Clock); err == nil {
		rate = clock.Rate(clk)
	}
	return c.DeadlineConfigAt(rate)
}

// DeadlineConfigAt returns the deadline evaluator's configuration on a
// clock running rate times as fast as the wall (clock.Rate): the
// thresholds; the grace (LateAfter), twice the evaluation interval
// (at least 5 minutes); and the sighting lag, one poll interval with its
// 10% jitter plus the grace. The intervals are wall time, the deadlines'
// instants the clock's: on an accelerated calendar (the demo) the
// intervals are scaled by rate, or a deadline evaluated every simulated
// hour would always look late.
func (c Config) DeadlineConfigAt(rate float64) deadline.Config {
	grace := max(5*time.Minute, clock.Scale(2*c.DeadlineInterval, rate))
	lag := clock.Scale(c.Interval+c.Interval/10, rate) + grace
	return deadline.Config{Thresholds: c.Thresholds, RenewalAllTerms: c.RenewalAllTerms, LateAfter: grace, SightingLag: lag}
}

// Kinds returns the kinds --resources enables, in polling order.
func (c Config) Kinds() []*resource.Kind {
	var out []*resource.Kind
	for _, k := range resource.All() {
		if slices.ContainsFunc(c.Resources, func(r string) bool { return strings.EqualFold(r, k.Option()) }) {
			out = append(out, k)
		}
	}
	return out
}

// defaultResources are the --resources of the kinds polled by default.
func defaultResources() []string {
	var out []string
	for _, k := range resource.All() {
		if k.DefaultOn() {
			out = append(out, k.Option())
		}
	}
	return out
}

// Usage returns the flag reference (for -h), the NATS connection's
// included (natsconn.Usage, the notifier's too).
func Usage() string {
	c := Default()
	var b strings.Builder
	for _, o := range options {
		fmt.Fprintf(&b, "  --%s\t%s\n    \tenv %s, file key %s, default %q\n", o.name, o.usage, o.env(), o.yaml(), o.show(&c))
	}
	b.WriteString("\n" + natsconn.Usage())
	fmt.Fprintf(&b, "  The watcher also reads the NATS flags as config-file keys (%s); without a URL it runs an embedded server.\n", natsFileKeys())
	return b.String()
}

// natsFileKeys lists the config-file keys of the NATS connection settings.
func natsFileKeys() string {
	var keys []string
	for _, f := range natsconn.FlagNames() {
		keys = append(keys, strings.ReplaceAll(f, "-", "_"))
	}
	return strings.Join(keys, ", ")
}

// MarkdownReference renders the option table for the README.
func MarkdownReference() string {
	c := Default()
	var b strings.Builder
	b.WriteString("| Flag | Environment | Config file key | Default | Meaning |\n|---|---|---|---|---|\n")
	b.WriteString("| `--config` | `PCWATCH_CONFIG` | | | YAML file of the keys below |\n")
	for _, o := range options {
		if o.name == "nats-port" {
			// The connection's settings are the notifier's too: one row
			// here, their reference once in the README's NATS section.
			var flags, envs []string
			for _, f := range natsconn.FlagNames() {
				flags = append(flags, "`--"+f+"`")
				envs = append(envs, "`"+option{name: f}.env()+"`")
			}
			fmt.Fprintf(&b, "| %s | %s | `%s` | | NATS server to publish to, and how to connect (TLS, credentials): see [NATS connection](#nats-connection); no URL runs an embedded server |\n",
				strings.Join(flags, ", "), strings.Join(envs, ", "), strings.ReplaceAll(natsFileKeys(), ", ", "`, `"))
		}
		def := o.show(&c)
		if def == "" {
			def = " "
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | `%s` | %s | %s |\n", o.name, o.env(), o.yaml(), def, strings.ReplaceAll(o.usage, "|", "\\|"))
	}
	return b.String()
}
