// Package natsconn is how both pcwatch programs reach NATS: one definition
// of the connection settings (Options: the URL, credentials, TLS and the
// connection's name), one way to fill them from flags and the environment
// (AddFlags, Flags.Options, Credentials; one usage text, Usage), and
// Connect, which dials without blocking on an unreachable server but says
// at once when the server refuses the credentials (*AuthError).
//
// Nothing this package logs, returns or prints (String, Describe) holds a
// password or a token, in any encoding.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/secret"
)

// Options say how to reach a NATS server. Credentials may come as
// user/password (also inside the URL), a token (also in the URL's user
// part), an NKey seed file or a JWT creds file; TLS with a private CA and
// client certificates is supported. String never prints secrets.
type Options struct {
	URL          string
	Name         string // connection name shown by the server
	User         string
	Password     string
	Token        string
	NKeySeedFile string
	CredsFile    string
	TLSCAFile    string
	TLSCertFile  string
	TLSKeyFile   string
	Logger       *slog.Logger
}

// AuthError is a NATS server refusing the credentials (an authorization
// violation, expired or revoked credentials). errors.Is(err,
// nats.ErrAuthorization) and friends hold.
type AuthError struct {
	Server string // the server URL(s), without credentials
	Auth   string // the authentication tried, without secrets
	Err    error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("NATS %s refused the credentials (auth %s): %v; check the server's authorization settings, and give pcwatch the credentials it expects: %s",
		e.Server, e.Auth, e.Err, CredentialsHint())
}

func (e *AuthError) Unwrap() error { return e.Err }

// Refused reports whether err is the server refusing the credentials (an
// authorization violation, expired or revoked credentials), as the NATS
// client reports it: a connection's LastError, a reconnect's error.
func Refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// authLogEvery: a refusal that repeats at every reconnect attempt (about
// once a second) is logged the first time and then every authLogEvery-th.
const authLogEvery = 60

// Connect dials NATS without blocking on an unreachable server: the
// connection is returned at once and keeps reconnecting forever, so the
// watcher polls and fills its outbox while NATS is down. Publishes fail fast
// while disconnected (no reconnect buffer), which the relay relies on to
// keep per-entity order.
//
// A server that answers but refuses the credentials is different: at the
// first attempt that is a configuration error, returned as *AuthError
// rather than hidden behind endless retries (whose publishes would only
// say "outbound buffer limit exceeded"). A refusal at a later reconnect
// (credentials revoked or rotated on the server) is logged as such, at
// Error, and the connection keeps trying, so fixing the server's side is
// enough. Nothing Connect logs or returns holds a password or token, in
// any encoding.
func Connect(o Options) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, errors.New("NATS URL is empty")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	red := secret.New(o.Secrets()...)
	auth := o.authMode()
	var refusals atomic.Int64
	refused := func(err error) {
		if n := refusals.Add(1); n == 1 || n%authLogEvery == 0 {
			log.Error("NATS refused the credentials; retrying (fix the credentials or the server's authorization)",
				"nats", redactURL(o.URL), "auth", auth, "err", red.Error(err), "refusals", n)
		}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		// Keep trying after repeated refusals: the server's side may be
		// fixed while the watcher runs.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", red.Error(err))
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if Refused(err) {
				refused(err)
				return
			}
			log.Debug("NATS reconnect attempt failed", "err", red.Error(err))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			switch {
			case Refused(err):
				refused(err)
			case errors.Is(err, nats.ErrPermissionViolation):
				log.Error("NATS denied a permission to pcwatch's credentials (check the server's permissions for this user)", "auth", auth, "err", red.Error(err))
			default:
				log.Warn("NATS error", "err", red.Error(err))
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Warn("NATS connection closed", "err", red.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			refusals.Store(0)
			log.Info("NATS reconnected", "url", redactURL(nc.ConnectedUrl()), "auth", auth)
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			refusals.Store(0)
			log.Info("NATS connected", "url", redactURL(nc.ConnectedUrl()), "auth", auth)
		}),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS NKey seed file %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLSCAFile))
	}
	if o.TLSCertFile != "" || o.TLSKeyFile != "" {
		if o.TLSCertFile == "" || o.TLSKeyFile == "" {
			return nil, errors.New("NATS TLS client certificate needs both a certificate and a key file")
		}
		opts = append(opts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	// One attempt in the foreground tells a refusal from an unreachable
	// server; only the latter is left to the background retries.
	nc, err := nats.Connect(o.URL, append(opts, nats.RetryOnFailedConnect(false))...)
	if err == nil {
		return nc, nil
	}
	if Refused(err) {
		return nil, &AuthError{Server: redactURL(o.URL), Auth: auth, Err: red.WrapError(err)}
	}
	nc, err = nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s: %w", redactURL(o.URL), red.WrapError(err))
	}
	return nc, nil
}

// Secrets returns what of o must never leave the process: the password,
// the token, and the credentials inside the URL (as written and decoded).
// Programs add them to their redactor (internal/secret).
func (o Options) Secrets() []string {
	return append([]string{o.Password, o.Token}, urlSecrets(o.URL)...)
}

// urlSecrets returns the credentials inside a (comma-separated) NATS URL:
// user info as written and decoded, and the password or token alone.
func urlSecrets(u string) []string {
	var out []string
	for _, part := range strings.Split(u, ",") {
		scheme := strings.Index(part, "://")
		rest := part[scheme+1:]
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		if end := strings.IndexAny(rest, "/?#"); end >= 0 && end < at {
			// '@' after the authority: not user info. (A raw '/' in a
			// password breaks the URL; its parts are redacted below.)
			out = append(out, strings.Split(strings.TrimLeft(rest[:at], "/"), ":")...)
			continue
		}
		info := strings.TrimLeft(rest[:at], "/")
		out = append(out, info)
		user, pass, hasPass := strings.Cut(info, ":")
		for _, s := range []string{user, pass} {
			if d, err := url.PathUnescape(s); err == nil && d != s {
				out = append(out, d)
			}
		}
		if hasPass {
			out = append(out, pass)
		} else {
			out = append(out, user) // nats://<token>@host
		}
	}
	return out
}

// redactURL returns the server URLs of u (comma-separated) as scheme and
// host only: user info (a user and password, or a token in the user's
// place) is never shown, in any encoding. A URL that does not parse is not
// shown either.
func redactURL(u string) string {
	var out []string
	for _, part := range strings.Split(u, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p := part
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		pu, err := url.Parse(p)
		if err != nil || pu.Host == "" {
			out = append(out, "(a URL that does not parse)")
			continue
		}
		out = append(out, pu.Scheme+"://"+pu.Host)
	}
	return strings.Join(out, ",")
}

// urlAuth describes the credentials inside a NATS URL, "" if none.
func urlAuth(u string) string {
	for _, part := range strings.Split(u, ",") {
		p := strings.TrimSpace(part)
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		pu, err := url.Parse(p)
		if err != nil || pu.User == nil {
			continue
		}
		if _, ok := pu.User.Password(); ok {
			return fmt.Sprintf("user %q and password in the URL", pu.User.Username())
		}
		return "token in the URL"
	}
	if strings.Contains(u, "@") {
		return "credentials in the URL"
	}
	return ""
}

// authMode describes how o authenticates, without secrets.
func (o Options) authMode() string {
	var modes []string
	if o.CredsFile != "" {
		modes = append(modes, "creds file "+o.CredsFile)
	}
	if o.NKeySeedFile != "" {
		modes = append(modes, "nkey seed file "+o.NKeySeedFile)
	}
	if o.Token != "" {
		modes = append(modes, "token")
	}
	if o.User != "" {
		modes = append(modes, fmt.Sprintf("user %q and password", o.User))
	}
	if a := urlAuth(o.URL); a != "" {
		modes = append(modes, a)
	}
	if o.TLSCertFile != "" {
		modes = append(modes, "TLS client certificate "+o.TLSCertFile)
	}
	if len(modes) == 0 {
		return "none"
	}
	return strings.Join(modes, " + ")
}

// String describes the options without secrets.
func (o Options) String() string {
	s := fmt.Sprintf("NATS %s (auth %s", redactURL(o.URL), o.authMode())
	if o.TLSCAFile != "" {
		s += ", tls-ca " + o.TLSCAFile
	}
	return s + ")"
}

// Describe says how nc connects, in Options.String's words, from the
// options the connection was made with: whatever built them, a log line
// built from Describe tells the truth about the authentication in use.
func Describe(nc *nats.Conn) string {
	if nc == nil {
		return "NATS (no connection)"
	}
	o := nc.Opts
	urls := strings.Join(o.Servers, ",")
	if urls == "" {
		urls = o.Url
	}
	var modes []string
	if o.UserJWT != nil {
		modes = append(modes, "creds (user JWT)")
	} else if o.Nkey != "" {
		modes = append(modes, "nkey "+o.Nkey) // the public key
	}
	if o.Token != "" || o.TokenHandler != nil {
		modes = append(modes, "token")
	}
	if o.User != "" {
		modes = append(modes, fmt.Sprintf("user %q and password", o.User))
	}
	if a := urlAuth(urls); a != "" {
		modes = append(modes, a)
	}
	if t := o.TLSConfig; t != nil && (len(t.Certificates) > 0 || t.GetClientCertificate != nil) {
		modes = append(modes, "TLS client certificate")
	}
	auth := "none"
	if len(modes) > 0 {
		auth = strings.Join(modes, " + ")
	}
	return fmt.Sprintf("NATS %s (auth %s)", redactURL(urls), auth)
}
