package partnercenter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pcwatch/pcwatch/internal/secret"
)

// Partner Center API roots.
const (
	// GlobalBaseURL serves the public cloud and, per Microsoft's REST URL
	// table, Microsoft Cloud for US Government as well.
	GlobalBaseURL = "https://api.partnercenter.microsoft.com"
	// ChinaBaseURL serves Partner Center operated by 21Vianet.
	ChinaBaseURL = "https://partner.partnercenterapi.microsoftonline.cn"
)

// Cloud is a Partner Center deployment: where the API lives and where its
// tokens come from.
type Cloud struct {
	Name      string
	BaseURL   string // API root
	Authority string // Entra ID login host root
	Resource  string // token audience
}

// Clouds are the deployments --cloud accepts.
var Clouds = map[string]Cloud{
	"global": {Name: "global", BaseURL: GlobalBaseURL, Authority: "https://login.microsoftonline.com", Resource: "https://api.partnercenter.microsoft.com"},
	"usgov":  {Name: "usgov", BaseURL: GlobalBaseURL, Authority: "https://login.microsoftonline.us", Resource: "https://api.partnercenter.microsoft.com"},
	"china":  {Name: "china", BaseURL: ChinaBaseURL, Authority: "https://login.chinacloudapi.cn", Resource: "https://api.partnercenterapi.microsoftonline.cn"},
}

// LookupCloud returns the named cloud or an error listing the valid names.
func LookupCloud(name string) (Cloud, error) {
	if c, ok := Clouds[strings.ToLower(strings.TrimSpace(name))]; ok {
		return c, nil
	}
	return Cloud{}, fmt.Errorf("unknown cloud %q: want global, usgov or china", name)
}

// Credentials say how to authenticate to Partner Center. Exactly one mode
// applies:
//
//   - static: StaticToken is sent as the bearer token (proxies, tests,
//     the simulator);
//   - App+User (secure application model): TenantID, ClientID, ClientSecret
//     and RefreshToken; the refresh token is exchanged for an access token
//     for the Partner Center resource. Some endpoints serve only this
//     mode (their methods say so);
//   - App-only: TenantID, ClientID and ClientSecret (client credentials).
//
// Credentials never print their secrets: String and LogValue redact them.
type Credentials struct {
	StaticToken  string
	TenantID     string
	ClientID     string
	ClientSecret string
	RefreshToken string
	// TokenURL overrides the token endpoint (tests); by default it is
	// <cloud authority>/<tenant>/oauth2/token. It must not carry userinfo.
	TokenURL string
	// TokenTimeout bounds one token request, redirects and body included.
	// Default DefaultTokenTimeout.
	TokenTimeout time.Duration
}

// DefaultTokenTimeout bounds one token request: Entra answers in well under
// a second, and a token endpoint that stalls must not hang a poll.
const DefaultTokenTimeout = 30 * time.Second

// errUserinfo is the advice given when a URL carries user:password@.
const errUserinfo = "must not carry credentials (user:password@); give them through the PCWATCH_PC_* credential variables (PCWATCH_PC_TOKEN, or PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_ID and PCWATCH_PC_CLIENT_SECRET)"

// checkURL parses raw as an absolute http(s) URL without userinfo. Its
// errors never print a password: what names the URL (e.g. "token URL")
// and the URL is shown with its userinfo dropped, or not at all when it
// does not parse.
func checkURL(what, raw, example string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		shown := strconv.Quote(raw)
		if strings.Contains(raw, "@") {
			shown = "(not shown: it contains '@')"
		}
		return nil, fmt.Errorf("%s %s is not a URL: want an absolute http(s) URL such as %s", what, shown, example)
	}
	if u.User != nil {
		cp := *u
		cp.User = nil
		return nil, fmt.Errorf("%s %s %s", what, cp.String(), errUserinfo)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s %q: want an absolute http(s) URL such as %s", what, raw, example)
	}
	return u, nil
}

// Credential modes.
const (
	ModeStatic  = "static"
	ModeAppUser = "app+user"
	ModeAppOnly = "app-only"
)

// Mode names the authentication mode these credentials select, or "" when
// none is complete.
func (c Credentials) Mode() string {
	switch {
	case c.StaticToken != "":
		return ModeStatic
	case c.TenantID != "" && c.ClientID != "" && c.ClientSecret != "" && c.RefreshToken != "":
		return ModeAppUser
	case c.TenantID != "" && c.ClientID != "" && c.ClientSecret != "":
		return ModeAppOnly
	}
	return ""
}

// String describes the credentials without secrets.
func (c Credentials) String() string {
	return fmt.Sprintf("partner center credentials (mode %s, tenant %s, client %s)", c.modeOrNone(), c.TenantID, c.ClientID)
}

// LogValue keeps secrets out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mode", c.modeOrNone()), slog.String("tenant", c.TenantID), slog.String("client", c.ClientID))
}

func (c Credentials) modeOrNone() string {
	if m := c.Mode(); m != "" {
		return m
	}
	return "none"
}

// ErrNoCredentials is returned when no complete credential set is given.
var ErrNoCredentials = errors.New("no Partner Center credentials: set PCWATCH_PC_TOKEN (static bearer), or PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_ID and PCWATCH_PC_CLIENT_SECRET (App-only), plus PCWATCH_PC_REFRESH_TOKEN for App+User; each also accepts a _FILE variant naming a file that holds the value")

// CredentialsFromEnv reads PCWATCH_PC_TOKEN, PCWATCH_PC_TENANT_ID,
// PCWATCH_PC_CLIENT_ID, PCWATCH_PC_CLIENT_SECRET and PCWATCH_PC_REFRESH_TOKEN.
// Each may instead be given as <NAME>_FILE, the path of a file holding the
// value (Kubernetes and systemd credentials); surrounding whitespace is
// trimmed. getenv is os.Getenv in production.
func CredentialsFromEnv(getenv func(string) string) (Credentials, error) {
	read := func(name string) (string, error) {
		if v := getenv(name); v != "" {
			return strings.TrimSpace(v), nil
		}
		f := getenv(name + "_FILE")
		if f == "" {
			return "", nil
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var c Credentials
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"PCWATCH_PC_TOKEN", &c.StaticToken},
		{"PCWATCH_PC_TENANT_ID", &c.TenantID},
		{"PCWATCH_PC_CLIENT_ID", &c.ClientID},
		{"PCWATCH_PC_CLIENT_SECRET", &c.ClientSecret},
		{"PCWATCH_PC_REFRESH_TOKEN", &c.RefreshToken},
		{"PCWATCH_PC_TOKEN_URL", &c.TokenURL},
	} {
		v, err := read(f.name)
		if err != nil {
			return Credentials{}, err
		}
		*f.dst = v
	}
	if c.Mode() == "" {
		if c.TenantID != "" || c.ClientID != "" || c.ClientSecret != "" || c.RefreshToken != "" {
			var missing []string
			for _, m := range []struct{ n, v string }{
				{"PCWATCH_PC_TENANT_ID", c.TenantID}, {"PCWATCH_PC_CLIENT_ID", c.ClientID}, {"PCWATCH_PC_CLIENT_SECRET", c.ClientSecret},
			} {
				if m.v == "" {
					missing = append(missing, m.n)
				}
			}
			return Credentials{}, fmt.Errorf("incomplete Partner Center credentials: missing %s", strings.Join(missing, ", "))
		}
		return Credentials{}, ErrNoCredentials
	}
	return c, nil
}

// TokenSource returns a caching, refreshing token source for the
// credentials. hc (may be nil) carries the token requests; the token source
// uses a copy of it bounded by TokenTimeout that refuses redirects off the
// token URL's origin (hc itself is not modified). Every error it returns is
// an *AuthError whose text has the client secret and refresh token
// redacted in every encoding the endpoint could echo them in.
func (c Credentials) TokenSource(ctx context.Context, cloud Cloud, hc *http.Client) (oauth2.TokenSource, error) {
	mode := c.Mode()
	if mode == ModeStatic {
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.StaticToken, TokenType: "Bearer"}), nil
	}
	if mode == "" {
		return nil, ErrNoCredentials
	}
	tokenURL := c.TokenURL
	if tokenURL == "" {
		tokenURL = strings.TrimSuffix(cloud.Authority, "/") + "/" + url.PathEscape(c.TenantID) + "/oauth2/token"
	}
	tu, err := checkURL("token URL", tokenURL, "https://login.microsoftonline.com/<tenant>/oauth2/token")
	if err != nil {
		return nil, err
	}
	timeout := c.TokenTimeout
	if timeout <= 0 {
		timeout = DefaultTokenTimeout
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, tokenHTTPClient(hc, originOf(tu), timeout))
	red := redactingSource{mode: mode, red: tokenRedactor(c.ClientSecret, c.RefreshToken)}
	switch mode {
	case ModeAppUser:
		// The secure application model: exchange the refresh token for a
		// Partner Center access token. clientcredentials lets grant_type be
		// overridden, which gives token caching and expiry handling for free.
		cfg := clientcredentials.Config{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: tokenURL,
			AuthStyle: oauth2.AuthStyleInParams,
			EndpointParams: url.Values{
				"grant_type":    {"refresh_token"},
				"refresh_token": {c.RefreshToken},
				"resource":      {cloud.Resource},
			},
		}
		red.ts = cfg.TokenSource(ctx)
	default: // ModeAppOnly
		cfg := clientcredentials.Config{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: tokenURL,
			AuthStyle:      oauth2.AuthStyleInParams,
			EndpointParams: url.Values{"resource": {cloud.Resource}},
		}
		red.ts = cfg.TokenSource(ctx)
	}
	return red, nil
}

// tokenRedactor redacts the secrets a token request carries, as typed and
// as they travel in the form body (URL-encoded), each in every encoding
// internal/secret knows (so base64 of the echoed form body is covered too).
func tokenRedactor(secrets ...string) *secret.Redactor {
	r := secret.New()
	for _, s := range secrets {
		if s != "" {
			r.Add(s, url.QueryEscape(s))
		}
	}
	return r
}

// tokenHTTPClient returns a copy of hc (a new client when nil) for token
// requests: its Timeout is at most timeout, and it refuses redirects off
// origin before following them, so neither the client secret (a 307/308
// keeps the form body) nor anything else goes to another origin.
func tokenHTTPClient(hc *http.Client, origin string, timeout time.Duration) *http.Client {
	cp := sameOriginClient(hc, origin)
	if cp.Timeout <= 0 || cp.Timeout > timeout {
		cp.Timeout = timeout
	}
	return cp
}

// AuthError is a failure to obtain an access token. It matches
// ErrUnauthorized through errors.Is. A refusal by the token endpoint (4xx)
// or a redirect off its origin is permanent; a network error, a timeout or
// a 5xx is temporary. Its text and fields never hold the client secret or
// refresh token, in any encoding: the token source redacts them.
type AuthError struct {
	Mode        string // credential mode
	StatusCode  int    // token endpoint HTTP status, 0 if none
	Code        string // Entra error code, e.g. invalid_client, secrets redacted
	Description string // first line of the Entra description (or of a non-JSON body), secrets redacted
	Err         error  // underlying error for non-HTTP failures, its text redacted
}

func (e *AuthError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("token request (%s) refused: HTTP %d %s: %s", e.Mode, e.StatusCode, e.Code, e.Description)
	}
	return fmt.Sprintf("token request (%s) failed: %v", e.Mode, e.Err)
}

// Unwrap returns the underlying error.
func (e *AuthError) Unwrap() error { return e.Err }

// Is matches ErrUnauthorized.
func (e *AuthError) Is(target error) bool { return target == ErrUnauthorized }

// Temporary reports whether retrying may help.
func (e *AuthError) Temporary() bool {
	if errors.Is(e.Err, ErrRedirect) {
		return false
	}
	return e.StatusCode == 0 || e.StatusCode >= 500 || e.StatusCode == 429
}

// redactingSource rewrites token errors so that only the HTTP status and the
// Entra error code and description reach errors and logs, with any secret the
// endpoint might echo replaced.
type redactingSource struct {
	ts   oauth2.TokenSource
	mode string
	red  *secret.Redactor
}

// maxAuthText bounds the code and description an AuthError carries.
const maxAuthText = 300

func (r redactingSource) Token() (*oauth2.Token, error) {
	t, err := r.ts.Token()
	if err == nil {
		return t, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		desc := firstLine(re.ErrorDescription)
		if re.ErrorCode == "" && desc == "" && len(re.Body) > 0 {
			// Not an OAuth error body (an HTML page from a proxy, text):
			// its start is all there is to go by.
			desc = "unreadable body: " + strconv.Quote(r.redact(firstLine(string(re.Body))))
		}
		ae := &AuthError{Mode: r.mode, Code: r.redact(re.ErrorCode), Description: r.redact(desc)}
		if re.Response != nil {
			ae.StatusCode = re.Response.StatusCode
		}
		if ae.StatusCode == 0 {
			ae.StatusCode = 400
		}
		return nil, ae
	}
	var rd *RedirectError
	if errors.As(err, &rd) {
		rd.Endpoint = "token"
		return nil, &AuthError{Mode: r.mode, Err: rd}
	}
	return nil, &AuthError{Mode: r.mode, Err: errors.New(r.redact(err.Error()))}
}

// redact replaces the secrets in s (then trims it to maxAuthText; trimming
// after redaction cannot cut a secret into an unrecognised fragment).
func (r redactingSource) redact(s string) string {
	s = r.red.String(s)
	if len(s) > maxAuthText {
		n := maxAuthText
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "..."
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
