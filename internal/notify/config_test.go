package notify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// exampleEnv is what deploy/notifier.example.yaml needs.
var exampleEnv = map[string]string{
	"PCWATCH_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	"PCWATCH_WEBHOOK_URL":    "https://hooks.example.net/pcwatch/T0KEN-IN-PATH",
	"SLACK_WEBHOOK_URL":      "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
	"TEAMS_WORKFLOW_URL":     "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SECRETSIG",
	"SMTP_PASSWORD":          "hunter2-smtp",
}

func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/notifier.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(b, ParseOptions{File: "notifier.example.yaml", LookupEnv: mapEnv(exampleEnv),
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Summary(); got != "5 channels, 8 routes" {
		t.Errorf("summary %q", got)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings %v", w)
	}
	if d := cfg.Delivery; d.MaxAttempts != 8 || d.AckWait.D() != 2*time.Minute || d.MaxAckPending != 32 || d.DedupeTTL.D() != 168*time.Hour {
		t.Errorf("delivery %+v", d)
	}
	mail := cfg.Channels["mail"]
	if mail.SMTP.Port != 587 || mail.SMTP.TLS != "starttls" || mail.password.value() != "hunter2-smtp" {
		t.Errorf("smtp %+v", mail.SMTP)
	}
	// Printing the configuration never shows a secret.
	dump := fmt.Sprintf("%+v %#v", cfg, cfg.Channels)
	for _, ch := range cfg.Channels {
		dump += fmt.Sprintf("%+v %v", *ch, *ch)
	}
	for k, v := range exampleEnv {
		if strings.Contains(dump, v) || strings.Contains(dump, strings.TrimPrefix(v, "whsec_")) {
			t.Errorf("printing the config reveals %s", k)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	const hook = "channels:\n  hook: {kind: webhook, url: \"https://example.com/h\"}\n"
	const route = "routes:\n  - channels: [hook]\n"
	env := map[string]string{"EMPTY": "", "SECRET": "s3cret"}
	for _, tc := range []struct {
		name, yaml string
		want       string // substring of the error, path first
		line       int
	}{
		{"unknown kind", "channels:\n  x: {kind: sms}\n" + route, `channels.x.kind: unknown channel kind "sms" (want one of webhook, slack, teams, email, nats)`, 2},
		{"misspelt kind", "channels:\n  x: {kind: webhok}\n" + route, `channels.x.kind: unknown channel kind "webhok" (did you mean webhook? want one of`, 2},
		{"missing kind", "channels:\n  x: {url: \"https://e.com\"}\n" + route, `channels.x.kind: missing`, 2},
		{"route to missing channel", hook + "routes:\n  - channels: [hook, nope]\n", `routes[0].channels[1]: no channel named "nope" (defined: hook)`, 4},
		{"default to missing channel", hook + "default: {channels: [gone]}\n", `default.channels[0]: no channel named "gone"`, 3},
		{"bad glob", hook + "routes:\n  - channels: [hook]\n  - channels: [hook]\n    match:\n      types: [\"subscription.[\"]\n",
			`routes[1].match.types[0]: bad glob "subscription.[": syntax error in pattern`, 7},
		{"glob matches nothing", hook + "routes:\n  - channels: [hook]\n    match: {types: [\"subscriptions.*\"]}\n", `routes[0].match.types[0]: "subscriptions.*" matches no event type`, 5},
		{"bad offer glob", hook + "routes:\n  - channels: [hook]\n    match: {offers: [\"[a\"]}\n", `routes[0].match.offers[0]: bad glob "[a"`, 5},
		{"bad source glob", hook + route + "accept:\n  sources: [\"https://pc/tenants/[\"]\n", `accept.sources[0]: bad glob "https://pc/tenants/["`, 6},
		{"empty source", hook + route + "accept: {sources: [\"\"]}\n", `accept.sources[0]: empty`, 5},
		{"unknown accept key", hook + route + "accept: {types: [x]}\n", `accept.types`, 5},
		{"allowed host with a port", hook + route + "allowed_hosts: [\"pcwatch:9465\"]\n", `allowed_hosts[0]: allowed host "pcwatch:9465": not a host name or IP address`, 5},
		{"empty env secret", "channels:\n  mail:\n    kind: email\n    smtp: {host: smtp.example.com, username: u, password_env: EMPTY}\n    from: a@example.com\n    to: [b@example.com]\nroutes:\n  - channels: [mail]\n",
			`channels.mail.smtp.password_env: environment variable EMPTY is empty`, 4},
		{"unset env secret", "channels:\n  slack: {kind: slack, url_env: SLACK_WEBHOOK_URL}\nroutes:\n  - channels: [slack]\n",
			`channels.slack.url_env: environment variable SLACK_WEBHOOK_URL is empty: set it, or use url_file`, 2},
		{"unreadable secret file", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", secret_file: /nonexistent/secret}\n" + route,
			`channels.hook.secret_file: cannot read /nonexistent/secret: no such file or directory`, 2},
		{"two url sources", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", url_env: SECRET}\n" + route, `channels.hook.url: set only one of url, url_env and url_file`, 2},
		{"url missing", "channels:\n  hook: {kind: teams}\n" + route, `channels.hook.url: missing: set url_env`, 2},
		{"not a url", "channels:\n  hook: {kind: webhook, url_env: SECRET}\n" + route, `channels.hook.url_env: not an absolute http(s) URL`, 2},
		{"bad whsec", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", secret: \"whsec_%%%\"}\n" + route, `channels.hook.secret: the secret starts with "whsec_" but the rest is not valid base64`, 2},
		{"bad duration", hook + route + "delivery:\n  ack_wait: 2 minutes\n", `delivery.ack_wait: bad duration "2 minutes"`, 6},
		{"bad channel timeout", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", timeout: soon}\n" + route, `channels.hook.timeout: bad duration "soon"`, 2},
		{"timeout not below ack_wait", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", timeout: 3m}\n" + route, `channels.hook.timeout: 3m0s is not shorter than delivery.ack_wait 2m0s`, 2},
		{"wrong type", hook + route + "delivery:\n  max_attempts: eight\n", "delivery.max_attempts: cannot unmarshal !!str `eight` into int", 6},
		{"max attempts zero", hook + route + "delivery:\n  max_attempts: -1\n", `delivery.max_attempts: must be at least 1`, 6},
		{"unknown key", "channels:\n  hook: {kind: webhook, urll: \"https://e.com\"}\n" + route, `channels.hook.urll: unknown key (did you mean url?)`, 2},
		{"unknown top-level key", hook + "routs:\n  - channels: [hook]\n", `routs: unknown key (did you mean routes?)`, 3},
		{"unknown match key", hook + "routes:\n  - channels: [hook]\n    match: {customer: [c1]}\n", `routes[0].match.customer: unknown key (did you mean customers?)`, 5},
		{"unknown smtp key", "channels:\n  mail:\n    kind: email\n    smtp: {hots: x}\n" + route, `channels.mail.smtp.hots: unknown key (did you mean host?)`, 4},
		{"setting of another kind", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", smtp: {host: x}}\n" + route, `channels.hook.smtp: not a setting of a webhook channel`, 2},
		{"bad channel name", "channels:\n  ops hook: {kind: webhook, url: \"https://e.com\"}\nroutes:\n  - channels: [ops hook]\n", `channels."ops hook": bad channel name "ops hook"`, 2},
		{"bad from", "channels:\n  mail:\n    kind: email\n    smtp: {host: h}\n    from: not an address\n    to: [b@example.com]\nroutes:\n  - channels: [mail]\n", `channels.mail.from: bad address "not an address"`, 5},
		{"bad to", "channels:\n  mail:\n    kind: email\n    smtp: {host: h}\n    from: a@example.com\n    to: [b@example.com, nope]\nroutes:\n  - channels: [mail]\n", `channels.mail.to[1]: bad address "nope"`, 6},
		{"bad smtp tls", "channels:\n  mail:\n    kind: email\n    smtp: {host: h, tls: ssl}\n    from: a@example.com\n    to: [b@example.com]\nroutes:\n  - channels: [mail]\n", `channels.mail.smtp.tls: unknown value "ssl" (want starttls, tls or none)`, 4},
		{"password without username", "channels:\n  mail:\n    kind: email\n    smtp: {host: h, password_env: SECRET}\n    from: a@example.com\n    to: [b@example.com]\nroutes:\n  - channels: [mail]\n", `channels.mail.smtp.username: missing`, 4},
		{"nats subject in pcwatch space", "channels:\n  wf: {kind: nats, subject: \"pcwatch.events.again\"}\nroutes:\n  - channels: [wf]\n", `channels.wf.subject: "pcwatch.events.again" is inside pcwatch's own subject space`, 2},
		{"nats subject renders badly", "channels:\n  wf: {kind: nats, subject: \"wf.{{.CustomerName}}\"}\nroutes:\n  - channels: [wf]\n", `channels.wf.subject: subject "wf.Contoso Ltd" contains whitespace`, 2},
		{"bad template", hook + route + "templates:\n  \"subscription.*\": {title: \"{{.Title\"}\n", `templates."subscription.*".title: bad template`, 6},
		{"template field error", hook + route + "templates:\n  subscription.quantity-changed: {text: \"{{.Nope}}\"}\n", `templates."subscription.quantity-changed": rendering subscription.quantity-changed: template subscription.quantity-changed.text: `, 6},
		{"template glob matches nothing", hook + route + "templates:\n  \"subscriptin.*\": {title: x}\n", `templates."subscriptin.*": "subscriptin.*" matches no event type`, 6},
		{"silence without until", hook + route + "silences:\n  - match: {customers: [c1]}\n", `silences[0].until: missing`, 6},
		// Defect 11 of issue 11: a bad date had neither line nor key.
		{"silence with a bad date", hook + route + "silences:\n  - match: {customers: [c1]}\n    until: next tuesday\n", `n.yaml:7: silences[0].until: "next tuesday" is not a date-time`, 7},
		{"silence with an impossible month", hook + route + "silences:\n  - match: {customers: [c1]}\n    until: 2026-13-01T00:00:00Z\n", `silences[0].until: "2026-13-01T00:00:00Z" is not a date-time`, 7},
		{"silence matching everything", hook + route + "silences:\n  - until: 2030-01-01T00:00:00Z\n", `silences[0].match: empty`, 6},
		{"no routes", hook, `routes: no routes and no default route`, 0},
		{"no channels", route, `channels: no channels defined`, 0},
		{"route without channels", hook + "routes:\n  - name: x\n", `routes[0].channels: no channels: name at least one of hook`, 4},
		{"yaml syntax", hook + "routes: [\n", `n.yaml:3: did not find expected node content`, 3},
		{"empty", "", `the configuration is empty`, 0},
		{"negative delta", hook + "routes:\n  - channels: [hook]\n    match: {min_quantity_delta: -3}\n", `routes[0].match.min_quantity_delta: must not be negative`, 5},
		{"reserved header", "channels:\n  hook: {kind: webhook, url: \"https://e.com\", headers: {webhook-signature: x}}\n" + route, `channels.hook.headers.webhook-signature: header Webhook-Signature is set by the notifier`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), ParseOptions{File: "n.yaml", LookupEnv: mapEnv(env)})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *ConfigError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", err, tc.want)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d (%s)", ce.Line, tc.line, err)
			}
			if tc.line != 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("n.yaml:%d: ", tc.line)) {
				t.Errorf("error %q does not start with file:line", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error reveals a secret: %s", err)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestSecretFromFileAndDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "url"), []byte("https://hooks.example.com/T/B/tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte("channels:\n  s: {kind: slack, url_file: url}\n  m:\n    kind: email\n    smtp: {host: h, tls: tls}\n    from: a@example.com\n    to: [b@example.com]\ndefault: {channels: [s, m]}\n"),
		ParseOptions{File: filepath.Join(dir, "n.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Channels["s"].url.value(); got != "https://hooks.example.com/T/B/tok" {
		t.Errorf("url from a file relative to the config: %q", got)
	}
	m := cfg.Channels["m"]
	if m.SMTP.Port != 465 || m.Timeout.D() != DefaultSMTPTimeout || cfg.Channels["s"].Timeout.D() != DefaultHTTPTimeout {
		t.Errorf("defaults: port %d timeouts %s %s", m.SMTP.Port, m.Timeout.D(), cfg.Channels["s"].Timeout.D())
	}
	if cfg.ListenAddr() != DefaultListen || cfg.Delivery.Concurrency != DefaultConcurrency {
		t.Errorf("listen %q concurrency %d", cfg.ListenAddr(), cfg.Delivery.Concurrency)
	}
}

// Warnings name every secret written inline in the file (url:, secret:,
// password: instead of *_env or *_file), never its value, next to unused
// channels and expired silences.
func TestWarnings(t *testing.T) {
	const conf = "channels:\n  a: {kind: webhook, url: \"https://e.com/T0KEN\", secret: s3cr3t-inline}\n  b: {kind: webhook, url_env: B_URL}\n" +
		"  m: {kind: email, smtp: {host: h, username: u, password: pw-inline}, from: a@b.c, to: [x@y.z]}\n" +
		"routes:\n  - channels: [a, m]\nsilences:\n  - match: {customers: [c]}\n    until: 2020-01-01T00:00:00Z\n"
	cfg, err := ParseConfig([]byte(conf), ParseOptions{LookupEnv: mapEnv(map[string]string{"B_URL": "https://e.com/b"})})
	if err != nil {
		t.Fatal(err)
	}
	inline := func(key, alt string) string {
		return key + " is written inline in the configuration file: move it to " + alt + "_env (an environment variable) or " + alt + "_file, so that it is not copied, versioned or shown with the file"
	}
	want := []string{inline("channels.a.url", "url"), inline("channels.a.secret", "secret"), inline("channels.m.smtp.password", "password"),
		`channel "b" is not used by any route`, "silences[0] expired at 2020-01-01T00:00:00Z"}
	if diff := cmp.Diff(want, cfg.Warnings()); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	for _, w := range cfg.Warnings() {
		for _, v := range []string{"T0KEN", "s3cr3t-inline", "pw-inline", "e.com/b"} {
			if strings.Contains(w, v) {
				t.Errorf("warning %q reveals %q", w, v)
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "168h": 168 * time.Hour} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("%s = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"d", "1.5d", "7days", "x1d", "1d-1h"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("%s parsed", in)
		}
	}
}
