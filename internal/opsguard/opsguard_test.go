package opsguard

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenFromEnv(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, empty, big := write("tok", " s3cret\n"), write("empty", "\n\n"), write("big", strings.Repeat("x", maxTokenFile+1))
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
		err  string
	}{
		{"none", nil, "", ""},
		{"variable", map[string]string{TokenEnv: " s3cret "}, "s3cret", ""},
		{"file", map[string]string{TokenFileEnv: good}, "s3cret", ""},
		{"both", map[string]string{TokenEnv: "a", TokenFileEnv: good}, "", "both " + TokenEnv + " and " + TokenFileEnv},
		{"blank variable", map[string]string{TokenEnv: "  "}, "", "only white space"},
		{"empty file", map[string]string{TokenFileEnv: empty}, "", "is empty"},
		{"missing file", map[string]string{TokenFileEnv: filepath.Join(dir, "nope")}, "", "no such file"},
		{"huge file", map[string]string{TokenFileEnv: big}, "", "not a token file"},
	} {
		got, err := TokenFromEnv(func(k string) string { return tc.env[k] })
		if tc.err != "" {
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: the error reveals the token", tc.name)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestCheckHostAndIsLoopback(t *testing.T) {
	for in, want := range map[string]string{"PCWatch.Monitoring.svc": "pcwatch.monitoring.svc", "10.0.0.7": "10.0.0.7", "[::1]": "::1",
		"pcwatch.": "pcwatch", "::ffff:10.0.0.7": "10.0.0.7"} {
		if got, err := CheckHost(in); err != nil || got != want {
			t.Errorf("CheckHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "pcwatch:9464", "http://pcwatch", "pcwatch/x", "*.svc", "*", "a b", ".svc", "a..b"} {
		if _, err := CheckHost(in); !errors.Is(err, ErrBadHost) {
			t.Errorf("CheckHost(%q) accepted (%v)", in, err)
		}
	}
	for in, want := range map[string]bool{"127.0.0.1:9464": true, "localhost:9464": true, "[::1]:9464": true, "127.9.9.9:1": true,
		"0.0.0.0:9464": false, ":9464": false, "[::]:9464": false, "10.0.0.7:9464": false, "pcwatch:9464": false, "bad": false} {
		if got := IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v", in, got)
		}
	}
	if _, err := New(Options{Listen: "nope"}); !errors.Is(err, ErrBadListen) {
		t.Errorf("a listen address without a port: %v", err)
	}
	if _, err := New(Options{AllowedHosts: []string{"x:1"}}); !errors.Is(err, ErrBadHost) {
		t.Errorf("an allowed host with a port: %v", err)
	}
}

// serve runs a guarded handler on a real listener at listen and returns
// the address clients dial.
func serve(t *testing.T, listen string, o Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	o.Listen = ln.Addr().String()
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/open", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.Handle("/secret", g.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "data") })))
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: g.CheckHost(mux)}}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "127.0.0.1:" + port
}

func get(t *testing.T, addr, path, host, auth string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if host != "" {
		req.Host = host
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestHostCheck(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		addr := serve(t, bind, Options{AllowedHosts: []string{"pcwatch.monitoring.svc", "10.9.9.9"}})
		_, port, _ := net.SplitHostPort(addr)
		for host, want := range map[string]int{
			"evil.com": 421, "evil.com:" + port: 421, "localhost.evil.com": 421, "127.0.0.1.nip.io": 421, "pcwatch.monitoring.svc.evil.com": 421,
			"10.1.2.3:" + port:  421, // an address of another machine
			"":                  200, // the address dialled
			"localhost:" + port: 200, "LocalHost": 200, "localhost.": 200, "127.0.0.1": 200, "127.0.0.2": 200, "[::1]:" + port: 200,
			"pcwatch.monitoring.svc": 200, "PCWATCH.monitoring.svc:" + port: 200, "10.9.9.9:" + port: 200,
		} {
			code, _, body := get(t, addr, "/open", host, "")
			if code != want {
				t.Errorf("bound %s, Host %q: %d %q, want %d", bind, host, code, body, want)
			}
		}
	}
}

func TestToken(t *testing.T) {
	addr := serve(t, "127.0.0.1:0", Options{Token: "s3cret-tok"})
	for _, tc := range []struct {
		path, auth string
		want       int
		says       string
	}{
		{"/secret", "", 401, "missing bearer token"},
		{"/secret", "Bearer wrong", 401, "wrong bearer token"},
		{"/secret", "Bearer s3cret-to", 401, "wrong bearer token"},
		{"/secret", "Basic s3cret-tok", 401, "missing bearer token"},
		{"/secret", "Bearer s3cret-tok", 200, "data"},
		{"/secret", "bearer  s3cret-tok", 200, "data"},
		{"/open", "", 200, "ok"},
	} {
		code, h, body := get(t, addr, tc.path, "", tc.auth)
		if code != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("%s with %q: %d %q, want %d saying %q", tc.path, tc.auth, code, body, tc.want, tc.says)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s with %q: 401 without a challenge", tc.path, tc.auth)
		}
		if strings.Contains(body, "s3cret") && code != 200 {
			t.Errorf("the refusal repeats the token: %q", body)
		}
	}
	// Without a token everything is open.
	open := serve(t, "127.0.0.1:0", Options{})
	if code, _, _ := get(t, open, "/secret", "", ""); code != 200 {
		t.Errorf("no token configured: %d", code)
	}
}

func TestMayShowDetails(t *testing.T) {
	g, _ := New(Options{Token: "t"})
	open, _ := New(Options{})
	for _, tc := range []struct {
		g      *Guard
		remote string
		auth   string
		want   bool
	}{
		{open, "10.0.0.1:1", "", true},
		{g, "127.0.0.1:1", "", true},
		{g, "[::1]:1", "", true},
		{g, "10.0.0.1:1", "Bearer t", true},
		{g, "10.0.0.1:1", "", false},
		{g, "10.0.0.1:1", "Bearer x", false},
		{g, "garbage", "", false},
	} {
		r := httptest.NewRequest("GET", "/readyz", nil)
		r.RemoteAddr = tc.remote
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got := tc.g.MayShowDetails(r); got != tc.want {
			t.Errorf("token %v, remote %s, auth %q: %v", tc.g.HasToken(), tc.remote, tc.auth, got)
		}
	}
}

func TestListenWarning(t *testing.T) {
	if w := ListenWarning("the x", "--listen", "127.0.0.1:9464", false); w != "" {
		t.Errorf("loopback: %q", w)
	}
	if w := ListenWarning("the x", "--listen", "0.0.0.0:9464", true); w != "" {
		t.Errorf("with a token: %q", w)
	}
	w := ListenWarning("the x", "--listen", "0.0.0.0:9464", false)
	for _, want := range []string{"0.0.0.0:9464", "--listen", TokenEnv, TokenFileEnv, "127.0.0.1"} {
		if !strings.Contains(w, want) || strings.Contains(w, "\n") {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
}

func FuzzHostAllowed(f *testing.F) {
	g, _ := New(Options{Listen: "127.0.0.1:9464", AllowedHosts: []string{"pcwatch.svc"}})
	for _, s := range []string{"evil.com", "localhost:9464", "[::1]", "pcwatch.svc.", "127.0.0.1.evil.com", "[", "::1]:x", "%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		if !g.HostAllowed(r) {
			return
		}
		// Whatever is allowed names loopback, the bound address or an
		// allowed host.
		h := host
		if x, _, err := net.SplitHostPort(host); err == nil {
			h = x
		}
		n := normalize(h)
		if n != "" && n != "localhost" && n != "127.0.0.1" && n != "pcwatch.svc" && !strings.HasPrefix(n, "127.") && n != "::1" {
			t.Fatalf("Host %q (%q) allowed", host, n)
		}
	})
}
