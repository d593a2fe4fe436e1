package partnercenter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Secrets with characters that every encoding changes: form encoding
// (+ / = & and non-ASCII), JSON escaping (the quote), base64 alignment.
const (
	echoSecret  = `s3cr+t/with=chars&"quote"~äöü`
	echoRefresh = `0.AAAA-rt/+=refresh_token_value`
)

// leaks reports the first form of a secret found in text: as typed,
// URL/form- or path-encoded (any hex case), JSON-escaped, or inside any run
// of base64 text (decoded at every offset, in both alphabets), itself raw
// or form-encoded. It is written independently of internal/secret, so a
// redaction gap there shows up here.
func leaks(text string, secrets ...string) string {
	var forms []string
	for _, s := range secrets {
		j, _ := json.Marshal(s)
		forms = append(forms, s, url.QueryEscape(s), strings.ReplaceAll(url.QueryEscape(s), "+", "%20"), url.PathEscape(s), string(j[1:len(j)-1]))
	}
	lower := strings.ToLower(text)
	for _, f := range forms {
		if strings.Contains(text, f) || strings.Contains(lower, strings.ToLower(f)) {
			return f
		}
	}
	for _, run := range base64Run.FindAllString(text, -1) {
		for off := 0; off < 4 && off < len(run); off++ {
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				r := run[off:]
				r = r[:len(r)/4*4]
				b, err := enc.DecodeString(r)
				if err != nil {
					continue
				}
				for _, s := range secrets {
					for _, f := range []string{s, url.QueryEscape(s)} {
						if strings.Contains(string(b), f) {
							return "base64 of " + f
						}
					}
				}
			}
		}
	}
	return ""
}

var base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{8,}`)

// Defect 3 (issue 11): a token endpoint that echoes the request into
// error / error_description (or into a non-JSON body) put the client
// secret, URL-encoded, and the refresh token into every error text.
func TestTokenEndpointEchoIsRedacted(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, tt := range []struct {
		name string
		// respond writes the echo; form is the raw request body, v the
		// parsed values.
		respond func(w http.ResponseWriter, form string, v url.Values)
	}{
		{"raw form body in error_description", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 400, "invalid_client", "AADSTS7000215: Invalid client secret provided. Request: "+form)
		}},
		{"decoded values in error_description", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 400, "invalid_grant", "bad secret "+v.Get("client_secret")+" for refresh token "+v.Get("refresh_token"))
		}},
		{"base64 of the values", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 400, "invalid_client", "secret="+b64([]byte(v.Get("client_secret")))+" rt="+b64([]byte(v.Get("refresh_token")))+
				" basic="+b64([]byte(v.Get("client_id")+":"+v.Get("client_secret"))))
		}},
		{"base64 of the form body", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 400, "invalid_request", "echo "+b64([]byte(form)))
		}},
		{"form body as the error code", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 400, form, "see code")
		}},
		{"decoded values as the error code", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 401, v.Get("client_secret")+"|"+v.Get("refresh_token"), "")
		}},
		{"non-JSON 400 body", func(w http.ResponseWriter, form string, v url.Values) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(400)
			io.WriteString(w, "<html>Bad request: "+form+" secret "+v.Get("client_secret")+"</html>")
		}},
		{"non-JSON 500 body", func(w http.ResponseWriter, form string, v url.Values) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(500)
			io.WriteString(w, "%%% not a form "+v.Get("refresh_token")+" "+v.Get("client_secret"))
		}},
		{"form-encoded error body", func(w http.ResponseWriter, form string, v url.Values) {
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			w.WriteHeader(400)
			io.WriteString(w, "error=invalid_client&error_description="+url.QueryEscape("got "+form))
		}},
		{"200 that is not JSON", func(w http.ResponseWriter, form string, v url.Values) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, v.Get("client_secret")+form)
		}},
		{"200 with an error code", func(w http.ResponseWriter, form string, v url.Values) {
			jsonError(w, 200, "invalid_client", form)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				body, _ := io.ReadAll(r.Body)
				v, _ := url.ParseQuery(string(body))
				if v.Get("client_secret") != echoSecret || v.Get("refresh_token") != echoRefresh {
					t.Errorf("token request form = %v", v)
				}
				tt.respond(w, string(body), v)
			}))
			defer tokenSrv.Close()
			api, _ := bodyServer(t, `{"totalCount":0,"items":[]}`)
			creds := Credentials{TenantID: "tn", ClientID: "client-id", ClientSecret: echoSecret, RefreshToken: echoRefresh, TokenURL: tokenSrv.URL}
			ts, err := creds.TokenSource(context.Background(), Clouds["global"], tokenSrv.Client())
			if err != nil {
				t.Fatal(err)
			}
			_, direct := ts.Token()
			c, _ := newTestClient(t, api, func(o *Options) { o.TokenSource = ts })
			_, viaClient := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			for _, err := range []error{direct, viaClient} {
				var ae *AuthError
				if !errors.As(err, &ae) || !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("err = %v; want an *AuthError", err)
				}
				texts := []string{err.Error(), ae.Code, ae.Description, fmt.Sprintf("%+v", ae), fmt.Sprintf("%#v", ae)}
				if ae.Err != nil {
					texts = append(texts, ae.Err.Error())
				}
				for _, text := range texts {
					if f := leaks(text, echoSecret, echoRefresh); f != "" {
						t.Errorf("token error leaks %q: %s", f, text)
					}
				}
			}
			if !strings.Contains(direct.Error(), "[REDACTED]") && !strings.Contains(tt.name, "base64") && !strings.Contains(tt.name, "not JSON") {
				t.Errorf("nothing redacted in %q; did the echo arrive?", direct)
			}
		})
	}
}

func jsonError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// The token endpoint is outside input too: a slow one must not hang a
// poll. Each token request is bounded by TokenTimeout (default 30s).
func TestTokenRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers: waits for the client to give up
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer tokenSrv.Close()
	defer close(release)
	creds := Credentials{TenantID: "tn", ClientID: "ci", ClientSecret: echoSecret, TokenURL: tokenSrv.URL, TokenTimeout: 50 * time.Millisecond}
	ts, err := creds.TokenSource(context.Background(), Clouds["global"], nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Token()
	var ae *AuthError
	if !errors.As(err, &ae) || !ae.Temporary() || !strings.Contains(err.Error(), "Timeout") {
		t.Fatalf("err = %v; want a temporary AuthError for the timeout", err)
	}
	if f := leaks(err.Error(), echoSecret); f != "" {
		t.Errorf("leaks %q: %v", f, err)
	}
	// The default applies when none is set, and a caller's longer timeout
	// is lowered to it; the caller's client is not modified.
	hc := &http.Client{Timeout: time.Hour}
	if got := tokenHTTPClient(hc, "https://login.example:443", DefaultTokenTimeout); got.Timeout != DefaultTokenTimeout || hc.Timeout != time.Hour || hc.CheckRedirect != nil {
		t.Errorf("token client timeout %v (caller's now %v)", got.Timeout, hc.Timeout)
	}
	if got := tokenHTTPClient(&http.Client{Timeout: time.Second}, "https://login.example:443", DefaultTokenTimeout); got.Timeout != time.Second {
		t.Errorf("a caller's shorter timeout became %v", got.Timeout)
	}
}

// A redirect off the token endpoint's origin is refused before it is
// followed: a 307 would carry the form body, client secret included.
func TestTokenRedirectOffOriginRefused(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"evil","token_type":"Bearer","expires_in":3600}`)
	}))
	defer evil.Close()
	var hits atomic.Int32
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, evil.URL+"/steal?code=xyz-secret-query", http.StatusTemporaryRedirect)
	}))
	defer tokenSrv.Close()
	creds := Credentials{TenantID: "tn", ClientID: "ci", ClientSecret: echoSecret, RefreshToken: echoRefresh, TokenURL: tokenSrv.URL}
	ts, err := creds.TokenSource(context.Background(), Clouds["global"], tokenSrv.Client())
	if err != nil {
		t.Fatal(err)
	}
	api, apiHits := bodyServer(t, `{"totalCount":0,"items":[]}`)
	c, _ := newTestClient(t, api, func(o *Options) { o.TokenSource = ts })
	_, err = c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
	if evilHits.Load() != 0 {
		t.Fatalf("the other origin received %d token requests", evilHits.Load())
	}
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrRedirect) || ae.Temporary() {
		t.Fatalf("err = %v; want a permanent AuthError wrapping a RedirectError", err)
	}
	u, _ := url.Parse(evil.URL)
	if !strings.Contains(err.Error(), "http://"+u.Host) || strings.Contains(err.Error(), "xyz-secret-query") || strings.Contains(err.Error(), "/steal") {
		t.Errorf("error %q: want the target origin, not its path or query", err)
	}
	if hits.Load() != 1 || apiHits.Load() != 0 {
		t.Errorf("%d token requests, %d API requests; want 1 and 0 (not retried)", hits.Load(), apiHits.Load())
	}
}

// Userinfo in the base URL or the token URL is refused, without printing
// the password: credentials belong in the PCWATCH_PC_* variables.
func TestUserinfoInURLsRefused(t *testing.T) {
	const pw = "pa55-w0rd:secret"
	ts := Credentials{StaticToken: "x"}
	static, _ := ts.TokenSource(context.Background(), Clouds["global"], nil)
	for _, raw := range []string{
		"https://user:" + url.QueryEscape(pw) + "@api.partnercenter.microsoft.com",
		"https://:" + url.QueryEscape(pw) + "@api.partnercenter.microsoft.com/v1",
		"http://" + url.QueryEscape(pw) + "@127.0.0.1:8080",
		"ht tp://user:" + pw + "@x", // does not parse
	} {
		_, err := New(Options{BaseURL: raw, TokenSource: static})
		if err == nil {
			t.Errorf("New accepted base URL with userinfo %q", raw)
			continue
		}
		if f := leaks(err.Error(), pw); f != "" {
			t.Errorf("New(%q) error leaks %q: %v", raw, f, err)
		}
		if !strings.Contains(raw, " ") && !strings.Contains(err.Error(), "PCWATCH_PC_") {
			t.Errorf("error %q does not say where credentials go", err)
		}
	}
	creds := Credentials{TenantID: "tn", ClientID: "ci", ClientSecret: "s3cret-value", TokenURL: "https://u:" + url.QueryEscape(pw) + "@login.example/tn/oauth2/token"}
	if _, err := creds.TokenSource(context.Background(), Clouds["global"], nil); err == nil || leaks(err.Error(), pw) != "" || !strings.Contains(err.Error(), "PCWATCH_PC_") {
		t.Errorf("token URL with userinfo: %v", err)
	}
	creds.TokenURL = "ftp://login.example/x"
	if _, err := creds.TokenSource(context.Background(), Clouds["global"], nil); err == nil {
		t.Error("a non-http token URL was accepted")
	}
}
