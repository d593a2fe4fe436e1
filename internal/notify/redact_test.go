package notify

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// A webhook receiver that echoes the signing secret (base64, URL-encoded)
// in its refusal: the dead-letter entry and the logs keep the refusal but
// not the secret (defect 3 of issue 11: echoed secrets were not redacted).
func TestDeadLetterErrorIsRedacted(t *testing.T) {
	e := newEnv(t)
	echo := "bad signature key " + base64.StdEncoding.EncodeToString([]byte(testSecret)) + " / " + url.QueryEscape(testSecret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, echo, http.StatusBadRequest)
	}))
	defer srv.Close()
	rec := newRecorder()
	startNotifier(t, hookConfig(t, srv.URL, ""), e.url, rec.hooks())
	ev := quantityEvent(t, "c1", 1, 1, 12, 10)
	publish(t, e.js, ev, "")
	waitFor(t, "dead-lettering", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDLQ) }, rec.changed)
	list, err := ListDLQ(context.Background(), e.js, "hook")
	if err != nil || len(list) != 1 {
		t.Fatalf("DLQ %v %v", list, err)
	}
	msg := list[0].Error
	if !strings.Contains(msg, "bad signature key") || !strings.Contains(msg, "[REDACTED]") {
		t.Fatalf("DLQ error %q: want the refusal with the secret redacted", msg)
	}
	for _, leak := range []string{testSecret, url.QueryEscape(testSecret), base64.StdEncoding.EncodeToString([]byte(testSecret))} {
		if strings.Contains(msg, leak) {
			t.Fatalf("DLQ error holds the secret (%q): %s", leak, msg)
		}
	}
}
