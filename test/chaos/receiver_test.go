package chaos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
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
	// notices are reminders and resolved notices (any channel); grouped
	// the events of the grouped channel, one receipt per event of each
	// message (WebhookID set to the event id), and groupIDs the webhook-ids
	// of its messages with when each came.
	notices  []notice
	grouped  []oracle.Receipt
	groupIDs map[string][]time.Time
	released int // warnings held by a silence, then sent
}

// notice is a follow-up the notifier sent from an open alert.
type notice struct {
	channel, webhookID, kind, thread, eventID string
	at                                        time.Time
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
	r := &receiver{key: key, url: "http://" + ln.Addr().String(), brokenIDs: map[string]int{}, groupIDs: map[string][]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.hook)
	mux.HandleFunc("POST /grouped", r.groupedHook)
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
	body, id, err := r.verifyBody(req)
	if err != nil {
		return nil, id, err
	}
	ev, err := events.Decode(body)
	if err != nil {
		return nil, id, err
	}
	return ev, id, nil
}

// verifyBody checks the Standard Webhooks headers and signature and
// returns the body.
func (r *receiver) verifyBody(req *http.Request) ([]byte, string, error) {
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
	return body, id, nil
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
	if r.noticeLocked(hookChannel, req, id, ev.ID) {
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.receipts = append(r.receipts, oracle.Receipt{EventID: ev.ID, WebhookID: id, At: time.Now(), Attempt: req.Header.Get("X-Pcwatch-Attempt")})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// noticeLocked records a reminder or resolved notice (they have ids of
// their own; a warning held by a silence keeps its event id and counts as
// the event's delivery). r.mu is held.
func (r *receiver) noticeLocked(channel string, req *http.Request, id, eventID string) bool {
	kind := req.Header.Get("X-Pcwatch-Notice")
	if kind == "released" || kind == "override" {
		r.released++
	}
	if kind != "reminder" && kind != "resolved" {
		return false
	}
	r.notices = append(r.notices, notice{channel: channel, webhookID: id, kind: kind, thread: req.Header.Get("X-Pcwatch-Thread-Id"), eventID: eventID, at: time.Now()})
	return true
}

// groupedHook accepts the grouped channel's messages: CloudEvents JSON
// batches, and single events (a warning released by a silence, a notice).
func (r *receiver) groupedHook(w http.ResponseWriter, req *http.Request) {
	body, id, err := r.verifyBody(req)
	if err != nil {
		r.problem("grouped delivery %s refused: %v", id, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	now := time.Now()
	if req.Header.Get("Content-Type") != "application/cloudevents-batch+json" {
		ev, err := events.Decode(body)
		if err != nil {
			r.problem("grouped delivery %s: %v", id, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		if !r.noticeLocked(groupChan, req, id, ev.ID) {
			r.grouped = append(r.grouped, oracle.Receipt{EventID: ev.ID, WebhookID: id, At: now, Attempt: req.Header.Get("X-Pcwatch-Attempt")})
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(body, &batch); err != nil || len(batch) == 0 {
		r.problem("grouped delivery %s: not a CloudEvents batch: %v", id, err)
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	if n := req.Header.Get("X-Pcwatch-Group-Size"); n != strconv.Itoa(len(batch)) {
		r.problem("grouped delivery %s: X-Pcwatch-Group-Size %q for %d events", id, n, len(batch))
	}
	var customer string
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groupIDs[id] = append(r.groupIDs[id], now)
	for i, raw := range batch {
		ev, err := events.Decode(raw)
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("grouped delivery %s, event %d: %v", id, i, err))
			continue
		}
		d, _ := ev.DecodeData()
		c := ""
		if d != nil {
			c = d.CustomerID
		}
		if i == 0 {
			customer = c
		} else if c != customer {
			r.problems = append(r.problems, fmt.Sprintf("grouped delivery %s mixes customers %q and %q (group_by: [customer])", id, customer, c))
		}
		// The message's id is the group's; each event counts as delivered
		// under its own id.
		r.grouped = append(r.grouped, oracle.Receipt{EventID: ev.ID, WebhookID: ev.ID, At: now, Attempt: req.Header.Get("X-Pcwatch-Attempt")})
	}
	w.WriteHeader(http.StatusNoContent)
}

// followUps returns what the grouped channel and the notices recorded.
func (r *receiver) followUps() (grouped []oracle.Receipt, groupIDs map[string][]time.Time, notices []notice, released int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	released = r.released
	ids := map[string][]time.Time{}
	for k, v := range r.groupIDs {
		ids[k] = append([]time.Time(nil), v...)
	}
	return append([]oracle.Receipt(nil), r.grouped...), ids, append([]notice(nil), r.notices...), released
}

// checkOnce says which ids came more than once with no notifier kill
// between two arrivals (the at-least-once window).
func checkOnce(what string, arrivals map[string][]time.Time, kills []time.Time) []string {
	var problems []string
	for id, ts := range arrivals {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			k := sort.Search(len(kills), func(j int) bool { return kills[j].Add(killSlack).After(ts[i-1]) })
			if k == len(kills) || !kills[k].Before(ts[i]) {
				problems = append(problems, fmt.Sprintf("delivery: %s %s received twice (%s, %s) with no notifier kill in between",
					what, id, ts[i-1].Format("15:04:05.000"), ts[i].Format("15:04:05.000")))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// checkNotices: each reminder or resolved notice came once (or again only
// across a notifier kill), follows up a deadline warning that channel
// received, and reminders only come where a route repeats.
func checkNotices(notices []notice, hook, grouped []oracle.Receipt, stream []oracle.Event, kills []time.Time) []string {
	got := map[string]map[string]bool{hookChannel: {}, groupChan: {}}
	for _, r := range hook {
		got[hookChannel][r.EventID] = true
	}
	for _, r := range grouped {
		got[groupChan][r.EventID] = true
	}
	typ := map[string]string{}
	for _, e := range stream {
		typ[e.ID] = e.Short()
	}
	arrivals := map[string][]time.Time{}
	var problems []string
	for _, n := range notices {
		arrivals[n.channel+" "+n.webhookID] = append(arrivals[n.channel+" "+n.webhookID], n.at)
		switch {
		case n.thread == "" || n.thread != n.eventID:
			problems = append(problems, fmt.Sprintf("delivery: %s notice %s on %s: thread %q is not the warning %s in its body", n.kind, n.webhookID, n.channel, n.thread, n.eventID))
		case !slices.Contains(warningTypes, typ[n.thread]):
			problems = append(problems, fmt.Sprintf("delivery: %s notice %s on %s follows up %s, a %q, not a deadline warning", n.kind, n.webhookID, n.channel, n.thread, typ[n.thread]))
		case !got[n.channel][n.thread]:
			problems = append(problems, fmt.Sprintf("delivery: %s notice %s on %s follows up %s, which that channel never received", n.kind, n.webhookID, n.channel, n.thread))
		case n.kind == "reminder" && n.channel != hookChannel:
			problems = append(problems, fmt.Sprintf("delivery: reminder %s on %s, whose route does not repeat", n.webhookID, n.channel))
		}
	}
	return append(problems, checkOnce("notice", arrivals, kills)...)
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
