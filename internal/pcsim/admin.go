package pcsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MutateRequest is the body of POST /admin/mutate: Op names an explicit
// operation (case-insensitive) and the other fields are its arguments:
//
//	increaseSeats, decreaseSeats      customerId, subscriptionId, n
//	setAutoRenew, setAttentionNeeded  customerId, subscriptionId, enabled
//	suspend, reactivate, cancel,
//	removeSubscription,
//	clearScheduledNextTerm            customerId, subscriptionId
//	purchase                          customerId, purchase
//	rename                            customerId, subscriptionId, friendlyName
//	scheduleNextTerm                  customerId, subscriptionId, instructions
//	addCustomer                       (none)
//	removeCustomer                    customerId
//	addManagedService,
//	removeManagedService              customerId, serviceId
//	setUnknownField                   customerId, subscriptionId, field, value (JSON; absent removes)
type MutateRequest struct {
	Op             string          `json:"op"`
	CustomerID     string          `json:"customerId,omitempty"`
	SubscriptionID string          `json:"subscriptionId,omitempty"`
	N              int             `json:"n,omitempty"`
	Enabled        *bool           `json:"enabled,omitempty"`
	FriendlyName   string          `json:"friendlyName,omitempty"`
	Purchase       *PurchaseSpec   `json:"purchase,omitempty"`
	Instructions   *NextTerm       `json:"instructions,omitempty"`
	ServiceID      string          `json:"serviceId,omitempty"`
	Field          string          `json:"field,omitempty"`
	Value          json.RawMessage `json:"value,omitempty"`
}

// MutateResponse is the answer of POST /admin/mutate and /admin/random.
type MutateResponse struct {
	ID        string     `json:"id,omitempty"` // the new subscription's or customer's id
	Mutations []Mutation `json:"mutations"`
}

// adminError is the body of a failed admin request.
type adminError struct {
	Error string `json:"error"`
	Code  int    `json:"code,omitempty"` // Partner Center code of a refused operation
}

// Mutate performs the operation a MutateRequest names and returns the
// mutations it logged (Cause "explicit"). Unknown operations and missing
// arguments fail with ErrInvalid.
func (s *Sim) Mutate(req MutateRequest) (MutateResponse, error) {
	var id string
	need := func(ok bool, what string) error {
		if !ok {
			return invalid("op %s needs %s", req.Op, what)
		}
		return nil
	}
	op := strings.ToLower(req.Op)
	muts, err := s.run(CauseExplicit, func(now time.Time) error {
		c, sub := req.CustomerID, req.SubscriptionID
		subArgs := func() error { return need(c != "" && sub != "", "customerId and subscriptionId") }
		switch op {
		case "increaseseats", "decreaseseats":
			if err := subArgs(); err != nil {
				return err
			}
			if op == "increaseseats" {
				return s.increaseSeats(now, c, sub, req.N)
			}
			return s.decreaseSeats(now, c, sub, req.N)
		case "setautorenew", "setattentionneeded":
			if err := subArgs(); err != nil {
				return err
			}
			if err := need(req.Enabled != nil, "enabled"); err != nil {
				return err
			}
			if op == "setautorenew" {
				return s.setAutoRenew(now, c, sub, *req.Enabled)
			}
			return s.setAttention(now, c, sub, *req.Enabled)
		case "suspend", "reactivate", "cancel", "removesubscription", "clearschedulednextterm":
			if err := subArgs(); err != nil {
				return err
			}
			switch op {
			case "suspend":
				return s.suspend(now, c, sub)
			case "reactivate":
				return s.reactivate(now, c, sub)
			case "cancel":
				return s.cancel(now, c, sub)
			case "clearschedulednextterm":
				return s.clearScheduled(now, c, sub)
			}
			x, err := s.findSub(c, sub)
			if err != nil {
				return err
			}
			s.removeSub(x, now)
			return nil
		case "purchase":
			if err := need(c != "", "customerId"); err != nil {
				return err
			}
			spec := PurchaseSpec{}
			if req.Purchase != nil {
				spec = *req.Purchase
			}
			var err error
			id, err = s.purchase(now, c, spec)
			return err
		case "rename":
			if err := subArgs(); err != nil {
				return err
			}
			return s.rename(now, c, sub, req.FriendlyName)
		case "schedulenextterm":
			if err := subArgs(); err != nil {
				return err
			}
			if err := need(req.Instructions != nil, "instructions"); err != nil {
				return err
			}
			return s.scheduleNextTerm(now, c, sub, *req.Instructions)
		case "addcustomer":
			id = s.addCustomer(now)
			return nil
		case "removecustomer":
			if err := need(c != "", "customerId"); err != nil {
				return err
			}
			return s.removeCustomer(now, c)
		case "addmanagedservice", "removemanagedservice":
			if err := need(c != "" && req.ServiceID != "", "customerId and serviceId"); err != nil {
				return err
			}
			if op == "addmanagedservice" {
				return s.addService(now, c, req.ServiceID)
			}
			return s.removeService(now, c, req.ServiceID)
		case "setunknownfield":
			if err := subArgs(); err != nil {
				return err
			}
			if err := need(req.Field != "", "field"); err != nil {
				return err
			}
			return s.setUnknownField(now, c, sub, req.Field, string(req.Value))
		}
		return invalid("unknown op %q (want increaseSeats, decreaseSeats, setAutoRenew, suspend, reactivate, cancel, purchase, rename, scheduleNextTerm, clearScheduledNextTerm, setAttentionNeeded, removeSubscription, addCustomer, removeCustomer, addManagedService, removeManagedService or setUnknownField)", req.Op)
	})
	if muts == nil {
		muts = []Mutation{}
	}
	return MutateResponse{ID: id, Mutations: muts}, err
}

// serveAdmin serves the admin API described in the package doc.
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	path := strings.ToLower(strings.TrimSuffix(r.URL.Path, "/"))
	method := r.Method
	switch {
	case path == "/admin/state" && method == http.MethodGet:
		if r.URL.Query().Get("json") != "" {
			adminJSON(w, http.StatusOK, s.StateWithJSON())
			return
		}
		adminJSON(w, http.StatusOK, s.State())
	case path == "/admin/mutations" && method == http.MethodGet:
		var since uint64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				adminFail(w, http.StatusBadRequest, fmt.Errorf("since must be a mutation sequence number: %w", err))
				return
			}
			since = n
		}
		adminJSON(w, http.StatusOK, s.Log(since))
	case path == "/admin/mutate" && method == http.MethodPost:
		var req MutateRequest
		if !decodeAdmin(w, r, &req) {
			return
		}
		res, err := s.Mutate(req)
		if err != nil {
			adminFail(w, 0, err)
			return
		}
		adminJSON(w, http.StatusOK, res)
	case path == "/admin/random" && method == http.MethodPost:
		var req struct {
			N int `json:"n"`
		}
		if !decodeAdmin(w, r, &req) {
			return
		}
		if req.N < 0 || req.N > 100000 {
			adminFail(w, http.StatusBadRequest, fmt.Errorf("n must be between 0 and 100000, got %d", req.N))
			return
		}
		adminJSON(w, http.StatusOK, MutateResponse{Mutations: s.RandomMutations(req.N)})
	case path == "/admin/faults" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.CurrentFaults())
	case path == "/admin/faults" && method == http.MethodPost:
		var f Faults
		if !decodeAdmin(w, r, &f) {
			return
		}
		s.SetFaults(f)
		adminJSON(w, http.StatusOK, s.CurrentFaults())
	case path == "/admin/hostile" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.CurrentHostile())
	case path == "/admin/hostile" && method == http.MethodPost:
		var hc Hostile
		if !decodeAdmin(w, r, &hc) {
			return
		}
		if err := s.SetHostile(hc); err != nil {
			adminFail(w, http.StatusBadRequest, err)
			return
		}
		adminJSON(w, http.StatusOK, s.CurrentHostile())
	case path == "/admin/audit" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.AuditStatus())
	case path == "/admin/audit" && method == http.MethodPost:
		var c AuditConfig
		if !decodeAdmin(w, r, &c) {
			return
		}
		if err := s.SetAudit(c); err != nil {
			adminFail(w, http.StatusBadRequest, err)
			return
		}
		adminJSON(w, http.StatusOK, s.AuditStatus())
	case path == "/admin/audit/records" && method == http.MethodGet:
		var since uint64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				adminFail(w, http.StatusBadRequest, fmt.Errorf("since must be an audit record sequence number: %w", err))
				return
			}
			since = n
		}
		adminJSON(w, http.StatusOK, s.AuditLog(since))
	case path == "/admin/audit/records" && method == http.MethodDelete:
		s.ClearAudit()
		w.WriteHeader(http.StatusNoContent)
	case path == "/admin/webhooks" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.WebhookStatus())
	case path == "/admin/webhooks" && method == http.MethodPost:
		var c WebhookConfig
		if !decodeAdmin(w, r, &c) {
			return
		}
		if err := s.SetWebhooks(c); err != nil {
			adminFail(w, http.StatusBadRequest, err)
			return
		}
		adminJSON(w, http.StatusOK, s.WebhookStatus())
	case path == "/admin/webhooks/deliveries" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.WebhookLog())
	case path == "/admin/offorigin" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.CurrentOffOriginStats())
	case path == "/admin/offorigin" && method == http.MethodDelete:
		s.ResetOffOriginStats()
		w.WriteHeader(http.StatusNoContent)
	case path == "/admin/inject" && method == http.MethodPost:
		var rule Rule
		if !decodeAdmin(w, r, &rule) {
			return
		}
		if rule.Status != 0 && (rule.Status < 100 || rule.Status > 599) {
			adminFail(w, http.StatusBadRequest, fmt.Errorf("status %d is not an HTTP status", rule.Status))
			return
		}
		s.Inject(rule)
		adminJSON(w, http.StatusOK, rule)
	case path == "/admin/inject" && method == http.MethodDelete:
		s.ClearInjected()
		w.WriteHeader(http.StatusNoContent)
	case path == "/admin/stats" && method == http.MethodGet:
		adminJSON(w, http.StatusOK, s.Stats())
	case path == "/admin/stats" && method == http.MethodDelete:
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	case path == "/admin/freeze" && method == http.MethodPost:
		at := s.Freeze()
		adminJSON(w, http.StatusOK, map[string]any{"frozenAt": at})
	case path == "/admin/advance" && method == http.MethodPost:
		var req struct {
			Duration jsonDuration `json:"duration"`
		}
		if !decodeAdmin(w, r, &req) {
			return
		}
		if req.Duration < 0 {
			adminFail(w, http.StatusBadRequest, errors.New("duration must not be negative"))
			return
		}
		muts, err := s.AdvanceClock(time.Duration(req.Duration))
		if err != nil {
			adminFail(w, http.StatusConflict, err)
			return
		}
		if muts == nil {
			muts = []Mutation{}
		}
		adminJSON(w, http.StatusOK, struct {
			Now       time.Time  `json:"now"`
			Mutations []Mutation `json:"mutations"`
		}{s.Now(), muts})
	default:
		for _, p := range []string{"/admin/state", "/admin/mutations", "/admin/mutate", "/admin/random", "/admin/faults", "/admin/inject", "/admin/stats", "/admin/advance", "/admin/freeze", "/admin/hostile", "/admin/offorigin", "/admin/audit", "/admin/audit/records", "/admin/webhooks", "/admin/webhooks/deliveries"} {
			if path == p {
				adminFail(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s is not allowed on %s", method, r.URL.Path))
				return
			}
		}
		adminFail(w, http.StatusNotFound, fmt.Errorf("no admin endpoint %s", r.URL.Path))
	}
}

// decodeAdmin reads a JSON body strictly; on failure it answers 400.
func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = strictUnmarshal(body, v)
	}
	if err != nil {
		adminFail(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b := newJSONBuf()
	b.value(v)
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// adminFail answers err; status 0 derives it from the error.
func adminFail(w http.ResponseWriter, status int, err error) {
	body := adminError{Error: err.Error()}
	var re *RuleError
	if errors.As(err, &re) {
		body.Code = re.Code
	}
	if status == 0 {
		switch {
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrNotAllowed):
			status = http.StatusConflict
		default:
			status = http.StatusBadRequest
		}
	}
	adminJSON(w, status, body)
}
