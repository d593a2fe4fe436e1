package events

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSOptions say how to reach a NATS server that is not the embedded one.
// Credentials may come as user/password (also inside the URL), a token, an
// NKey seed file or a JWT creds file; TLS with a private CA and client
// certificates is supported. String never prints secrets.
type NATSOptions struct {
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

// Connect dials NATS without blocking on an unreachable server: the
// connection is returned at once and keeps reconnecting forever, so the
// watcher polls and fills its outbox while NATS is down. Publishes fail fast
// while disconnected (no reconnect buffer), which the relay relies on to
// keep per-entity order.
func Connect(o NATSOptions) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, errors.New("NATS URL is empty")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("NATS connected", "url", nc.ConnectedUrlRedacted()) }),
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
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s: %w", redactURL(o.URL), err)
	}
	return nc, nil
}

// redactURL hides a password embedded in a NATS URL.
func redactURL(u string) string {
	for i := 0; i < len(u); i++ {
		if u[i] == '@' {
			if j := indexScheme(u); j >= 0 && j < i {
				return u[:j] + "***" + u[i:]
			}
		}
	}
	return u
}

func indexScheme(u string) int {
	for i := 0; i+2 < len(u); i++ {
		if u[i] == ':' && u[i+1] == '/' && u[i+2] == '/' {
			return i + 3
		}
	}
	return -1
}

// String describes the options without secrets.
func (o NATSOptions) String() string {
	auth := "none"
	switch {
	case o.CredsFile != "":
		auth = "creds file"
	case o.NKeySeedFile != "":
		auth = "nkey"
	case o.Token != "":
		auth = "token"
	case o.User != "":
		auth = "user " + o.User
	}
	return fmt.Sprintf("NATS %s (auth %s, tls-ca %q)", redactURL(o.URL), auth, o.TLSCAFile)
}
