package partnercenter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
)

// FuzzAuditPage checks the audit records page reader against the body: it
// never panics; what it accepts is a JSON object whose items are an array
// of objects (at least one when totalCount is positive) and whose
// continuationToken, if any, is a string or null; the records it returns
// are exactly those items as encoding/json decodes them into AuditRecord,
// and the token is the body's. Record helpers never panic on what it
// accepts, and the typed view survives re-encoding.
func FuzzAuditPage(f *testing.F) {
	rec := `{"id":"p_c_updatesubscription_1","customerId":"c","operationType":"update_subscription","operationDate":"2026-01-01T00:00:00.0000000Z",` +
		`"resourceOldValue":"{\"Id\":\"s\"}","resourceNewValue":{"Id":"s"},"customizedData":[{"key":"SubscriptionId","value":"s"},{"key":"x","value":null},{"key":"n","value":1}]}`
	seedCorpus(f, "auditrecords*", append(notCollections,
		`{"totalCount":1,"items":[`+rec+`],"continuationToken":"t","links":{"next":{"uri":"/auditrecords?seekOperation=Next","headers":[{"key":"MS-ContinuationToken","value":"t"}]}}}`,
		`{"items":[null]}`, `{"items":[1]}`, `{"items":[],"continuationToken":null}`, `{"items":[],"continuationToken":7}`,
		`{"items":[{}],"ContinuationToken":"a","continuationToken":"b"}`, `{"items":[{"customizedData":null,"participants":[]}]}`,
		`{"items":[{"resourceNewValue":true,"customizedData":[{"value":{"a":[1]}}]}]}`)...)
	d := filepath.Join("..", "..", "..", "shared", "corpus", "partner-center", "auditrecords-collection-01.txt")
	if b, err := os.ReadFile(d); err == nil {
		f.Add(regexp.MustCompile(`,\s*\.\.\.\s*`).ReplaceAll(b, nil)) // the documented body, elision removed
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip[AuditRecord](t, b)
		pg, err := decodeAuditPage(newDecoder(bytes.NewReader(b)), &itemBudget{})
		if err != nil {
			return
		}
		body := bytes.TrimPrefix(b, utf8BOM)
		var ref struct {
			Items             *[]json.RawMessage `json:"items"`
			TotalCount        int                `json:"totalCount"`
			ContinuationToken *string            `json:"continuationToken"`
		}
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted a body encoding/json refuses (%v): %q", err, b)
		}
		if bytes.TrimSpace(body)[0] != '{' || ref.Items == nil {
			t.Fatalf("accepted a body that is not an object with an items array: %q", b)
		}
		if len(pg.Items) != len(*ref.Items) || pg.Items == nil {
			t.Fatalf("returned %d items for a body with %d: %q", len(pg.Items), len(*ref.Items), b)
		}
		if ref.TotalCount > 0 && len(pg.Items) == 0 {
			t.Fatalf("accepted no items with totalCount %d: %q", ref.TotalCount, b)
		}
		wantTok := ""
		if ref.ContinuationToken != nil {
			wantTok = *ref.ContinuationToken
		}
		if pg.ContinuationToken != wantTok {
			t.Fatalf("token %q, the body's %q: %q", pg.ContinuationToken, wantTok, b)
		}
		for i, raw := range *ref.Items {
			if bytes.TrimSpace(raw)[0] != '{' {
				t.Fatalf("accepted item %d that is not an object: %s", i, raw)
			}
			var want AuditRecord
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("accepted item %d encoding/json refuses: %v", i, err)
			}
			got := pg.Items[i]
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("item %d differs from encoding/json's:\n%#v\n%#v", i, got, want)
			}
			_ = got.SubscriptionIDs()
			_, _ = got.Data("SubscriptionId")
			if k := got.DedupKey(); k == "" {
				t.Fatal("empty dedup key")
			}
		}
	})
}
