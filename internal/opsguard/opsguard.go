// Package opsguard protects the operations HTTP servers of the watcher
// (/healthz, /readyz, /metrics, /api/...) and the notifier (/healthz,
// /readyz, /metrics):
//
//   - a Host check against DNS rebinding: a web page whose name resolves to
//     127.0.0.1 makes the browser send its own name as Host, so only the
//     names of this server are answered (loopback names, the bound address,
//     the address the connection arrived on, and names the operator lists);
//   - an optional bearer token (PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE)
//     that, when set, is required for everything but the probes, compared in
//     constant time.
//
// A Guard is immutable after New and safe for concurrent use.
package opsguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Environment variables of the token; both binaries read them.
const (
	TokenEnv     = "PCWATCH_OPS_TOKEN"
	TokenFileEnv = "PCWATCH_OPS_TOKEN_FILE"
)

// maxTokenFile bounds the token file read.
const maxTokenFile = 4096

// Errors of New and TokenFromEnv.
var (
	ErrBadHost   = errors.New("not a host name or IP address")
	ErrBadToken  = errors.New("unusable operations token")
	ErrBadListen = errors.New("not a host:port address")
)

// TokenFromEnv reads the operations token from PCWATCH_OPS_TOKEN or the
// file named by PCWATCH_OPS_TOKEN_FILE (surrounding white space trimmed).
// Neither set is no token (""), both set or an empty or unreadable file is
// an error naming the variable and the fix.
func TokenFromEnv(getenv func(string) string) (string, error) {
	tok, file := getenv(TokenEnv), getenv(TokenFileEnv)
	switch {
	case tok != "" && file != "":
		return "", fmt.Errorf("%w: both %s and %s are set; keep one", ErrBadToken, TokenEnv, TokenFileEnv)
	case tok != "":
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return "", fmt.Errorf("%w: %s is only white space", ErrBadToken, TokenEnv)
		}
		return tok, nil
	case file == "":
		return "", nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v (fix the path, or unset %s)", ErrBadToken, TokenFileEnv, err, TokenFileEnv)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v (fix the file, or unset %s)", ErrBadToken, TokenFileEnv, err, TokenFileEnv)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("%w: %s: %s is larger than %d bytes: not a token file?", ErrBadToken, TokenFileEnv, file, maxTokenFile)
	}
	tok = strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s: %s is empty", ErrBadToken, TokenFileEnv, file)
	}
	return tok, nil
}

// Options configure a Guard.
type Options struct {
	// Listen is the address the server is bound to (the listener's
	// address, or what --listen said).
	Listen string
	// AllowedHosts are further names clients may use in Host, e.g. a
	// Kubernetes service name; needed when clients reach a server bound to
	// a wildcard address (0.0.0.0, ::) by a name.
	AllowedHosts []string
	// Token, when not empty, is required as "Authorization: Bearer
	// <token>" by the handlers wrapped with Protect.
	Token string
}

// Guard checks the Host and the token of operations requests.
type Guard struct {
	names    []string // lower-case host names and canonical IPs accepted
	tokenSum [32]byte
	hasToken bool
}

// New builds a Guard. An allowed host that is not a plain host name or IP
// address (a port, a scheme, a path, a wildcard) is an error.
func New(o Options) (*Guard, error) {
	g := &Guard{names: []string{"localhost"}}
	if o.Listen != "" {
		host, _, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrBadListen, o.Listen)
		}
		if h := normalize(host); h != "" && !isWildcard(h) {
			g.names = append(g.names, h)
		}
	}
	for _, h := range o.AllowedHosts {
		n, err := CheckHost(h)
		if err != nil {
			return nil, err
		}
		g.names = append(g.names, n)
	}
	if o.Token != "" {
		g.tokenSum, g.hasToken = sha256.Sum256([]byte(o.Token)), true
	}
	return g, nil
}

// CheckHost validates an allowed host name and returns it normalised
// (lower case, IPv6 without brackets).
func CheckHost(h string) (string, error) {
	n := normalize(strings.TrimSpace(h))
	if _, err := netip.ParseAddr(n); err == nil {
		return n, nil
	}
	if n == "" || len(n) > 253 || strings.ContainsFunc(n, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}) || strings.HasPrefix(n, ".") || strings.Contains(n, "..") {
		return "", fmt.Errorf("allowed host %q: %w (write a name such as pcwatch.monitoring.svc, without port or scheme)", h, ErrBadHost)
	}
	return n, nil
}

// normalize lower-cases a host, strips the brackets of an IPv6 literal and
// a trailing dot, and writes an IP address canonically.
func normalize(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return h
}

func isWildcard(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsUnspecified()
}

// IsLoopback reports whether listen (host:port) binds only loopback
// interfaces: a loopback IP or "localhost". A wildcard or any other name
// is not loopback.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	h := normalize(host)
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// HostAllowed reports whether r's Host names this server: a loopback name
// or address, the bound address, the address the connection arrived on
// (what a Kubernetes probe or a Prometheus scrape of a pod IP sends), or an
// allowed host. A request without Host (HTTP/1.0) is allowed: browsers
// always send one.
func (g *Guard) HostAllowed(r *http.Request) bool {
	host := r.Host
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	h := normalize(host)
	if slices.Contains(g.names, h) {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil && ap.Addr().Unmap().WithZone("") == a {
			return true
		}
	}
	return false
}

// CheckHost wraps next: requests whose Host is not HostAllowed get 421
// Misdirected Request with a short reason.
func (g *Guard) CheckHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.HostAllowed(r) {
			host := r.Host
			if len(host) > 100 {
				host = host[:100] + "..."
			}
			plain(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q is not a name of this server; if it is, list it in allowed hosts (--allowed-hosts)", host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HasToken reports whether a token is configured.
func (g *Guard) HasToken() bool { return g.hasToken }

// Authorized reports whether r carries the token (always true without
// one). The comparison takes the same time whatever the token sent.
func (g *Guard) Authorized(r *http.Request) bool {
	if !g.hasToken {
		return true
	}
	got, ok := bearer(r)
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// Protect wraps next: with a token configured, requests without it get 401
// and a WWW-Authenticate challenge.
func (g *Guard) Protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pcwatch"`)
			msg := "missing bearer token: send Authorization: Bearer <the value of " + TokenEnv + ">"
			if _, ok := bearer(r); ok {
				msg = "wrong bearer token"
			}
			plain(w, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// MayShowDetails reports whether a /readyz answer may say why the server
// is not ready: without a token always; with one, to loopback callers and
// callers with the token. Probes from elsewhere learn only the status.
func (g *Guard) MayShowDetails(r *http.Request) bool {
	if !g.hasToken || g.Authorized(r) {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// ListenWarning returns the start-up warning for a server listening on
// addr, or "" when there is nothing to warn about (a loopback address, or
// a token is set). flag names the setting, e.g. "--listen".
func ListenWarning(what, flag, addr string, hasToken bool) string {
	if hasToken || IsLoopback(addr) {
		return ""
	}
	return fmt.Sprintf("%s listens on %s, not a loopback address, without a token: anyone who can reach it can read it; set %s or %s (then send Authorization: Bearer <token>), or bind %s to 127.0.0.1",
		what, addr, TokenEnv, TokenFileEnv, flag)
}
