package notify

import (
	"encoding/json"
	secretpkg "github.com/pcwatch/pcwatch/internal/secret"
	"sync"
	"sync/atomic"

	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/opsguard"
)

// Configuration defaults.
const (
	DefaultListen        = "127.0.0.1:9465"
	DefaultMaxAttempts   = 8
	DefaultAckWait       = 2 * time.Minute
	DefaultMaxAckPending = 32
	DefaultDedupeTTL     = 7 * 24 * time.Hour
	DefaultRetryInitial  = 5 * time.Second
	DefaultRetryMax      = 10 * time.Minute
	DefaultConcurrency   = 4
	DefaultSilenceLead   = 24 * time.Hour
	DefaultHTTPTimeout   = 10 * time.Second
	DefaultSMTPTimeout   = 30 * time.Second
	DefaultEmailSubject  = "[pcwatch] {{.Title}}"
	DefaultEmailBody     = `{{.Text}}
{{- if .Group}}
{{range .Group}}
- {{.Title}}{{if .Product}}
  {{.Product}}{{end}}{{if .Detail}}
  {{.Detail}}{{end}}{{end}}{{end}}
{{range .Facts}}
{{.Name}}: {{.Value}}{{end}}
{{- if .Changes}}

Changes:{{range .Changes}}
  {{.Field}}: {{.Old}} -> {{.New}}{{end}}{{if .MoreChanges}}
  ... and {{.MoreChanges}} more{{end}}{{end}}

-- 
{{.Footer}}
`
)

// Channel kinds.
const (
	KindWebhook = "webhook"
	KindSlack   = "slack"
	KindTeams   = "teams"
	KindEmail   = "email"
	KindNATS    = "nats"
)

var kinds = []string{KindWebhook, KindSlack, KindTeams, KindEmail, KindNATS}

// Config is the notifier configuration file. Load it with LoadConfig or
// ParseConfig, which validate it and resolve secrets; a Config built by hand
// is not usable by Run.
type Config struct {
	Channels  map[string]*Channel     `yaml:"channels"`
	Routes    []Route                 `yaml:"routes"`
	Default   *DefaultRoute           `yaml:"default"`
	Silences  []Silence               `yaml:"silences"`
	Templates map[string]TemplateText `yaml:"templates"`
	Delivery  Delivery                `yaml:"delivery"`
	Listen    string                  `yaml:"listen"`
	// AllowedHosts are names besides loopback and the listen address that
	// clients may send as Host to the health and metrics endpoint (e.g. a
	// Kubernetes service name, when listen is a wildcard address).
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Accept restricts which events are delivered at all.
	Accept Accept `yaml:"accept"`
	// Alerts tunes how silences, reminders and resolutions treat open
	// deadline warnings.
	Alerts Alerts `yaml:"alerts"`
	// Digests are scheduled summaries of the watcher's open deadlines
	// (digest_config.go).
	Digests []Digest `yaml:"digests"`

	file      string
	names     []string           // channel names, sorted
	tmplOrder []string           // template globs in file order
	overrides []compiledOverride // in file order
	redOnce   sync.Once
	red       *secretpkg.Redactor
	routes    []compiledRoute
	deflt     []string
	silences  []compiledSilence
	// runtime are the silences of SilencesBucket, replaced as a whole by
	// the notifier's silence poller.
	runtime  atomic.Pointer[[]compiledSilence]
	warnings []string
	digests  []*compiledDigest
}

// Alerts tunes open deadline warnings.
type Alerts struct {
	// SilenceLead is how long before its deadline a warning muted by a
	// silence that lasts past the deadline is sent anyway (default 24h):
	// no silence makes a deadline warning arrive after the deadline.
	SilenceLead Duration `yaml:"silence_lead"`
}

// Accept restricts the events the notifier delivers. Events whose type is
// not in pcwatch's catalog are always dead-lettered (reason unknown_type).
type Accept struct {
	// Sources are globs (path.Match: * does not cross '/') on the
	// CloudEvents source, e.g.
	// "https://api.partnercenter.microsoft.com/tenants/*". When set, events
	// from other sources are dead-lettered (reason foreign_source). Empty:
	// every source.
	Sources []string `yaml:"sources"`
}

// Channel is one delivery target. Which fields apply depends on Kind; a
// field of another kind is a configuration error.
type Channel struct {
	Kind string `yaml:"kind"`

	// webhook, slack, teams: the target URL. It is a secret (Slack and
	// Teams URLs carry their token), so it may come from the environment or
	// a file; exactly one of the three is required.
	URL     string `yaml:"url"`
	URLEnv  string `yaml:"url_env"`
	URLFile string `yaml:"url_file"`

	// webhook: the Standard Webhooks signing secret ("whsec_<base64>" or
	// raw bytes); optional, at most one of the three.
	Secret     string            `yaml:"secret"`
	SecretEnv  string            `yaml:"secret_env"`
	SecretFile string            `yaml:"secret_file"`
	Headers    map[string]string `yaml:"headers"`

	// Timeout bounds one send; default 10s (30s for email). It must be
	// shorter than delivery.ack_wait.
	Timeout Duration `yaml:"timeout"`

	// email.
	SMTP *SMTP    `yaml:"smtp"`
	From string   `yaml:"from"`
	To   []string `yaml:"to"`
	Body string   `yaml:"body"`

	// email: the mail subject template; nats: the subject template to
	// publish on, e.g. "workflows.pcwatch.{{.Type}}".
	Subject string `yaml:"subject"`
	// nats: publish through JetStream and wait for its acknowledgement
	// (the subject must belong to a stream) instead of a core publish.
	JetStream bool `yaml:"jetstream"`

	name        string
	url         secret
	secret      secret
	password    secret
	rootCAs     *x509.CertPool
	subjectTmpl *template.Template
	bodyTmpl    *template.Template
}

// SMTP says how an email channel reaches its mail server.
type SMTP struct {
	Host string `yaml:"host"`
	// Port defaults to 587 for starttls, 465 for tls and 25 for none.
	Port int `yaml:"port"`
	// TLS is starttls (default; the server must offer it), tls (implicit
	// TLS) or none (plain text; AUTH then only works to localhost).
	TLS          string `yaml:"tls"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	// CAFile is a PEM bundle trusted instead of the system roots (a relay
	// with a private CA).
	CAFile string `yaml:"ca_file"`
}

// Route sends the events it matches to its channels. Routes are tried in
// order; the first that matches ends the walk unless it says Continue.
type Route struct {
	Name     string   `yaml:"name"`
	Match    Match    `yaml:"match"`
	Channels []string `yaml:"channels"`
	Continue bool     `yaml:"continue"`
	// Drop ends the walk for what the route matches and sends it nowhere
	// (not even to the default route); it takes no channels.
	Drop bool `yaml:"drop"`
	// RepeatInterval sends a deadline warning again this often while its
	// deadline is open and nobody acted (a reminder); 0: once.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// SendResolved (default true) sends a "resolved" notice when the user
	// acts on a warning this route sent (seats reduced, auto-renew off,
	// subscription cancelled or suspended) or its deadline passes.
	SendResolved *bool `yaml:"send_resolved"`
	// GroupBy turns the events this route sends into one message per group
	// (customer, type, route, partner, offer): the first event of a group
	// waits GroupWait (default 30s) for others, later ones GroupInterval
	// (default 5m) after the group's last message.
	GroupBy       []string `yaml:"group_by"`
	GroupWait     Duration `yaml:"group_wait"`
	GroupInterval Duration `yaml:"group_interval"`
}

// DefaultRoute receives the events no route matched.
type DefaultRoute struct {
	Channels []string `yaml:"channels"`
}

// Match selects events. Its conditions are ANDed, the values of one
// condition ORed; an empty Match matches every event. A condition on a field
// an event does not carry (an offer for a customer event, a quantity delta
// for a status change) does not match it.
type Match struct {
	// Types are globs (path.Match syntax) on the event type without its
	// "io.pcwatch." prefix, e.g. "subscription.*-window-closing".
	Types []string `yaml:"types" json:"types,omitempty"`
	// Customers are customer ids (data.customerId).
	Customers []string `yaml:"customers" json:"customers,omitempty"`
	// Offers are globs on the subscription's offer name (after or before).
	Offers []string `yaml:"offers" json:"offers,omitempty"`
	// PartnerIDs are reseller MPN ids (the subscription's partnerId).
	PartnerIDs []string `yaml:"partner_ids" json:"partnerIds,omitempty"`
	// MinQuantityDelta matches quantity changes with |delta| >= N.
	MinQuantityDelta int `yaml:"min_quantity_delta" json:"minQuantityDelta,omitempty"`
	// RemainingUnder matches deadline events with less time left than
	// this (remainingSeconds, or the deadline minus the event time).
	RemainingUnder Duration `yaml:"remaining_under" json:"remainingUnder,omitempty"`
	// Changed matches on the field-level changes an event carries
	// (data.changes[].path, JSON Pointers such as /billingCycleEndDate).
	Changed *ChangedMatch `yaml:"changed" json:"changed,omitempty"`
}

// ChangedMatch selects events by the fields they change. Each entry is a
// glob (path.Match syntax, so * stops at a /) on a JSON Pointer, and also
// matches everything below what it names: /scheduledNextTermInstructions
// covers /scheduledNextTermInstructions/product/id. Changes matching
// Exclude are set aside; the condition holds when a change is left and,
// if Include is given, one of those left matches it. An event without
// field-level changes (a deadline, a status change) does not match.
type ChangedMatch struct {
	Include []string `yaml:"include" json:"include,omitempty"`
	Exclude []string `yaml:"exclude" json:"exclude,omitempty"`
}

// Silence mutes the events it matches on every channel until Until.
type Silence struct {
	Match   Match     `yaml:"match"`
	Until   time.Time `yaml:"until"`
	Comment string    `yaml:"comment"`
}

// TemplateText overrides the title and/or text of the event types its key
// (a type glob) matches. An empty field keeps the default.
type TemplateText struct {
	Title string `yaml:"title"`
	Text  string `yaml:"text"`
}

// Delivery tunes the JetStream consumers, retries and deduplication.
type Delivery struct {
	// MaxAttempts bounds the deliveries of one event to one channel; the
	// last failure sends the event to the dead-letter queue. Default 8.
	MaxAttempts int `yaml:"max_attempts"`
	// AckWait is how long JetStream waits for an answer before it
	// redelivers; sends longer than a few seconds extend it. Default 2m.
	AckWait Duration `yaml:"ack_wait"`
	// MaxAckPending bounds the unacknowledged events per channel. Default 16.
	MaxAckPending int `yaml:"max_ack_pending"`
	// DedupeTTL is how long deliveries are remembered. Default 168h.
	DedupeTTL Duration `yaml:"dedupe_ttl"`
	// RetryInitial and RetryMax shape the exponential backoff between
	// attempts when the receiver sends no Retry-After. Defaults 5s, 10m.
	RetryInitial Duration `yaml:"retry_initial"`
	RetryMax     Duration `yaml:"retry_max"`
	// Concurrency is the sends in flight per channel. Events of one entity
	// always go through the same sender, in order. Default 4.
	Concurrency int `yaml:"concurrency"`
	// Start is where a channel's consumer starts when it is created (a
	// new channel, or a consumer deleted by hand): "new" (events published
	// from then on), "all" (the whole stream) or a lookback such as 24h
	// (events published that long before). Default 24h, so that alerts
	// published before a channel's first start (the watcher started
	// first) are not lost; of that backlog, deadline warnings whose
	// deadline has already passed are skipped. An existing consumer
	// resumes where it left off, whatever Start says.
	Start string `yaml:"start"`

	lookback time.Duration // Start as a duration; 0 with "new", -1 with "all"
}

// DefaultStart is delivery.start's default.
const DefaultStart = "24h"

// Duration is a time.Duration written as "90s", "2m", "24h" or "7d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		msg := "want a duration such as 90s, 2m, 24h or 7d"
		if err != nil {
			msg = err.Error() + "; " + msg
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: bad duration %q: %s", n.Line, n.Value, msg)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as Go formats it.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as a string Go formats ("24h0m0s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("90s", "24h", "7d").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("bad duration %s: want a string such as 90s, 24h or 7d", b)
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// parseDuration is time.ParseDuration plus a leading "<N>d" for days.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("time: invalid duration %q", s)
		}
		d := time.Duration(n) * 24 * time.Hour
		if rest == "" {
			return d, nil
		}
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("time: invalid duration %q", s)
		}
		return d + r, nil
	}
	return time.ParseDuration(s)
}

// secret holds a credential behind a pointer so that printing a Channel
// with %+v shows an address, never the value.
type secret struct{ p *string }

func newSecret(s string) secret { return secret{p: &s} }

func (s secret) value() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

func (s secret) set() bool { return s.p != nil && *s.p != "" }

// Redactor returns a redactor for every secret of the configuration
// (channel URLs, signing secrets, SMTP passwords), to put in front of
// everything the notifier writes: logs, dead-letter errors, the errors its
// commands print. A peer may echo a secret back (an SMTP server repeating
// AUTH, a webhook endpoint repeating its URL) in any encoding.
// The same Redactor is returned each time; secrets added to it (NATS
// credentials) apply everywhere.
func (c *Config) Redactor() *secretpkg.Redactor { return c.redactor() }

func (c *Config) redactor() *secretpkg.Redactor {
	c.redOnce.Do(func() {
		c.red = secretpkg.New()
		for _, ch := range c.Channels {
			c.red.Add(ch.url.value(), ch.secret.value(), ch.password.value())
		}
	})
	return c.red
}

// String never reveals the value.
func (s secret) String() string {
	if !s.set() {
		return ""
	}
	return "[redacted]"
}

// ConfigError is a configuration problem: the key path it is about (e.g.
// "routes[1].match.types[0]"), the YAML line when known, and what is wrong
// and how to fix it.
type ConfigError struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ParseOptions are the outside world a configuration is resolved against.
// The zero value uses the process environment, the file system and the wall
// clock.
type ParseOptions struct {
	// File names the configuration in error messages and resolves relative
	// secret and CA file paths.
	File string
	// LookupEnv reads secrets named by *_env keys; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// ReadFile reads secrets named by *_file keys; default os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Now decides which silences have expired (for warnings only); default
	// time.Now.
	Now func() time.Time
}

// LoadConfig reads, validates and resolves the configuration file named
// file. Every problem is a *ConfigError.
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &ConfigError{File: file, Msg: fmt.Sprintf("cannot read the configuration: %v", errors.Unwrap(err))}
	}
	return ParseConfig(b, ParseOptions{File: file})
}

// ParseConfig decodes YAML (unknown keys are errors), applies defaults,
// resolves secrets and validates everything: channel kinds and settings,
// routes to existing channels, globs, durations, templates (parsed and
// rendered against a sample of every event type they apply to). The first
// problem is returned as a *ConfigError.
func ParseConfig(b []byte, o ParseOptions) (*Config, error) {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, yamlError(o.File, err, nil)
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null" {
		return nil, &ConfigError{File: o.File, Msg: "the configuration is empty: define at least one channel and a route (see deploy/notifier.example.yaml)"}
	}
	w := &walker{lines: map[string]int{}, keys: map[string][]string{}}
	if err := w.walk(root.Content[0], configType, ""); err != nil {
		err.File = o.File
		return nil, err
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, yamlError(o.File, err, w)
	}
	cfg.file = o.File
	cfg.tmplOrder = w.keys["templates"]
	v := &validator{cfg: cfg, o: o, w: w}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlError turns a yaml error into a *ConfigError with the key path of the
// offending node when the walker knows it.
func yamlError(file string, err error, w *walker) *ConfigError {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	ce := &ConfigError{File: file, Msg: msg}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		ce.Line, _ = strconv.Atoi(m[1])
		ce.Msg = m[2]
		if w != nil {
			ce.Path = w.pathAt(ce.Line, ce.Msg)
		}
	}
	return ce
}

// Summary is what `notifier check` prints: "N channels, M routes".
func (c *Config) Summary() string {
	return fmt.Sprintf("%d %s, %d %s", len(c.Channels), plural(len(c.Channels), "channel", "channels"),
		len(c.Routes), plural(len(c.Routes), "route", "routes"))
}

// Warnings are problems that do not stop the notifier: secrets written
// inline in the file, unused channels, expired silences.
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// ChannelNames returns the channel names, sorted.
func (c *Config) ChannelNames() []string { return slices.Clone(c.names) }

// ListenAddr is the configured health and metrics address.
func (c *Config) ListenAddr() string {
	if c.Listen == "" {
		return DefaultListen
	}
	return c.Listen
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// validator checks a decoded Config and fills its compiled fields.
type validator struct {
	cfg *Config
	o   ParseOptions
	w   *walker
}

func (v *validator) errf(p, format string, args ...any) *ConfigError {
	line := v.w.lines[p]
	if line == 0 {
		// The parent's line for a missing key.
		for q := p; q != "" && line == 0; {
			i := strings.LastIndexAny(q, ".[")
			if i < 0 {
				break
			}
			q = q[:i]
			line = v.w.lines[q]
		}
	}
	return &ConfigError{File: v.o.File, Line: line, Path: p, Msg: fmt.Sprintf(format, args...)}
}

var channelNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// allowedKeys lists the settings of each kind (beyond kind and timeout).
var allowedKeys = map[string][]string{
	KindWebhook: {"url", "url_env", "url_file", "secret", "secret_env", "secret_file", "headers"},
	KindSlack:   {"url", "url_env", "url_file"},
	KindTeams:   {"url", "url_env", "url_file"},
	KindEmail:   {"smtp", "from", "to", "subject", "body"},
	KindNATS:    {"subject", "jetstream"},
}

func (v *validator) validate() error {
	c := v.cfg
	d := &c.Delivery
	if d.MaxAttempts == 0 {
		d.MaxAttempts = DefaultMaxAttempts
	}
	if d.AckWait == 0 {
		d.AckWait = Duration(DefaultAckWait)
	}
	if d.MaxAckPending == 0 {
		d.MaxAckPending = DefaultMaxAckPending
	}
	if d.DedupeTTL == 0 {
		d.DedupeTTL = Duration(DefaultDedupeTTL)
	}
	if d.RetryInitial == 0 {
		d.RetryInitial = Duration(DefaultRetryInitial)
	}
	if d.RetryMax == 0 {
		d.RetryMax = Duration(DefaultRetryMax)
	}
	if d.Concurrency == 0 {
		d.Concurrency = min(DefaultConcurrency, d.MaxAckPending)
	}
	if d.Start == "" {
		d.Start = DefaultStart
	}
	switch d.Start {
	case "new":
		d.lookback = 0
	case "all":
		d.lookback = -1
	default:
		lb, err := parseDuration(d.Start)
		if err != nil || lb <= 0 {
			return v.errf("delivery.start", "want new, all or a lookback such as 24h or 7d, got %q", d.Start)
		}
		d.lookback = lb
	}
	switch {
	case d.MaxAttempts < 1:
		return v.errf("delivery.max_attempts", "must be at least 1, got %d", d.MaxAttempts)
	case d.AckWait < 0:
		return v.errf("delivery.ack_wait", "must be positive")
	case d.AckWait.D() > d.DedupeTTL.D()/4:
		return v.errf("delivery.ack_wait", "must be at most a quarter of delivery.dedupe_ttl %s (how long a send in flight is remembered), got %s", d.DedupeTTL.D(), d.AckWait.D())
	case d.MaxAckPending < 1:
		return v.errf("delivery.max_ack_pending", "must be at least 1, got %d", d.MaxAckPending)
	case d.DedupeTTL.D() < time.Minute:
		return v.errf("delivery.dedupe_ttl", "must be at least 1m (deliveries are remembered this long), got %s", d.DedupeTTL.D())
	case d.RetryInitial < 0 || d.RetryMax < 0:
		return v.errf("delivery.retry_initial", "retry_initial and retry_max must be positive")
	case d.RetryMax < d.RetryInitial:
		return v.errf("delivery.retry_max", "%s is shorter than retry_initial %s", d.RetryMax.D(), d.RetryInitial.D())
	case d.Concurrency < 1 || d.Concurrency > d.MaxAckPending:
		return v.errf("delivery.concurrency", "must be between 1 and max_ack_pending (%d), got %d", d.MaxAckPending, d.Concurrency)
	}

	if c.Alerts.SilenceLead == 0 {
		c.Alerts.SilenceLead = Duration(DefaultSilenceLead)
	}
	if c.Alerts.SilenceLead.D() < time.Minute {
		return v.errf("alerts.silence_lead", "must be at least 1m (how long before its deadline a silenced warning is sent anyway), got %s", c.Alerts.SilenceLead.D())
	}

	for i, g := range c.Accept.Sources {
		p := fmt.Sprintf("accept.sources[%d]", i)
		if strings.TrimSpace(g) == "" {
			return v.errf(p, "empty: write a source or a glob, e.g. https://api.partnercenter.microsoft.com/tenants/*")
		}
		if _, err := path.Match(g, ""); err != nil {
			return v.errf(p, "bad glob %q: %v", g, err)
		}
	}
	for i, h := range c.AllowedHosts {
		if _, err := opsguard.CheckHost(h); err != nil {
			return v.errf(fmt.Sprintf("allowed_hosts[%d]", i), "%v", err)
		}
	}

	if len(c.Channels) == 0 {
		return v.errf("channels", "no channels defined: add at least one (see deploy/notifier.example.yaml)")
	}
	for name := range c.Channels {
		c.names = append(c.names, name)
	}
	sort.Strings(c.names)
	for _, name := range c.names {
		if err := v.channel(name, c.Channels[name]); err != nil {
			return err
		}
	}

	used := map[string]bool{}
	checkChannels := func(p string, names []string) error {
		if len(names) == 0 {
			return v.errf(p, "no channels: name at least one of %s", strings.Join(c.names, ", "))
		}
		for i, n := range names {
			if _, ok := c.Channels[n]; !ok {
				return v.errf(fmt.Sprintf("%s[%d]", p, i), "no channel named %q (defined: %s)", n, strings.Join(c.names, ", "))
			}
			used[n] = true
		}
		return nil
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		m, err := v.match(p+".match", r.Match)
		if err != nil {
			return err
		}
		if r.Drop {
			if len(r.Channels) > 0 || r.Continue {
				return v.errf(p, "drop: true sends what the route matches nowhere: remove its channels and continue, or drop")
			}
			if m.empty() {
				return v.errf(p+".match", "empty: a drop route needs at least one condition (it would drop every event)")
			}
		} else if err := checkChannels(p+".channels", r.Channels); err != nil {
			return err
		}
		name := r.Name
		if name == "" {
			name = p
		}
		if r.RepeatInterval < 0 || (r.RepeatInterval > 0 && r.RepeatInterval.D() < time.Minute) {
			return v.errf(p+".repeat_interval", "must be at least 1m (or 0: no reminders), got %s", r.RepeatInterval.D())
		}
		if r.Drop && (r.RepeatInterval != 0 || r.SendResolved != nil) {
			return v.errf(p, "a drop route sends nothing: repeat_interval and send_resolved do not apply")
		}
		cr := compiledRoute{name: name, m: m, channels: r.Channels, cont: r.Continue, drop: r.Drop,
			repeat: r.RepeatInterval.D(), sendResolved: r.SendResolved == nil || *r.SendResolved}
		if err := v.grouping(p, r, &cr); err != nil {
			return err
		}
		if cr.repeat > 0 && !routeMayOpenAlerts(cr) {
			return v.errf(p+".repeat_interval", "the route matches no deadline warning (%s): reminders repeat those only", strings.Join(warningTypeNames(), ", "))
		}
		c.routes = append(c.routes, cr)
	}
	if c.Default != nil {
		if err := checkChannels("default.channels", c.Default.Channels); err != nil {
			return err
		}
		c.deflt = c.Default.Channels
	}
	if len(c.Routes) == 0 && c.Default == nil {
		return v.errf("routes", "no routes and no default route: nothing would be delivered; add a route or `default: {channels: [...]}`")
	}
	if err := v.digests(used); err != nil {
		return err
	}
	for _, n := range c.names {
		if !used[n] {
			c.warnings = append(c.warnings, fmt.Sprintf("channel %q is not used by any route", n))
		}
	}

	now := v.o.Now()
	for i, s := range c.Silences {
		p := fmt.Sprintf("silences[%d]", i)
		m, err := v.match(p+".match", s.Match)
		if err != nil {
			return err
		}
		if m.empty() {
			return v.errf(p+".match", "empty: a silence needs at least one condition (it would mute everything)")
		}
		if s.Until.IsZero() {
			return v.errf(p+".until", "missing: say until when the silence holds, e.g. until: 2026-12-31T00:00:00Z")
		}
		if !s.Until.After(now) {
			c.warnings = append(c.warnings, fmt.Sprintf("%s expired at %s", p, s.Until.UTC().Format(time.RFC3339)))
		}
		c.silences = append(c.silences, compiledSilence{m: m, until: s.Until, comment: s.Comment})
	}

	for _, glob := range c.tmplOrder {
		t := c.Templates[glob]
		p := keyPath("templates", glob)
		g := strings.TrimPrefix(glob, events.TypePrefix)
		types, err := v.typeGlob(p, g)
		if err != nil {
			return err
		}
		ov := compiledOverride{glob: g}
		if t.Title != "" {
			if ov.title, err = parseTemplate(glob+".title", t.Title); err != nil {
				return v.errf(p+".title", "%v", err)
			}
		}
		if t.Text != "" {
			if ov.text, err = parseTemplate(glob+".text", t.Text); err != nil {
				return v.errf(p+".text", "%v", err)
			}
		}
		if ov.title == nil && ov.text == nil {
			return v.errf(p, "empty: set title and/or text")
		}
		c.overrides = append(c.overrides, ov)
		// Render every type the override applies to, so that a template
		// error shows up now rather than on the first real event.
		for _, in := range types {
			if _, err := c.renderWith(in.Type, []compiledOverride{ov}); err != nil {
				return v.errf(p, "%v", err)
			}
		}
	}
	for _, name := range c.names {
		ch := c.Channels[name]
		if ch.Kind != KindEmail && ch.Kind != KindNATS {
			continue
		}
		// Channel templates see the rendered message; check them against
		// every catalog type.
		for _, in := range events.Catalog() {
			msg, err := c.render(in.Type)
			if err != nil {
				return v.errf("templates", "%v", err)
			}
			if _, err := ch.execSubject(msg); err != nil {
				return v.errf(keyPath("channels", name)+".subject", "%v", err)
			}
			if ch.bodyTmpl != nil {
				if _, err := execTemplate(ch.bodyTmpl, msg); err != nil {
					return v.errf(keyPath("channels", name)+".body", "%v", err)
				}
			}
		}
	}
	return nil
}

// render renders the sample event of type t with the configured templates.
func (c *Config) render(t events.Type) (*TemplateData, error) {
	return c.renderWith(t, c.overrides)
}

func (c *Config) renderWith(t events.Type, ov []compiledOverride) (*TemplateData, error) {
	ev, err := SampleEvent(t, sampleTime)
	if err != nil {
		return nil, err
	}
	d, err := ev.DecodeData()
	if err != nil {
		return nil, err
	}
	return renderMessage(ev, d, ov, "check")
}

func (v *validator) channel(name string, ch *Channel) error {
	p := keyPath("channels", name)
	if !channelNameRE.MatchString(name) {
		return v.errf(p, "bad channel name %q: use letters, digits, '-' and '_' (at most 64; it names a JetStream consumer and a DLQ subject)", name)
	}
	if ch == nil {
		return v.errf(p, "empty: set kind (one of %s) and its settings", strings.Join(kinds, ", "))
	}
	ch.name = name
	if ch.Kind == "" {
		return v.errf(p+".kind", "missing: set one of %s", strings.Join(kinds, ", "))
	}
	allowed, ok := allowedKeys[ch.Kind]
	if !ok {
		hint := ""
		if c := closest(ch.Kind, kinds); c != "" {
			hint = fmt.Sprintf("did you mean %s? ", c)
		}
		return v.errf(p+".kind", "unknown channel kind %q (%swant one of %s)", ch.Kind, hint, strings.Join(kinds, ", "))
	}
	for _, k := range v.w.keys[p] {
		if k != "kind" && k != "timeout" && !slices.Contains(allowed, k) {
			return v.errf(p+"."+k, "not a setting of a %s channel (its settings: kind, timeout, %s)", ch.Kind, strings.Join(allowed, ", "))
		}
	}
	if ch.Timeout < 0 {
		return v.errf(p+".timeout", "must be positive")
	}
	if ch.Timeout == 0 {
		ch.Timeout = Duration(DefaultHTTPTimeout)
		if ch.Kind == KindEmail {
			ch.Timeout = Duration(DefaultSMTPTimeout)
		}
	}
	if ack := v.cfg.Delivery.AckWait; ch.Timeout >= ack {
		return v.errf(p+".timeout", "%s is not shorter than delivery.ack_wait %s: JetStream would redeliver while a send is still running; lower the timeout or raise ack_wait", ch.Timeout.D(), ack.D())
	}
	switch ch.Kind {
	case KindWebhook, KindSlack, KindTeams:
		u, err := v.secret(p, "url", ch.URL, ch.URLEnv, ch.URLFile, true)
		if err != nil {
			return err
		}
		if err := checkURL(u.value()); err != nil {
			// Never echo the URL: it may hold a token.
			return v.errf(v.secretKey(p, "url", ch.URL, ch.URLEnv), "%v", err)
		}
		ch.url = u
		if ch.Kind != KindWebhook {
			return nil
		}
		if ch.secret, err = v.secret(p, "secret", ch.Secret, ch.SecretEnv, ch.SecretFile, false); err != nil {
			return err
		}
		if ch.secret.set() {
			if _, err := signingKey(ch.secret.value()); err != nil {
				return v.errf(v.secretKey(p, "secret", ch.Secret, ch.SecretEnv), "%v", err)
			}
		}
		for h := range ch.Headers {
			if err := checkHeaderName(h); err != nil {
				return v.errf(p+".headers."+h, "%v", err)
			}
			if strings.ContainsAny(ch.Headers[h], "\r\n") {
				return v.errf(p+".headers."+h, "header values cannot contain line breaks")
			}
		}
	case KindEmail:
		return v.email(p, ch)
	case KindNATS:
		if ch.Subject == "" {
			return v.errf(p+".subject", "missing: the subject to publish on, e.g. workflows.pcwatch.{{.Type}}")
		}
		if strings.HasPrefix(ch.Subject, "pcwatch.") {
			return v.errf(p+".subject", "%q is inside pcwatch's own subject space (pcwatch.>): republishing there would loop; choose another prefix", ch.Subject)
		}
		t, err := parseTemplate(name+".subject", ch.Subject)
		if err != nil {
			return v.errf(p+".subject", "%v", err)
		}
		ch.subjectTmpl = t
	}
	return nil
}

func (v *validator) email(p string, ch *Channel) error {
	s := ch.SMTP
	if s == nil {
		return v.errf(p+".smtp", "missing: set smtp.host (and port, tls, username, password_env)")
	}
	if s.Host == "" {
		return v.errf(p+".smtp.host", "missing: the SMTP server's host name")
	}
	switch s.TLS {
	case "":
		s.TLS = "starttls"
	case "starttls", "tls", "none":
	default:
		return v.errf(p+".smtp.tls", "unknown value %q (want starttls, tls or none)", s.TLS)
	}
	if s.Port == 0 {
		s.Port = map[string]int{"starttls": 587, "tls": 465, "none": 25}[s.TLS]
	}
	if s.Port < 1 || s.Port > 65535 {
		return v.errf(p+".smtp.port", "%d is not a TCP port", s.Port)
	}
	pw, err := v.secret(p+".smtp", "password", s.Password, s.PasswordEnv, s.PasswordFile, false)
	if err != nil {
		return err
	}
	if pw.set() && s.Username == "" {
		return v.errf(p+".smtp.username", "missing: a password is set but no username")
	}
	if s.Username != "" && !pw.set() {
		return v.errf(p+".smtp.password_env", "missing: username %q is set but no password (password_env, password_file or password)", s.Username)
	}
	ch.password = pw
	if s.CAFile != "" {
		b, err := v.o.ReadFile(v.relPath(s.CAFile))
		if err != nil {
			return v.errf(p+".smtp.ca_file", "cannot read %s: %v", s.CAFile, unwrapPathError(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return v.errf(p+".smtp.ca_file", "%s holds no PEM certificate", s.CAFile)
		}
		ch.rootCAs = pool
	}
	if ch.From == "" {
		return v.errf(p+".from", "missing: the sender address, e.g. pcwatch@example.com")
	}
	if _, err := mail.ParseAddress(ch.From); err != nil {
		return v.errf(p+".from", "bad address %q: %v", ch.From, err)
	}
	if len(ch.To) == 0 {
		return v.errf(p+".to", "missing: at least one recipient address")
	}
	for i, a := range ch.To {
		if _, err := mail.ParseAddress(a); err != nil {
			return v.errf(fmt.Sprintf("%s.to[%d]", p, i), "bad address %q: %v", a, err)
		}
	}
	if ch.Subject == "" {
		ch.Subject = DefaultEmailSubject
	}
	if ch.Body == "" {
		ch.Body = DefaultEmailBody
	}
	if ch.subjectTmpl, err = parseTemplate(ch.name+".subject", ch.Subject); err != nil {
		return v.errf(p+".subject", "%v", err)
	}
	if ch.bodyTmpl, err = parseTemplate(ch.name+".body", ch.Body); err != nil {
		return v.errf(p+".body", "%v", err)
	}
	return nil
}

// secretKey names the key a secret came from, for error messages.
func (v *validator) secretKey(p, key, inline, env string) string {
	switch {
	case inline != "":
		return p + "." + key
	case env != "":
		return p + "." + key + "_env"
	}
	return p + "." + key + "_file"
}

// secret resolves one of key, key_env, key_file.
func (v *validator) secret(p, key, inline, env, file string, required bool) (secret, error) {
	n := 0
	for _, s := range []string{inline, env, file} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0 && required:
		return secret{}, v.errf(p+"."+key, "missing: set %s_env (an environment variable), %s_file (a file) or %s", key, key, key)
	case n == 0:
		return secret{}, nil
	case n > 1:
		return secret{}, v.errf(p+"."+key, "set only one of %s, %s_env and %s_file", key, key, key)
	case inline != "":
		v.cfg.warnings = append(v.cfg.warnings, fmt.Sprintf("%s.%s is written inline in the configuration file: move it to %s_env (an environment variable) or %s_file, so that it is not copied, versioned or shown with the file", p, key, key, key))
		return newSecret(inline), nil
	case env != "":
		val, _ := v.o.LookupEnv(env)
		val = strings.TrimSpace(val)
		if val == "" {
			return secret{}, v.errf(p+"."+key+"_env", "environment variable %s is empty: set it, or use %s_file", env, key)
		}
		return newSecret(val), nil
	}
	b, err := v.o.ReadFile(v.relPath(file))
	if err != nil {
		return secret{}, v.errf(p+"."+key+"_file", "cannot read %s: %v", file, unwrapPathError(err))
	}
	val := strings.TrimSpace(string(b))
	if val == "" {
		return secret{}, v.errf(p+"."+key+"_file", "%s is empty", file)
	}
	return newSecret(val), nil
}

func (v *validator) relPath(p string) string {
	if path.IsAbs(p) || v.o.File == "" || strings.HasPrefix(p, "/") {
		return p
	}
	return path.Join(path.Dir(v.o.File), p)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (v *validator) typeGlob(p, g string) ([]events.Info, error) {
	if _, err := path.Match(g, ""); err != nil {
		return nil, v.errf(p, "bad glob %q: %v", g, err)
	}
	var out []events.Info
	for _, in := range events.Catalog() {
		if ok, _ := path.Match(g, shortType(in.Type)); ok {
			out = append(out, in)
		}
	}
	if len(out) == 0 {
		return nil, v.errf(p, "%q matches no event type (types look like subscription.quantity-changed; see docs/events.md)", g)
	}
	return out, nil
}

func (v *validator) match(p string, m Match) (compiledMatch, error) {
	var cm compiledMatch
	for i, t := range m.Types {
		g := strings.TrimPrefix(t, events.TypePrefix)
		if _, err := v.typeGlob(fmt.Sprintf("%s.types[%d]", p, i), g); err != nil {
			return cm, err
		}
		cm.types = append(cm.types, g)
	}
	for i, o := range m.Offers {
		if _, err := path.Match(o, ""); err != nil {
			return cm, v.errf(fmt.Sprintf("%s.offers[%d]", p, i), "bad glob %q: %v", o, err)
		}
	}
	for i, c := range m.Customers {
		if strings.TrimSpace(c) == "" {
			return cm, v.errf(fmt.Sprintf("%s.customers[%d]", p, i), "empty customer id")
		}
	}
	if m.MinQuantityDelta < 0 {
		return cm, v.errf(p+".min_quantity_delta", "must not be negative, got %d", m.MinQuantityDelta)
	}
	if m.RemainingUnder < 0 {
		return cm, v.errf(p+".remaining_under", "must not be negative")
	}
	if c := m.Changed; c != nil {
		if len(c.Include) == 0 && len(c.Exclude) == 0 {
			return cm, v.errf(p+".changed", "empty: give include and/or exclude (JSON Pointer globs such as /billingCycleEndDate)")
		}
		for _, l := range []struct {
			name  string
			globs []string
		}{{"include", c.Include}, {"exclude", c.Exclude}} {
			for i, g := range l.globs {
				if !strings.HasPrefix(g, "/") {
					return cm, v.errf(fmt.Sprintf("%s.changed.%s[%d]", p, l.name, i), "%q is not a JSON Pointer: it starts with / (e.g. /billingCycleEndDate)", g)
				}
				if _, err := path.Match(g, ""); err != nil {
					return cm, v.errf(fmt.Sprintf("%s.changed.%s[%d]", p, l.name, i), "bad glob %q: %v", g, err)
				}
			}
		}
		cm.changed = &compiledChanged{include: c.Include, exclude: c.Exclude}
	}
	cm.customers, cm.offers, cm.partnerIDs = m.Customers, m.Offers, m.PartnerIDs
	cm.minDelta, cm.remainingUnder = m.MinQuantityDelta, m.RemainingUnder.D()
	return cm, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("not an absolute http(s) URL")
	}
	return nil
}

var reservedHeaders = []string{"Content-Type", "Content-Length", "Host", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "User-Agent"}

func checkHeaderName(h string) error {
	if h == "" || strings.ContainsFunc(h, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) {
		return fmt.Errorf("bad header name %q", h)
	}
	c := textproto.CanonicalMIMEHeaderKey(h)
	if slices.Contains(reservedHeaders, c) || strings.HasPrefix(c, "X-Pcwatch-") {
		return fmt.Errorf("header %s is set by the notifier and cannot be overridden", c)
	}
	return nil
}

// signingKey returns the HMAC key of a Standard Webhooks secret:
// "whsec_<base64>" is base64-decoded, anything else is used as raw bytes.
func signingKey(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		k, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, errors.New(`the secret starts with "whsec_" but the rest is not valid base64`)
		}
		if len(k) == 0 {
			return nil, errors.New(`the secret "whsec_" is empty`)
		}
		return k, nil
	}
	return []byte(s), nil
}

// grouping checks a route's group_by, group_wait and group_interval.
func (v *validator) grouping(p string, r Route, cr *compiledRoute) error {
	if len(r.GroupBy) == 0 {
		if r.GroupWait != 0 || r.GroupInterval != 0 {
			return v.errf(p+".group_by", "group_wait and group_interval need group_by (one or more of %s)", strings.Join(groupLabels, ", "))
		}
		return nil
	}
	if r.Drop {
		return v.errf(p, "a drop route sends nothing: group_by does not apply")
	}
	for i, l := range r.GroupBy {
		if !slices.Contains(groupLabels, l) {
			return v.errf(fmt.Sprintf("%s.group_by[%d]", p, i), "%q: want one of %s", l, strings.Join(groupLabels, ", "))
		}
	}
	cr.groupBy, cr.groupWait, cr.groupInterval = slices.Compact(slices.Clone(r.GroupBy)), r.GroupWait.D(), r.GroupInterval.D()
	if cr.groupWait == 0 {
		cr.groupWait = DefaultGroupWait
	}
	if cr.groupInterval == 0 {
		cr.groupInterval = DefaultGroupInterval
	}
	switch {
	case cr.groupWait < time.Second || cr.groupWait > time.Hour:
		return v.errf(p+".group_wait", "must be between 1s and 1h, got %s", cr.groupWait)
	case cr.groupInterval < time.Second || cr.groupInterval > 24*time.Hour:
		return v.errf(p+".group_interval", "must be between 1s and 24h, got %s", cr.groupInterval)
	}
	return nil
}
