package chaos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/oracle"
)

// receiver is the webhook receiver of the test: /hook accepts (or, while
// down, answers 503 with Retry-After) and records every delivery; /broken
// always answers 400, so the notifier dead-letters what is routed there.
// Both verify the Standard Webhooks signature independently of the
// notifier's code.
type receiver struct {
	key []byte
	srv *http.Server
	url string

	mu        sync.Mutex
	down      bool
	receipts  []oracle.Receipt
	refused   int // 503s while down
	broken    int // requests to /broken
	brokenIDs map[string]int
	problems  []string
}

// newReceiver listens on 127.0.0.1 with the signing secret's key.
func newReceiver(secret string) (*receiver, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{key: key, url: "http://" + ln.Addr().String(), brokenIDs: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.hook)
	mux.HandleFunc("POST /broken", r.brokenHook)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) close() { r.srv.Close() }

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *receiver) problem(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) < 50 {
		r.problems = append(r.problems, fmt.Sprintf(format, a...))
	}
}

// verify checks the Standard Webhooks headers and signature and returns
// the event in the body.
func (r *receiver) verify(req *http.Request) (*events.Event, string, error) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	if err != nil {
		return nil, "", err
	}
	id, ts, sigs := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return nil, id, fmt.Errorf("missing Standard Webhooks headers (id %q, timestamp %q, signature %q)", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, id, fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return nil, id, fmt.Errorf("webhook-timestamp %s is %s away from now", ts, d)
	}
	mac := hmac.New(sha256.New, r.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, s := range strings.Fields(sigs) {
		v, sig, found := strings.Cut(s, ",")
		if !found || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return nil, id, fmt.Errorf("webhook-signature %q does not verify", sigs)
	}
	ev, err := events.Decode(body)
	if err != nil {
		return nil, id, err
	}
	return ev, id, nil
}

func (r *receiver) hook(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	down := r.down
	if down {
		r.refused++
	}
	r.mu.Unlock()
	if down {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "receiver down for maintenance (chaos)", http.StatusServiceUnavailable)
		return
	}
	ev, id, err := r.verify(req)
	if err != nil {
		r.problem("webhook delivery %s refused: %v", id, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	r.receipts = append(r.receipts, oracle.Receipt{EventID: ev.ID, WebhookID: id, At: time.Now(), Attempt: req.Header.Get("X-Pcwatch-Attempt")})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) brokenHook(w http.ResponseWriter, req *http.Request) {
	ev, id, err := r.verify(req)
	if err != nil {
		r.problem("broken-channel delivery %s: %v", id, err)
	} else {
		r.mu.Lock()
		r.broken++
		r.brokenIDs[ev.ID]++
		r.mu.Unlock()
	}
	http.Error(w, `{"error":"this receiver is broken on purpose"}`, http.StatusBadRequest)
}

// snapshot returns what the receiver recorded.
func (r *receiver) snapshot() (receipts []oracle.Receipt, refused, broken int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]oracle.Receipt(nil), r.receipts...), r.refused, r.broken, append([]string(nil), r.problems...)
}
