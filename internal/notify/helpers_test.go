package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// testTimeout bounds every wait in these tests; it is a safety net, never
// an assertion on how long something takes.
const testTimeout = 60 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func startNATS(t testing.TB) *natsembed.Server { return natstest.Start(t) }

func connectNATS(t testing.TB, url string) *nats.Conn { return natstest.Connect(t, url) }

func jsOf(t testing.TB, nc *nats.Conn) jetstream.JetStream { return natstest.JetStream(t, nc) }

func ensureEventStream(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, stream.Options{Memory: true}); err != nil {
		t.Fatal(err)
	}
}

// quantityEvent builds a real quantity-changed event of subscription sub of
// customer c at revision rev.
func quantityEvent(t testing.TB, c string, sub int, rev uint64, old, new int) events.Envelope {
	t.Helper()
	delta := new - old
	d := &events.Data{CustomerID: c, CustomerName: "Customer " + c, SubscriptionID: fmt.Sprintf("sub-%d", sub), Revision: rev,
		After: &events.View{ID: fmt.Sprintf("sub-%d", sub), OfferName: "Microsoft 365 Business Basic", Quantity: &new, PartnerID: "4847383"},
		Old:   events.JSONValue(old), New: events.JSONValue(new), Delta: &delta,
		Changes: []events.Change{{Path: "/quantity", Old: events.JSONValue(old), New: events.JSONValue(new)}}}
	env, _, err := events.New("https://pc.example/partner", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/sub-%d", c, sub), Revision: rev},
		time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// typedEvent builds the sample event of type typ for customer c.
func typedEvent(t testing.TB, typ events.Type, c string, rev uint64) events.Envelope {
	t.Helper()
	info, _ := events.Lookup(typ)
	d := sampleData(info, sampleTime)
	if d.CustomerID != "" {
		d.CustomerID = c
	}
	d.Revision = rev
	env, _, err := events.New("https://pc.example/partner", typ, events.IDKey{Entity: string(typ) + "/" + c, Revision: rev}, sampleTime, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// publish stores an envelope in PCWATCH_EVENTS as the watcher's relay does;
// msgID overrides the Nats-Msg-Id (a second copy of the same event).
func publish(t testing.TB, js jetstream.JetStream, env events.Envelope, msgID string) {
	t.Helper()
	if msgID == "" {
		msgID = env.ID
	}
	msg := nats.NewMsg(env.Subject)
	msg.Data = env.Body
	msg.Header.Set("Content-Type", events.ContentType)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(stream.Name)); err != nil {
		t.Fatal(err)
	}
}

// mustConfig parses YAML with the given environment.
func mustConfig(t testing.TB, y string, env map[string]string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(y), ParseOptions{File: "test.yaml", LookupEnv: mapEnv(env)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// recorder collects what the consumers report through the test hooks and
// lets tests wait for a condition without sleeping.
type recorder struct {
	mu      sync.Mutex
	results map[string][]string // channel/id -> results in order
	ips     map[string]int      // channel/id -> InProgress acks
	changed chan struct{}
	ipc     chan struct{} // InProgress acks only
}

func newRecorder() *recorder {
	return &recorder{results: map[string][]string{}, ips: map[string]int{}, changed: make(chan struct{}, 1), ipc: make(chan struct{}, 1)}
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) hooks() *testHooks {
	return &testHooks{
		result: func(ch, id, res string) {
			r.mu.Lock()
			r.results[ch+"/"+id] = append(r.results[ch+"/"+id], res)
			r.mu.Unlock()
			r.signal()
		},
		inProgress: func(ch, id string) {
			r.mu.Lock()
			r.ips[ch+"/"+id]++
			r.mu.Unlock()
			select {
			case r.ipc <- struct{}{}:
			default:
			}
		},
	}
}

func (r *recorder) get(ch, id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.results[ch+"/"+id]...)
}

func (r *recorder) count(ch, result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, rs := range r.results {
		if !strings.HasPrefix(k, ch+"/") {
			continue
		}
		for _, x := range rs {
			if x == result {
				n++
			}
		}
	}
	return n
}

// waitFor blocks until cond holds, re-checking whenever one of the signal
// channels fires. It never sleeps.
func waitFor(t testing.TB, what string, cond func() bool, signals ...<-chan struct{}) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline.C)}}
	for _, s := range signals {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s)})
	}
	for !cond() {
		if i, _, _ := reflect.Select(cases); i == 0 {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// receiver is an httptest server that records webhook requests by
// webhook-id and answers with whatever respond says.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	respond func(n int, r *http.Request) (status int, header http.Header)
	changed chan struct{}
}

type recorded struct {
	id     string
	header http.Header
	body   []byte
	status int
}

func newReceiver(t testing.TB, respond func(n int, r *http.Request) (int, http.Header)) *receiver {
	rc := &receiver{respond: respond, changed: make(chan struct{}, 1)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs) + 1
		respond := rc.respond
		rc.mu.Unlock()
		status, hdr := http.StatusOK, http.Header(nil)
		if respond != nil {
			status, hdr = respond(n, r)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{id: r.Header.Get("Webhook-Id"), header: r.Header.Clone(), body: body, status: status})
		rc.mu.Unlock()
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		select {
		case rc.changed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

// accepted counts 2xx answers per webhook-id.
func (rc *receiver) accepted() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	m := map[string]int{}
	for _, r := range rc.reqs {
		if r.status >= 200 && r.status < 300 {
			m[r.id]++
		}
	}
	return m
}

func (rc *receiver) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// notifier is a notify.Run in the test process.
type notifier struct {
	info   ReadyInfo
	cancel context.CancelFunc
	done   chan error
}

// startNotifier runs the notifier against url and waits until it is ready.
func startNotifier(t testing.TB, cfg *Config, url string, h *testHooks) *notifier {
	t.Helper()
	return startNotifierWith(t, Options{Config: cfg, NATS: natsconn.Options{URL: url}, hooks: h})
}

// startNotifierWith runs the notifier with o (Config, NATS and any other
// option set by the test) and waits until it is ready.
func startNotifierWith(t testing.TB, o Options) *notifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan ReadyInfo, 1)
	n := &notifier{cancel: cancel, done: make(chan error, 1)}
	o.Listen, o.Logger, o.ShutdownGrace, o.Ready = "127.0.0.1:0", testLogger(t), 5*time.Second, func(i ReadyInfo) { ready <- i }
	go func() {
		n.done <- Run(ctx, o)
	}()
	select {
	case n.info = <-ready:
	case err := <-n.done:
		cancel()
		t.Fatalf("notifier stopped before it was ready: %v", err)
	case <-time.After(testTimeout):
		cancel()
		t.Fatal("notifier not ready")
	}
	t.Cleanup(n.stop)
	return n
}

func (n *notifier) stop() {
	n.cancel()
	<-n.done
	n.done <- nil // stop is idempotent
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m
}

// fixedClock always reads sampleTime.
type fixedClock struct{}

func (fixedClock) Now() time.Time { return sampleTime }
