package notify

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/events"
)

func FuzzConfig(f *testing.F) {
	example, err := os.ReadFile("../../deploy/notifier.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(routingYAML))
	f.Add([]byte("channels:\n  hook: {kind: webhook, url: \"https://e.com\"}\nroutes:\n  - channels: [hook]\n    match: {types: [\"subscription.[\"]}\n"))
	f.Add([]byte("channels:\n  m: {kind: email, smtp: {host: h}, from: a@b.c, to: [x@y.z]}\ndefault: {channels: [m]}\ntemplates:\n  \"*\": {title: \"{{.Title}}{{.Nope}}\"}\n"))
	f.Add([]byte("channels: &a {x: *a}\n"))
	f.Add([]byte("delivery: {ack_wait: 7d, dedupe_ttl: 1d12h}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b, ParseOptions{
			LookupEnv: mapEnv(exampleEnv),
			// Never read real files from fuzzed paths.
			ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist },
		})
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is a %T, not a *ConfigError: %v", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			for _, v := range exampleEnv {
				if strings.Contains(err.Error(), v) {
					t.Fatalf("error reveals a secret: %s", err)
				}
			}
			return
		}
		// A valid configuration routes and renders every event type.
		for _, in := range events.Catalog() {
			ev, err := SampleEvent(in.Type, sampleTime)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := ev.DecodeData()
			dec := cfg.Route(ev, d, sampleTime)
			for _, ch := range dec.Channels {
				if _, ok := cfg.Channels[ch]; !ok {
					t.Fatalf("routed to unknown channel %q", ch)
				}
				if len(cfg.FilterSubjects(ch)) == 0 {
					t.Fatalf("channel %s has no filter subjects but receives %s", ch, in.Type)
				}
				if _, err := renderMessage(ev, d, cfg.overrides, ch); err != nil {
					t.Fatalf("validated templates fail on %s: %v", in.Type, err)
				}
			}
		}
	})
}

// FuzzHandleMessage feeds arbitrary message bodies through what a channel
// consumer does before the network: decode, route, render every channel's
// payload, and the DLQ entry a failure would produce.
func FuzzHandleMessage(f *testing.F) {
	for _, in := range events.Catalog() {
		b, err := sampleBody(in.Type, sampleTime)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"io.pcwatch.subscription.teleported","time":"2026-01-01T00:00:00Z","data":{"customerId":"c","changes":[{"path":"/a~1b","old":null,"new":{"x":[1,2]}}]}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"io.pcwatch.ops.cycle-completed","data":{}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"delta":null,"remainingSeconds":-5,"deadline":"2026-01-01T00:00:00Z","late":true}}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"specversion":"1.0","data":[]}`))
	cfg, err := ParseConfig([]byte(`
channels:
  hook: {kind: webhook, url: "https://e.com"}
  mail: {kind: email, smtp: {host: h}, from: a@example.com, to: [b@example.com]}
  wf: {kind: nats, subject: "wf.{{.Type}}"}
routes:
  - match: {types: ["subscription.*"], offers: ["Microsoft*"], min_quantity_delta: 1}
    channels: [hook]
    continue: true
  - match: {remaining_under: 24h}
    channels: [mail]
default: {channels: [hook, mail, wf]}
silences:
  - match: {customers: [quiet]}
    until: 2099-01-01T00:00:00Z
`), ParseOptions{})
	if err != nil {
		f.Fatal(err)
	}
	mail := &emailSender{ch: cfg.Channels["mail"], clk: fixedClock{}}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := nats.Header{}
		h.Set(HeaderDLQChannel, "hook")
		_ = entryFromMsg(1, sampleTime, h, body)
		ev, d, err := decodeEvent(body)
		if err != nil {
			if !errors.Is(err, events.ErrNotCloudEvent) && !errors.Is(err, events.ErrUnsupportedSpec) {
				t.Fatalf("decode error %v is neither ErrNotCloudEvent nor ErrUnsupportedSpec", err)
			}
			return
		}
		_ = deliveryKey("hook", ev.ID)
		dec := cfg.Route(ev, d, sampleTime)
		for _, ch := range append(dec.Channels, "hook") {
			td, err := renderMessage(ev, d, cfg.overrides, ch)
			if err != nil {
				continue // a render error is dead-lettered, never a panic
			}
			if strings.Contains(td.Title, "\n") {
				t.Fatalf("multi-line title %q", td.Title)
			}
			_ = slackPayload(td)
			if p, err := teamsPayload(td); err == nil && len(p) >= TeamsMaxBytes {
				t.Fatalf("Teams payload of %d bytes", len(p))
			}
			n := &notification{Event: ev, Data: d, Body: body, Message: td}
			if m, err := mail.compose(n); err == nil && strings.Contains(string(m[:strings.Index(string(m), "\r\n\r\n")]), "\n\n") {
				t.Fatalf("mail headers broken")
			}
			_, _ = cfg.Channels["wf"].execSubject(td)
		}
	})
}
