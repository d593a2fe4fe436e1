package partnercenter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The activity log (audit records): GET /v1/auditrecords. Partner Center
// documents it in "Get a record of Partner Center activity" and "Auditing
// resources"; its throttling guidance recommends it over rescanning
// collections to detect changes. What this file relies on:
//
//   - startDate and endDate are days (yyyy-mm-dd); the range is inclusive,
//     at most 30 days wide, and data is kept for 90 days: a startDate more
//     than 90 days back is answered 400. An omitted startDate means 30 days
//     back, an omitted endDate the widest window that ends today at most.
//   - filter is one {"Field","Value","Operator"} JSON object, URL-encoded:
//     CompanyName with substring, CustomerId or ResourceType with equals.
//   - The answer is a seek-based collection: items, a continuationToken
//     while more pages follow, and links.next whose headers carry the token
//     back as MS-ContinuationToken (as the customers listing does).
//   - Records are newest first. resourceOldValue and resourceNewValue are
//     JSON documents inside strings; customizedData is a list of
//     {key, value} whose keys depend on the operation (documented values
//     may be null).

// Audit query limits documented by Partner Center.
const (
	// AuditMaxWindowDays is the widest [startDate, endDate] range one
	// query may ask for (endDate - startDate, in days).
	AuditMaxWindowDays = 30
	// AuditRetentionDays is how far back the activity log reaches: a
	// startDate older than that is refused with 400.
	AuditRetentionDays = 90
	// DefaultAuditPageSize is the page size sent when AuditQuery.Size is
	// not set: the documented default, and the largest size.
	DefaultAuditPageSize = 500
)

// Audit filter fields and operators, as the documentation spells them.
const (
	AuditFieldCompanyName  = "CompanyName"
	AuditFieldCustomerID   = "CustomerId"
	AuditFieldResourceType = "ResourceType"

	AuditOperatorEquals    = "equals"
	AuditOperatorSubstring = "substring"
)

// Documented operation types (AuditRecord.OperationType) that name a change
// to what pcwatch watches. AuditOperationTypes lists every documented one.
const (
	AuditOpAddCustomer                       = "add_customer"
	AuditOpUpdateCustomerBillingProfile      = "update_customer_billing_profile"
	AuditOpUpdateCustomerQualification       = "update_customer_qualification"
	AuditOpRemovePartnerCustomerRelationship = "remove_partner_customer_relationship"
	AuditOpDeleteCustomer                    = "delete_customer"
	AuditOpCreateOrder                       = "create_order"
	AuditOpUpdateOrder                       = "update_order"
	AuditOpUpdateSubscription                = "update_subscription"
	AuditOpUpgradeSubscription               = "upgrade_subscription"
	AuditOpConvertTrialSubscription          = "convert_trial_subscription"
	AuditOpUpdateCustomerUserLicenses        = "update_customer_user_licenses"
)

// Documented resource types (AuditRecord.ResourceType) of the resources
// pcwatch watches. AuditResourceTypes lists every documented one.
const (
	AuditResourceCustomer                    = "customer"
	AuditResourceOrder                       = "order"
	AuditResourceSubscription                = "subscription"
	AuditResourceLicense                     = "license"
	AuditResourcePartnerCustomerRelationship = "partner_customer_relationship"
)

// AuditOperationTypes are the operation types "Auditing resources"
// documents, in its order (duplicates removed). Partner Center adds new
// ones over time: a record with another type is not malformed.
var AuditOperationTypes = []string{
	"update_customer_qualification", "update_subscription", "upgrade_subscription", "convert_trial_subscription",
	"add_customer", "update_customer_billing_profile", "update_customer_partner_contract_company_name",
	"update_customer_spending_budget", "delete_customer", "remove_partner_customer_relationship", "create_order",
	"update_order", "create_customer_user", "delete_customer_user", "update_customer_user",
	"update_customer_user_licenses", "reset_customer_user_password", "update_customer_user_principal_name",
	"restore_customer_user", "create_mpn_association", "update_mpn_association", "update_sfb_customer_user_licenses",
	"update_transfer", "create_partner_relationship", "register_application", "unregister_application",
	"add_application_credential", "remove_application_credential", "create_partner_user", "update_partner_user",
	"remove_partner_user", "create_self_serve_policy", "update_self_serve_policy", "delete_self_serve_policy",
	"remove_partner_relationship", "delete_tip_customer", "create_related_referral", "update_related_referral",
	"create_referral", "update_referral", "get_software_key", "get_software_download_link", "increase_spending_limit",
	"ready_invoice", "create_agreement", "extend_relationship", "create_transfer", "dap_admin_relationship_approved",
	"dap_admin_relationship_terminated", "add_user_member", "remove_user_member", "granular_admin_relationship_approved",
	"granular_admin_relationship_activated", "granular_admin_relationship_termination_requested",
	"granular_admin_relationship_terminated", "granular_admin_relationship_expired",
	"granular_admin_access_assignment_created", "granular_admin_access_assignment_updated",
	"granular_admin_access_assignment_deleted", "create_credit", "update_credit", "cancel_credit",
	"granular_admin_access_assignment_activated", "software_attestation", "granular_admin_relationship_cleaned_up",
	"update_company_info", "policy_created", "policy_updated", "policy_deleted", "device_updated",
	"devices_update_attempted", "device_deleted", "devices_upload_to_new_batch_attempted",
	"devices_upload_to_existing_batch_attempted", "manage_overage", "dap_admin_relationship_terminated_by_microsoft",
	"azure_fraud_event_detected",
}

// AuditResourceTypes are the resource types "Auditing resources" documents.
var AuditResourceTypes = []string{
	"customer", "customer_user", "order", "subscription", "license", "third_party_add_on", "mpn_association",
	"transfer", "application", "application_credential", "partner_user", "partner_relationship",
	"partner_customer_dap", "customer_directory_role", "referral", "software_key", "software_download_link",
	"spending_limit", "invoice", "agreement", "partner_customer_relationship", "self_serve_policy",
	"granular_admin_relationship", "granular_admin_access_assignment", "credit", "software_page", "device", "policy",
}

var knownAuditOps = func() map[string]bool {
	m := make(map[string]bool, len(AuditOperationTypes))
	for _, op := range AuditOperationTypes {
		m[op] = true
	}
	return m
}()

// KnownAuditOperationType reports whether op (compared case-insensitively)
// is one of AuditOperationTypes. Callers count the others; they are not
// errors.
func KnownAuditOperationType(op string) bool { return knownAuditOps[strings.ToLower(op)] }

// KeyValue is one entry of an audit record's customizedData. Value is the
// documented string; a null value is "" with Null set, and a value of
// another JSON type (never documented) is kept as its JSON text.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Null  bool   `json:"-"`
}

// UnmarshalJSON reads {key, value} with value a string, null, or any other
// JSON value (kept as text), so that one odd entry never fails a page.
func (kv *KeyValue) UnmarshalJSON(b []byte) error {
	var aux struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	v, null, err := textOf(aux.Value)
	if err != nil {
		return err
	}
	*kv = KeyValue{Key: aux.Key, Value: v, Null: null}
	return nil
}

// MarshalJSON writes a null value back as null.
func (kv KeyValue) MarshalJSON() ([]byte, error) {
	if kv.Null && kv.Value == "" {
		return json.Marshal(struct {
			Key   string  `json:"key"`
			Value *string `json:"value"`
		}{Key: kv.Key})
	}
	type plain struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	return json.Marshal(plain{kv.Key, kv.Value})
}

// textOf reads a JSON value as text: a string's contents, "" (null) for
// null or absent, anything else as its compact JSON text.
func textOf(raw json.RawMessage) (string, bool, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", true, nil
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, false, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", false, err
	}
	return buf.String(), false, nil
}

// AuditRecord is one entry of the activity log: an operation a partner
// user or application (or a Microsoft service, e.g. applicationId
// "FulfillmentService") performed. Only the documented shape is typed; Raw
// keeps the object as received.
type AuditRecord struct {
	// ID is present on current records; the 2017 example has none (see
	// DedupKey).
	ID           string   `json:"id,omitempty"`
	PartnerID    string   `json:"partnerId,omitempty"`
	Participants []string `json:"participants,omitempty"`
	CustomerID   string   `json:"customerId,omitempty"`
	CustomerName string   `json:"customerName,omitempty"`
	// UserPrincipalName is the user who acted (App+User); ApplicationID
	// the application (a GUID, or a name such as "Partner Center Native
	// App" or "FulfillmentService").
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	ApplicationID     string `json:"applicationId,omitempty"`
	ResourceType      string `json:"resourceType,omitempty"`
	// ResourceOldValue and ResourceNewValue are JSON documents sent as
	// strings ("" when absent); a value sent as JSON rather than as a
	// string is kept as its compact text.
	ResourceOldValue      string     `json:"resourceOldValue,omitempty"`
	ResourceNewValue      string     `json:"resourceNewValue,omitempty"`
	OperationType         string     `json:"operationType,omitempty"`
	OriginalCorrelationID string     `json:"originalCorrelationId,omitempty"`
	OperationDate         Time       `json:"operationDate"`
	OperationStatus       string     `json:"operationStatus,omitempty"` // succeeded, failed, progress (decline in the REST reference)
	CustomizedData        []KeyValue `json:"customizedData,omitempty"`
	Attributes            Attributes `json:"attributes"`

	Raw json.RawMessage `json:"-"` // the object as received
}

// UnmarshalJSON decodes the typed view and keeps a copy of the raw object.
func (r *AuditRecord) UnmarshalJSON(b []byte) error {
	type plain AuditRecord
	var aux struct {
		plain
		ResourceOldValue json.RawMessage `json:"resourceOldValue"`
		ResourceNewValue json.RawMessage `json:"resourceNewValue"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*r = AuditRecord(aux.plain)
	var err error
	if r.ResourceOldValue, _, err = textOf(aux.ResourceOldValue); err != nil {
		return err
	}
	if r.ResourceNewValue, _, err = textOf(aux.ResourceNewValue); err != nil {
		return err
	}
	r.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Data returns the value of the first customizedData entry whose key
// equals key case-insensitively.
func (r *AuditRecord) Data(key string) (string, bool) {
	for _, kv := range r.CustomizedData {
		if strings.EqualFold(kv.Key, key) {
			return kv.Value, true
		}
	}
	return "", false
}

// SubscriptionIDs returns the subscriptions the record names, in order and
// without repeats: customizedData "SubscriptionId" and the per-line-item
// "SubscriptionId-<n>" of create_order; failing those, for a subscription
// resource, the Id of resourceNewValue (or resourceOldValue).
func (r *AuditRecord) SubscriptionIDs() []string {
	var out []string
	add := func(id string) {
		id = strings.TrimSpace(id)
		if id == "" {
			return
		}
		for _, x := range out {
			if strings.EqualFold(x, id) {
				return
			}
		}
		out = append(out, id)
	}
	for _, kv := range r.CustomizedData {
		k := strings.ToLower(kv.Key)
		if k == "subscriptionid" {
			add(kv.Value)
			continue
		}
		if n, ok := strings.CutPrefix(k, "subscriptionid-"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				add(kv.Value)
			}
		}
	}
	if len(out) == 0 && strings.EqualFold(r.ResourceType, AuditResourceSubscription) {
		for _, v := range []string{r.ResourceNewValue, r.ResourceOldValue} {
			var doc struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(v), &doc) == nil && doc.ID != "" {
				add(doc.ID)
				break
			}
		}
	}
	return out
}

// DedupKey identifies the record across overlapping queries: "id:" and its
// id when it has one, else "sha256:" and the hash of its compacted JSON
// (Raw, or the typed view re-encoded when Raw is empty). Partner Center's
// day-granular dates make every tail re-read records it has seen.
func (r *AuditRecord) DedupKey() string {
	if r.ID != "" {
		return "id:" + r.ID
	}
	raw := []byte(r.Raw)
	if len(raw) == 0 {
		raw, _ = json.Marshal(r)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		raw = buf.Bytes()
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// AuditFilter is the documented filter object. Operator is
// AuditOperatorSubstring for AuditFieldCompanyName and
// AuditOperatorEquals for the other fields.
type AuditFilter struct {
	Field    string `json:"Field"`
	Value    string `json:"Value"`
	Operator string `json:"Operator"`
}

// AuditQuery selects the records of one ListAuditRecords call.
type AuditQuery struct {
	// StartDate and EndDate bound the operationDate days, both included;
	// only their UTC calendar day is sent. A zero StartDate lets Partner
	// Center default to 30 days back; a zero EndDate to the widest window
	// that ends today at most. EndDate must not be before StartDate.
	StartDate, EndDate time.Time
	// Filter narrows the records; nil sends none.
	Filter *AuditFilter
	// Size is the page size; 0 means DefaultAuditPageSize.
	Size int
}

// Path returns the request path and query of the first page.
func (q AuditQuery) Path() string {
	v := url.Values{}
	if !q.StartDate.IsZero() {
		v.Set("startDate", q.StartDate.UTC().Format(time.DateOnly))
	}
	if !q.EndDate.IsZero() {
		v.Set("endDate", q.EndDate.UTC().Format(time.DateOnly))
	}
	size := q.Size
	if size <= 0 {
		size = DefaultAuditPageSize
	}
	v.Set("size", strconv.Itoa(size))
	if q.Filter != nil {
		b, _ := json.Marshal(q.Filter) // three strings: cannot fail
		v.Set("filter", string(b))
	}
	return "/v1/auditrecords?" + v.Encode()
}

func (q AuditQuery) validate() error {
	if !q.StartDate.IsZero() && !q.EndDate.IsZero() &&
		q.EndDate.UTC().Format(time.DateOnly) < q.StartDate.UTC().Format(time.DateOnly) {
		return fmt.Errorf("audit records query: endDate %s is before startDate %s; swap them",
			q.EndDate.UTC().Format(time.DateOnly), q.StartDate.UTC().Format(time.DateOnly))
	}
	if q.Size < 0 {
		return fmt.Errorf("audit records query: size %d is negative; use 0 for the default (%d)", q.Size, DefaultAuditPageSize)
	}
	if f := q.Filter; f != nil && (f.Field == "" || f.Operator == "") {
		return fmt.Errorf("audit records query: a filter needs Field and Operator (e.g. %s %s)", AuditFieldCustomerID, AuditOperatorEquals)
	}
	return nil
}

// AuditPage is one page of audit records.
type AuditPage struct {
	// Number is the page's 1-based position in the listing.
	Number int
	// Records are the page's records, newest first as Partner Center
	// sends them.
	Records []AuditRecord
	// TotalCount is the page's totalCount as sent.
	TotalCount int
	// ContinuationToken is the token of the next page; "" on the last.
	ContinuationToken string
}

// ErrAuditPage matches the error of a listing whose page was malformed (a
// *DecodeError: not JSON, not a collection, or an item that is not an
// audit record object). Such a page is never read as "no records".
var ErrAuditPage = errors.New("partner center: malformed audit records page")

// auditPageError names the listing and the page of a failure.
type auditPageError struct {
	page  int
	query string
	err   error
}

func (e *auditPageError) Error() string {
	return fmt.Sprintf("listing audit records (%s) failed at page %d: %v", e.query, e.page, e.err)
}

func (e *auditPageError) Unwrap() error { return e.err }

func (e *auditPageError) Is(target error) bool {
	if target != ErrAuditPage {
		return false
	}
	var de *DecodeError
	return errors.As(e.err, &de)
}

// ListAuditRecords reads the activity log for q, page by page, and hands
// each page to each as soon as it is read (so memory holds one page, not
// the listing). It follows links.next and sends back its headers; a page
// that carries a continuationToken but no next link is continued with
// seekOperation=Next and the token as MS-ContinuationToken.
//
// Each page goes through the client's machinery: rate limiter, retries and
// Retry-After, the same-origin redirect rule, MaxResponseBytes per page,
// and MaxPages and MaxItems over the listing (a *LimitError beyond them).
// A page that is not a well-formed collection of record objects fails
// with an error matching ErrAuditPage and wrapping the *DecodeError
// (ErrNotCollection for the wrong shape): never as an empty page.
//
// Pages handed to each stay handed: when a later page fails, or each
// returns an error (returned as is, and no further page is read), the
// caller has seen part of the listing. A tail therefore advances its
// cursor only when ListAuditRecords returns nil, and deduplicates records
// (DedupKey) across the overlapping queries that day-granular dates force.
func (c *Client) ListAuditRecords(ctx context.Context, q AuditQuery, each func(AuditPage) error) error {
	if err := q.validate(); err != nil {
		return err
	}
	const endpoint = "auditrecords"
	first := q.Path()
	what := strings.TrimPrefix(first, "/v1/auditrecords?")
	path := first
	var (
		hdr   []Header
		seen  = map[[sha256.Size]byte]bool{}
		items int
	)
	for page := 1; ; page++ {
		var pg auditPage
		err := c.get(ctx, endpoint, path, hdr, c.budget,
			func() *itemBudget {
				// One page is held at a time: the listing's byte bound
				// does not apply, its item bound does.
				b := c.listingBudget(0, items)
				b.limit, b.option, b.optLimit = c.maxResp, LimitResponseBytes, 0
				return b
			},
			func(dec *json.Decoder, b *itemBudget) error {
				var err error
				pg, err = decodeAuditPage(dec, b)
				return err
			})
		if err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				le.Page = page
			}
			return &auditPageError{page: page, query: what, err: err}
		}
		items += len(pg.Items)
		if err := each(AuditPage{Number: page, Records: pg.Items, TotalCount: pg.TotalCount, ContinuationToken: pg.ContinuationToken}); err != nil {
			return err
		}
		next, nextHdr, ok, err := c.auditNext(first, pg)
		if err != nil {
			return &auditPageError{page: page, query: what, err: err}
		}
		if !ok {
			return nil
		}
		if page >= c.maxPages {
			return &LimitError{Endpoint: endpoint, Method: http.MethodGet, Path: next, Option: LimitPages,
				Limit: int64(c.maxPages), Page: page + 1, CorrelationID: CorrelationID(ctx), Hint: c.limitHints[LimitPages]}
		}
		h := sha256.New()
		h.Write([]byte(next))
		for _, x := range nextHdr {
			fmt.Fprintf(h, "\x00%q\x00%q", x.Key, x.Value)
		}
		var key [sha256.Size]byte
		h.Sum(key[:0])
		if seen[key] {
			return &auditPageError{page: page, query: what,
				err: fmt.Errorf("the next page is one already read (%s); the server is looping", next)}
		}
		seen[key] = true
		path, hdr = next, nextHdr
	}
}

// auditNext returns the request of the page after pg: its next link (with
// the continuation token added as MS-ContinuationToken when the link's
// headers lack it), or, without a link, the first page's path with
// seekOperation=Next and the token. ok is false on the last page.
func (c *Client) auditNext(first string, pg auditPage) (path string, hdr []Header, ok bool, err error) {
	tok := pg.ContinuationToken
	if next := pg.Links.Next; next != nil && next.URI != "" {
		if path, err = c.resolve(next.URI); err != nil {
			return "", nil, false, err
		}
		hdr = append([]Header(nil), next.Headers...)
		if tok != "" && !hasHeader(hdr, "MS-ContinuationToken") {
			hdr = append(hdr, Header{Key: "MS-ContinuationToken", Value: tok})
		}
		return path, hdr, true, nil
	}
	if tok == "" {
		return "", nil, false, nil
	}
	return first + "&seekOperation=Next", []Header{{Key: "MS-ContinuationToken", Value: tok}}, true, nil
}

func hasHeader(hs []Header, key string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Key, key) && h.Value != "" {
			return true
		}
	}
	return false
}

// auditPage is one decoded page: the collection envelope plus the
// seek-based continuationToken.
type auditPage struct {
	Collection[AuditRecord]
	ContinuationToken string
}

// decodeAuditPage reads one audit records page from dec, item by item
// (one record's JSON buffered at a time). It accepts what decodeCollection
// accepts, minus items that are not JSON objects (null included: a record
// with nothing in it is not a record), and reads continuationToken (a
// string or null; another type is malformed). Shape errors match
// ErrNotCollection. b (may be nil) bounds and counts the items.
func decodeAuditPage(dec *json.Decoder, b *itemBudget) (auditPage, error) {
	var pg auditPage
	tok, err := dec.Token()
	if err != nil {
		return pg, syntaxOr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return pg, notCollection("the body is %s, not an object with an items array", describeToken(tok))
	}
	itemSize := int64(reflect.TypeFor[AuditRecord]().Size())
	seenItems := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return pg, syntaxOr(err)
		}
		key, _ := kt.(string)
		switch {
		case strings.EqualFold(key, "items"):
			if seenItems {
				return pg, notCollection("items appears twice")
			}
			seenItems = true
			t, err := dec.Token()
			if err != nil {
				return pg, syntaxOr(err)
			}
			if d, ok := t.(json.Delim); !ok || d != '[' {
				return pg, notCollection("items is %s, not an array", describeToken(t))
			}
			for i := 0; dec.More(); i++ {
				if b != nil && b.maxItm > 0 && b.items >= b.maxItm {
					return pg, errTooManyItems
				}
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					return pg, syntaxOr(err)
				}
				if raw[0] != '{' {
					return pg, notCollection("item %d is %s, not an audit record object", i, describeRaw(raw))
				}
				var rec AuditRecord
				if err := json.Unmarshal(raw, &rec); err != nil {
					return pg, fmt.Errorf("item %d: %w", i, err)
				}
				if b != nil {
					b.items++
					if !b.charge(itemSize) {
						return pg, errOverBudget
					}
				}
				pg.Items = append(pg.Items, rec)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return pg, syntaxOr(err)
			}
		case strings.EqualFold(key, "continuationToken"):
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return pg, syntaxOr(err)
			}
			switch {
			case string(raw) == "null":
				pg.ContinuationToken = ""
			case raw[0] == '"':
				if err := json.Unmarshal(raw, &pg.ContinuationToken); err != nil {
					return pg, err
				}
			default:
				return pg, notCollection("continuationToken is %s, not a string", describeRaw(raw))
			}
		case strings.EqualFold(key, "totalCount"):
			err = dec.Decode(&pg.TotalCount)
		case strings.EqualFold(key, "links"):
			err = dec.Decode(&pg.Links)
		case strings.EqualFold(key, "attributes"):
			err = dec.Decode(&pg.Attributes)
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return pg, syntaxOr(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return pg, syntaxOr(err)
	}
	if err := expectEOF(dec); err != nil {
		return pg, err
	}
	switch {
	case !seenItems:
		return pg, notCollection("the object has no items property")
	case len(pg.Items) == 0 && pg.TotalCount > 0:
		return pg, notCollection("items is empty but totalCount is %d", pg.TotalCount)
	}
	if pg.Items == nil {
		pg.Items = []AuditRecord{}
	}
	return pg, nil
}
