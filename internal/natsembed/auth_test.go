package natsembed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcwatch/pcwatch/internal/deadlinequery"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// testTimeout bounds waits; it is a safety net, never an assertion on
// how long something takes.
const testTimeout = 30 * time.Second

func TestNamesMatchTheirOwners(t *testing.T) {
	want := map[string]string{
		"events stream": stream.Name,
		"dlq stream":    notify.DLQStream,
		"dlq subjects":  notify.DLQSubjectPrefix + ">",
		"deliveries":    notify.DeliveriesBucket,
		"claims":        notify.ClaimsBucket,
		"alerts":        notify.AlertsBucket,
		"silences":      notify.SilencesBucket,
		"query":         deadlinequery.Subject,
	}
	for k, v := range want {
		if natsembed.Names[k] != v {
			t.Errorf("%s: natsembed uses %q, its owner %q", k, natsembed.Names[k], v)
		}
	}
	if !slices.Equal(natsembed.EventSubjects, stream.Subjects) {
		t.Errorf("event subjects %v, stream subjects %v", natsembed.EventSubjects, stream.Subjects)
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The credentials are generated once (0600 files in a 0700 directory),
// reused on the next start, and a deleted file is generated anew
// (rotation) while the other one stays.
func TestCredentialsCreatedReusedAndRotated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), natsembed.CredentialsDirName)
	c1, err := natsembed.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %#o, want 0700", m)
	}
	for _, p := range []string{c1.WatcherSeed, c1.NotifierSeed} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s mode %#o, want 0600", p, m)
		}
		if _, err := nkeys.ParseDecoratedNKey([]byte(read(t, p))); err != nil {
			t.Errorf("%s is not a seed nats tools read: %v", p, err)
		}
	}
	w, n := read(t, c1.WatcherSeed), read(t, c1.NotifierSeed)
	if w == n {
		t.Fatal("the two identities share a seed")
	}
	if _, err := natsembed.LoadCredentials(dir); err != nil {
		t.Fatal(err)
	}
	if read(t, c1.WatcherSeed) != w || read(t, c1.NotifierSeed) != n {
		t.Fatal("a second start changed the credentials")
	}
	if err := os.Remove(c1.NotifierSeed); err != nil {
		t.Fatal(err)
	}
	if _, err := natsembed.LoadCredentials(dir); err != nil {
		t.Fatal(err)
	}
	if read(t, c1.WatcherSeed) != w || read(t, c1.NotifierSeed) == n {
		t.Fatal("deleting the notifier's seed did not rotate it alone")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("the directory holds %d files, want the two seeds", len(entries))
	}
}

// A credentials file or directory that other users can read, that is not a
// file, or that holds no user seed is refused with the path and the fix,
// and left as it is.
func TestCredentialsRefused(t *testing.T) {
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path at fault
		is    error
		want  string
	}{
		{"file readable by others", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, natsembed.NotifierSeedFile)
			os.Chmod(p, 0o644)
			return p
		}, natsembed.ErrLoosePermissions, "chmod 600"},
		{"directory readable by others", func(t *testing.T, dir string) string {
			os.Chmod(dir, 0o755)
			return dir
		}, natsembed.ErrLoosePermissions, "chmod 700"},
		{"not a seed", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, natsembed.WatcherSeedFile)
			os.WriteFile(p, []byte("hunter2\n"), 0o600)
			return p
		}, natsembed.ErrBadSeed, "delete it and restart the watcher"},
		{"an account seed", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, natsembed.WatcherSeedFile)
			os.WriteFile(p, accountSeed, 0o600)
			return p
		}, natsembed.ErrBadSeed, "not of a user"},
		{"a directory in place of the file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, natsembed.NotifierSeedFile)
			os.Remove(p)
			os.Mkdir(p, 0o700)
			return p
		}, nil, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "auth")
			if _, err := natsembed.LoadCredentials(dir); err != nil {
				t.Fatal(err)
			}
			at := tc.setup(t, dir)
			before := map[string]string{}
			for _, f := range []string{natsembed.WatcherSeedFile, natsembed.NotifierSeedFile} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				before[f] = string(b)
			}
			_, err := natsembed.LoadCredentials(dir)
			var ce *natsembed.CredentialsError
			if !errors.As(err, &ce) || ce.Path != at || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), at) {
				t.Fatalf("error %v, want a *CredentialsError for %s saying %q", err, at, tc.want)
			}
			for f, b := range before {
				if now, _ := os.ReadFile(filepath.Join(dir, f)); string(now) != b {
					t.Errorf("%s was changed", f)
				}
			}
			// The server refuses to start the same way.
			_, err = natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: dir})
			if !errors.As(err, &ce) {
				t.Errorf("Start: %v, want the credentials error", err)
			}
		})
	}
	t.Run("unreadable file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads files of mode 0000")
		}
		dir := filepath.Join(t.TempDir(), "auth")
		c, err := natsembed.LoadCredentials(dir)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(c.WatcherSeed, 0o000)
		if _, err := natsembed.LoadCredentials(dir); err == nil || !strings.Contains(err.Error(), "make it readable") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestNotifierSubjectsChecked(t *testing.T) {
	for _, s := range []string{">", "*.x", "$JS.API.>", "$KV.x.>", "_INBOX.>", "pcwatch.alerts.>", "a..b", ""} {
		if _, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: t.TempDir() + "/a", NotifierSubjects: []string{s}}); err == nil {
			t.Errorf("notifier subject %q accepted", s)
		}
	}
}

// server is an authenticated embedded server whose log is kept.
type server struct {
	*natsembed.Server
	mu  sync.Mutex
	log bytes.Buffer
}

func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

// violations are the permission violations the server logged.
func (s *server) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(l, "Violation") {
			out = append(out, l)
		}
	}
	return out
}

func startAuth(t *testing.T) *server {
	t.Helper()
	s := &server{}
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: filepath.Join(t.TempDir(), "auth"),
		Logger: slog.New(slog.NewTextHandler(s, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s.Server = srv
	if srv.Credentials() == nil {
		t.Fatal("no credentials")
	}
	return s
}

// dial connects with a seed file ("" none) and waits until connected.
func dial(t *testing.T, url, seed string) (*nats.Conn, error) {
	t.Helper()
	opts := []nats.Option{nats.Name(t.Name()), nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}
	if seed != "" {
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func mustDial(t *testing.T, url, seed string) *nats.Conn {
	t.Helper()
	nc, err := dial(t, url, seed)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// Without credentials, or with a key the server does not know, a
// connection is refused.
func TestConnectionWithoutCredentialsRefused(t *testing.T) {
	s := startAuth(t)
	if _, err := dial(t, s.ClientURL(), ""); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("no credentials: %v, want an authorization violation", err)
	}
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	os.WriteFile(stranger, seed, 0o600)
	if _, err := dial(t, s.ClientURL(), stranger); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("unknown key: %v, want an authorization violation", err)
	}
	// The server restarted on the same credentials accepts the same seeds.
	dir := s.Credentials().Dir
	s.Shutdown()
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for _, seed := range []string{srv.Credentials().WatcherSeed, srv.Credentials().NotifierSeed} {
		if _, err := dial(t, srv.ClientURL(), seed); err != nil {
			t.Errorf("%s after a restart: %v", filepath.Base(seed), err)
		}
	}
}

// refused sends one raw publish (a JetStream API request, or an event) as
// the notifier on a fresh connection and returns the server's permission
// error, nil when it was accepted. The server answers -ERR before the PONG
// of the flush, so LastError is settled when Flush returns.
func refused(t *testing.T, s *server, subject string, data []byte) error {
	t.Helper()
	nc := mustDial(t, s.ClientURL(), s.Credentials().NotifierSeed)
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Reply = nc.NewRespInbox()
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(testTimeout); err != nil {
		t.Fatal(err)
	}
	return nc.LastError()
}

func js(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	j, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func quantityEvent(t *testing.T, rev uint64) events.Envelope {
	t.Helper()
	delta := 1
	d := &events.Data{CustomerID: "c1", SubscriptionID: "s1", Revision: rev, Old: events.JSONValue(1), New: events.JSONValue(2), Delta: &delta}
	env, _, err := events.New("https://pc.example/tenants/t", events.SubscriptionQuantityChanged, events.IDKey{Entity: "subscription/c1/s1", Revision: rev}, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// The watcher identity runs the watcher's JetStream calls; the notifier
// identity runs the real notifier (consumers, acks, dead letters,
// deliveries bucket, dlq list) without one permission violation, but may
// not publish events nor reach the event stream through stream or consumer
// options of its own (republish, sources, push deliver subjects).
func TestIdentitiesAndPermissions(t *testing.T) {
	s := startAuth(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	creds := s.Credentials()

	// The watcher: the stream, the notifier's streams, events, reading back.
	wc := mustDial(t, s.ClientURL(), creds.WatcherSeed)
	wjs := js(t, wc)
	evStream, err := stream.Ensure(ctx, wjs, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(ctx, wjs, stream.Options{MaxAge: time.Hour}); err != nil {
		t.Fatalf("updating the stream: %v", err)
	}
	if err := notify.Provision(ctx, wjs); err != nil {
		t.Fatal(err)
	}

	// The real notifier as the notifier identity, delivering to a webhook.
	got := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Webhook-Id") }))
	defer hook.Close()
	cfg, err := notify.ParseConfig([]byte("channels:\n  hook: {kind: webhook, url_env: U}\n  alerts: {kind: nats, subject: \"alerts.{{.Type}}\"}\ndefault: {channels: [hook, alerts]}\n"),
		notify.ParseOptions{LookupEnv: func(string) (string, bool) { return hook.URL, true }})
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := wc.SubscribeSync("alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	nctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- notify.Run(nctx, notify.Options{Config: cfg, Listen: "127.0.0.1:0", NATS: natsconn.Options{URL: s.ClientURL(), NKeySeedFile: creds.NotifierSeed},
			Ready: func(notify.ReadyInfo) { close(ready) }})
	}()
	defer func() { stop(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("notifier: %v", err)
	case <-ctx.Done():
		t.Fatalf("notifier not ready; server log: %v", s.violations())
	}
	ev := quantityEvent(t, 1)
	msg := nats.NewMsg(ev.Subject)
	msg.Data = ev.Body
	if _, err := wjs.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(stream.Name)); err != nil {
		t.Fatalf("the watcher publishing an event: %v", err)
	}
	select {
	case id := <-got:
		if id != ev.ID {
			t.Errorf("webhook got %s, want %s", id, ev.ID)
		}
	case <-ctx.Done():
		t.Fatalf("the event was not delivered; violations: %v", s.violations())
	}
	if _, err := alerts.NextMsg(testTimeout); err != nil {
		t.Errorf("the nats channel did not republish on alerts.>: %v", err)
	}
	if _, err := evStream.GetLastMsgForSubject(ctx, ev.Subject); err != nil {
		t.Errorf("the watcher reading the stream back: %v", err)
	}

	// The notifier identity's one-shot commands: a dead letter written and
	// listed, the deliveries bucket read and written.
	nc := mustDial(t, s.ClientURL(), creds.NotifierSeed)
	njs := js(t, nc)
	dl := nats.NewMsg(notify.DLQSubjectPrefix + "hook")
	dl.Data = ev.Body
	dl.Header.Set(notify.HeaderDLQChannel, "hook")
	if _, err := njs.PublishMsg(ctx, dl, jetstream.WithExpectStream(notify.DLQStream)); err != nil {
		t.Fatalf("writing a dead letter: %v", err)
	}
	if l, err := notify.ListDLQ(ctx, njs, "hook"); err != nil || len(l) != 1 || l[0].EventID != ev.ID {
		t.Fatalf("dlq list as the notifier: %+v %v", l, err)
	}
	for _, b := range []string{notify.DeliveriesBucket, notify.ClaimsBucket, notify.AlertsBucket, notify.SilencesBucket} {
		kv, err := njs.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "hook.x", []byte("1")); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if _, err := kv.Get(ctx, "hook.x"); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	if v := s.violations(); len(v) != 0 {
		t.Fatalf("the watcher and the notifier doing their work hit permission violations:\n%s", strings.Join(v, "\n"))
	}

	// What the notifier identity may not do.
	streamCfg := func(c jetstream.StreamConfig) []byte {
		b, _ := json.Marshal(c)
		return b
	}
	forged := forgedBody(t)
	for _, tc := range []struct {
		name, subject string
		data          []byte
	}{
		{"publish an event", "pcwatch.events.subscription.created.c1.s9", forged},
		{"publish an ops event", "pcwatch.ops.cycle-completed", forged},
		{"create a stream that republishes into the events", "$JS.API.STREAM.CREATE.EVIL",
			streamCfg(jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.*"}, RePublish: &jetstream.RePublish{Source: "evil.*", Destination: "pcwatch.events.forged.{{wildcard(1)}}"}})},
		{"add a republish to its own bucket", "$JS.API.STREAM.UPDATE.KV_" + notify.DeliveriesBucket,
			streamCfg(jetstream.StreamConfig{Name: "KV_" + notify.DeliveriesBucket, Subjects: []string{"$KV." + notify.DeliveriesBucket + ".>"}, RePublish: &jetstream.RePublish{Source: ">", Destination: "pcwatch.events.forged.>"}})},
		{"reconfigure the event stream", "$JS.API.STREAM.UPDATE." + stream.Name, streamCfg(jetstream.StreamConfig{Name: stream.Name, Subjects: []string{"pcwatch.events.>", "pcwatch.ops.>"}, Sources: []*jetstream.StreamSource{{Name: "EVIL"}}})},
		{"delete the event stream", "$JS.API.STREAM.DELETE." + stream.Name, nil},
		{"purge the event stream", "$JS.API.STREAM.PURGE." + stream.Name, nil},
		{"delete an event", "$JS.API.STREAM.MSG.DELETE." + stream.Name, []byte(`{"seq":1}`)},
		{"push its dead letters into the events", "$JS.API.CONSUMER.CREATE." + notify.DLQStream + ".evil",
			[]byte(`{"stream_name":"PCWATCH_DLQ","config":{"name":"evil","deliver_subject":"pcwatch.events.forged.x","ack_policy":"none"}}`)},
		{"consume its bucket", "$JS.API.CONSUMER.CREATE.KV_" + notify.DeliveriesBucket + ".evil", []byte(`{}`)},
		{"publish on pcwatch's other subjects", "pcwatch.other", forged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused(t, s, tc.subject, tc.data)
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), tc.subject) {
				t.Errorf("%s: %v, want a permission violation", tc.subject, err)
			}
		})
	}
	info, err := evStream.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || len(info.Config.Sources) != 0 || info.Config.RePublish != nil {
		t.Errorf("the event stream holds %d messages (%v), sources %v: want only the watcher's event", info.State.Msgs, info.State.Subjects, info.Config.Sources)
	}
	if ai, err := wjs.AccountInfo(ctx); err != nil || ai.Streams != 6 {
		t.Errorf("%+v streams (%v), want the six of pcwatch: none created by the notifier", ai, err)
	}
}

func forgedBody(t *testing.T) []byte {
	t.Helper()
	return quantityEvent(t, 99).Body
}
