package pcsim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

const (
	// DefaultPageSize and MaxPageSize bound GET /v1/customers?size=.
	DefaultPageSize = 500
	MaxPageSize     = 500

	contentTypeJSON = "application/json; charset=utf-8"
)

// Handler returns the simulator as an http.Handler (the *Sim is one too).
func (s *Sim) Handler() http.Handler { return s }

// ServeHTTP serves the /v1 API and, under /admin/, the admin API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/admin" || hasPrefixFold(r.URL.Path, "/admin/") {
		s.serveAdmin(w, r)
		return
	}
	if hasPrefixFold(r.URL.Path, "/webhooks/") {
		s.serveWebhooks(w, r)
		return
	}
	s.serveAPI(w, r)
}

// route is a parsed /v1 path.
type route struct {
	endpoint string // customers, customer, subscriptions, subscription, managedservices, products, auditrecords, unknown
	customer string
	sub      string
}

func parseRoute(path string) route {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) == 2 && strings.EqualFold(segs[0], "v1") && strings.EqualFold(segs[1], EndpointAuditRecords) {
		return route{endpoint: EndpointAuditRecords}
	}
	if len(segs) < 2 || !strings.EqualFold(segs[0], "v1") || !strings.EqualFold(segs[1], "customers") {
		return route{endpoint: "unknown"}
	}
	switch {
	case len(segs) == 2:
		return route{endpoint: "customers"}
	case len(segs) == 3 && segs[2] != "":
		return route{endpoint: "customer", customer: segs[2]}
	case len(segs) == 4 && strings.EqualFold(segs[3], "subscriptions"):
		return route{endpoint: "subscriptions", customer: segs[2]}
	case len(segs) == 4 && strings.EqualFold(segs[3], "managedservices"):
		return route{endpoint: "managedservices", customer: segs[2]}
	case len(segs) == 4 && strings.EqualFold(segs[3], "products"):
		return route{endpoint: "products", customer: segs[2]}
	case len(segs) == 5 && strings.EqualFold(segs[3], "subscriptions") && segs[4] != "":
		return route{endpoint: "subscription", customer: segs[2], sub: segs[4]}
	}
	return route{endpoint: "unknown"}
}

// newRequestID makes an MS-RequestId for a request that sent none.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.URL.Path)
	h := w.Header()
	reqID := r.Header.Get("MS-RequestId")
	if reqID == "" {
		reqID = newRequestID()
	}
	h.Set("Content-Type", contentTypeJSON)
	h.Set("MS-RequestId", reqID)
	if c := r.Header.Get("MS-CorrelationId"); c != "" {
		h.Set("MS-CorrelationId", c)
	}
	h.Set("Date", s.Now().Format(http.TimeFormat))

	if r.Method != http.MethodGet {
		h.Set("Allow", http.MethodGet)
		s.write(w, rt.endpoint, http.StatusMethodNotAllowed, errorBody(http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'."))
		return
	}

	page := -1
	if rt.endpoint == "customers" {
		page = 0
		if strings.EqualFold(r.URL.Query().Get("seekOperation"), "Next") {
			if _, p, _, ok := s.decodeTokenV(r.Header.Get("MS-ContinuationToken")); ok {
				page = p
			}
		}
	}
	p := s.plan(r.URL.Path, page)
	if p.latency > 0 {
		if err := s.sleep(r.Context(), p.latency); err != nil {
			s.count(rt.endpoint, "canceled")
			return
		}
	}
	switch {
	case p.reset:
		s.count(rt.endpoint, "reset")
		resetConn(w)
		return
	case p.status != 0:
		if p.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(p.retryAfter))
		}
		s.write(w, rt.endpoint, p.status, p.body)
		return
	}

	hp := s.planHostile(rt, r, page)
	if hp.status != 0 {
		if hp.location != "" {
			h.Set("Location", hp.location)
		}
		if hp.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(hp.retryAfter))
		}
		s.write(w, rt.endpoint, hp.status, hp.body)
		return
	}

	if !s.authorized(r) {
		h.Set("WWW-Authenticate", "Bearer")
		s.write(w, rt.endpoint, http.StatusUnauthorized, errorBody(http.StatusUnauthorized, "Authorization has been denied for this request: a valid bearer token is required."))
		return
	}

	status, body := s.respond(rt, r, &hp)
	if status == http.StatusOK && hp.shape != "" {
		s.noteFault("hostile-malformed")
		body = shapeBody(hp.shape, body)
	}
	if status == http.StatusOK && p.malformed {
		s.noteFault("malformed")
		body = corrupt(body)
	}
	if status == http.StatusOK && p.truncate {
		s.noteFault("truncate")
		s.count(rt.endpoint, "truncated")
		truncate(w, body)
		return
	}
	if status == http.StatusOK && hp.slow != nil {
		s.serveSlow(w, r, rt.endpoint, body, hp.slow)
		return
	}
	s.write(w, rt.endpoint, status, body)
}

func (s *Sim) noteFault(kind string) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.countFault(kind)
}

func (s *Sim) write(w http.ResponseWriter, endpoint string, status int, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	s.count(endpoint, strconv.Itoa(status))
}

// truncate announces the full Content-Length, writes half the body and
// closes the connection.
func truncate(w http.ResponseWriter, body []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// Without a hijackable connection the server closes it itself when
		// the handler returns short of Content-Length.
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		return
	}
	h := w.Header().Clone()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(buf)
	_, _ = buf.WriteString("\r\n")
	_, _ = buf.Write(body[:len(body)/2])
	_ = buf.Flush()
}

// resetConn closes the connection without a response (an RST on TCP).
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *Sim) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return false
	}
	if s.opts.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.opts.Token)) == 1
}

// respond renders the response to an authorised GET, under the lock,
// after the hostile plan's oversized changes.
func (s *Sim) respond(rt route, r *http.Request, hp *hostilePlan) (int, []byte) {
	now := s.lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	b := newJSONBuf()
	switch rt.endpoint {
	case "customers":
		return s.listCustomers(b, r, hp)
	case EndpointAuditRecords:
		return s.listAudit(b, r, now, hp)
	case "unknown":
		return http.StatusNotFound, errorBody(http.StatusNotFound, "No HTTP resource was found that matches the request URI '"+r.URL.Path+"'.")
	}
	c := s.byID[strings.ToLower(rt.customer)]
	if c == nil {
		return http.StatusNotFound, errorBody(600026, "Customer "+rt.customer+" not found.")
	}
	s.applyOversized(now, c, hp.oversized)
	switch rt.endpoint {
	case "customer":
		b.value(c.wire())
	case "subscriptions":
		mpn, filter := q.Get("mpn_id"), q.Has("mpn_id")
		var items []*subscription
		for _, sub := range c.subs {
			if !filter || sub.partnerID == mpn {
				items = append(items, sub)
			}
		}
		self := "/customers/" + c.id + "/subscriptions"
		if filter {
			self += "?mpn_id=" + mpn
		}
		b.collection(len(items), func(i int) { b.sub(items[i].wire(s.opts.IncludeRefundableInList)) },
			wireCollectionLinks{Self: getLink(self)})
	case "subscription":
		_, sub := c.findSub(rt.sub)
		if sub == nil {
			return http.StatusNotFound, errorBody(20003, "Subscription "+rt.sub+" was not found for customer "+c.id+".")
		}
		b.sub(sub.wire(true))
	case "managedservices":
		b.collection(len(c.services), func(i int) { b.value(c.wireService(c.services[i])) },
			wireCollectionLinks{Self: getLink("/customers/" + c.id + "/managedservices")})
	case "products":
		view := q.Get("targetView")
		if view == "" {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "The targetView query parameter is required.")
		}
		key := strings.ToLower(view)
		if key == forbiddenView {
			return http.StatusForbidden, errorBody(400036, "Access to the requested targetView is not allowed.")
		}
		prods, ok := productViews[key]
		if !ok {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "The targetView '"+view+"' is not valid.")
		}
		b.collection(len(prods), func(i int) { b.value(prods[i].wire()) },
			wireCollectionLinks{Self: getLink("/customers/" + c.id + "/products?targetView=" + view)})
	}
	return http.StatusOK, b.Bytes()
}

func (p product) wire() wireProduct {
	return wireProduct{ID: p.id, Title: p.title, Description: p.description, ProductType: p.productType,
		IsMicrosoftProduct: p.microsoft, PublisherName: p.publisher,
		Links: wireProductLinks{Skus: getLink("/products/" + p.id + "/skus?country=US"), Self: getLink("/products/" + p.id + "?country=US")}}
}

// listCustomers serves one page of the keyset-paged customer listing, as
// the hostile plan's endless paging and duplicate customer change it. Lock
// held.
func (s *Sim) listCustomers(b *jsonBuf, r *http.Request, hp *hostilePlan) (int, []byte) {
	q := r.URL.Query()
	size := DefaultPageSize
	if v := q.Get("size"); v != "" || q.Has("size") {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "The size parameter must be a positive integer (at most 500), got '"+v+"'.")
		}
		size = min(n, MaxPageSize)
	}
	ver, page, after := byte(tokenPage), 0, ""
	if seek := q.Get("seekOperation"); seek != "" {
		if !strings.EqualFold(seek, "Next") {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "seekOperation '"+seek+"' is not supported; use Next.")
		}
		tok := r.Header.Get("MS-ContinuationToken")
		if tok == "" {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "seekOperation=Next requires the MS-ContinuationToken header.")
		}
		var ok bool
		if ver, page, after, ok = s.decodeTokenV(tok); !ok {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "The continuation token is invalid.")
		}
	}
	sizeQ := "/v1/customers?size=" + strconv.Itoa(size)
	links := wireCollectionLinks{Self: getLink(sizeQ)}
	next := func(ver byte, page int, after string) *wireLink {
		return &wireLink{URI: sizeQ + "&seekOperation=Next", Method: "GET",
			Headers: []wireHeader{{Key: "MS-ContinuationToken", Value: s.encodeTokenV(ver, page, after)}}}
	}
	if ver == tokenEndless {
		e := hp.endless
		if e == nil {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, "The continuation token has expired.")
		}
		s.noteFault("hostile-endless-page")
		links.Next = next(tokenEndless, page+1, after)
		if e.Mode == EndlessNewIDs {
			n := e.PageSize
			if n == 0 {
				n = DefaultEndlessPageSize
			}
			n = min(n, size)
			b.collection(n, func(i int) { b.value(s.endlessCustomer(page, i)) }, links)
			return http.StatusOK, b.Bytes()
		}
		start := sort.Search(len(s.custs), func(i int) bool { return s.custs[i].id > after })
		items := s.custs[start:min(start+size, len(s.custs))]
		b.collection(len(items), func(i int) { b.value(items[i].wire()) }, links)
		return http.StatusOK, b.Bytes()
	}
	start := sort.Search(len(s.custs), func(i int) bool { return s.custs[i].id > after })
	end := min(start+size, len(s.custs))
	items := s.custs[start:end]
	if end < len(s.custs) {
		links.Next = next(tokenPage, page+1, items[len(items)-1].id)
	}
	if e := hp.endless; e != nil && (page+1 >= max(e.FromPage, 1) || links.Next == nil) {
		// The page before the endless ones: its continuation leads there,
		// carrying this page's cursor for EndlessRepeat.
		links.Next = next(tokenEndless, page+1, after)
	}
	wires := make([]*wireCustomer, len(items), len(items)+1)
	for i, c := range items {
		wires[i] = c.wire()
	}
	if d := hp.dup; d != nil && links.Next == nil {
		var c *customer
		if d.Customer == "" && len(s.custs) > 0 {
			c = s.custs[0]
		} else if d.Customer != "" {
			c = s.byID[strings.ToLower(d.Customer)]
		}
		if c != nil {
			s.noteFault("hostile-duplicate-customer")
			w := c.wire()
			if d.Different {
				w.CompanyProfile.CompanyName += " (listed twice)"
			}
			wires = append(wires, w)
		}
	}
	b.collection(len(wires), func(i int) { b.value(wires[i]) }, links)
	return http.StatusOK, b.Bytes()
}

// Continuation token versions: a page of the real listing, or an endless
// page of the hostile mode.
const (
	tokenPage    = 1
	tokenEndless = 2
)

// Continuation tokens carry (version, page index, a customer id cursor)
// and an HMAC keyed by the seed, so forged or altered tokens are refused.
// A real page's cursor is the last customer id returned; an endless page's
// is the cursor of the page EndlessRepeat repeats.
func (s *Sim) encodeTokenV(ver byte, page int, after string) string {
	payload := binary.AppendUvarint([]byte{ver}, uint64(page))
	payload = append(payload, after...)
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(payload)
	return base64.RawURLEncoding.EncodeToString(m.Sum(payload)[:len(payload)+16])
}

func (s *Sim) decodeTokenV(tok string) (ver byte, page int, after string, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 18 || (raw[0] != tokenPage && raw[0] != tokenEndless) {
		return 0, 0, "", false
	}
	payload, sum := raw[:len(raw)-16], raw[len(raw)-16:]
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(payload)
	if !hmac.Equal(m.Sum(nil)[:16], sum) {
		return 0, 0, "", false
	}
	p, n := binary.Uvarint(payload[1:])
	if n <= 0 || p > 1<<30 {
		return 0, 0, "", false
	}
	return raw[0], int(p), string(payload[1+n:]), true
}
