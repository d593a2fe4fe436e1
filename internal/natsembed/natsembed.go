// Package natsembed runs a NATS server with JetStream inside the watcher
// process: the zero-config default, and the server every test talks to.
//
// With Options.CredentialsDir set (the watcher always sets it) the server
// accepts only two NKey identities, the watcher's and the notifier's, each
// with its own permissions (see Credentials); without it the server is open
// to anyone who can reach its port, which only tests use.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultPort is where the notifier and the nats CLI find the watcher's
// embedded server.
const DefaultPort = 4222

// Options configure the embedded server.
type Options struct {
	// Host to listen on; default 127.0.0.1 (never exposed by default).
	Host string
	// Port to listen on; 0 means DefaultPort, -1 a random free port.
	Port int
	// StoreDir holds JetStream's files, e.g. <data-dir>/nats. Required.
	StoreDir string
	// Name is the server name; default "pcwatch".
	Name string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds start-up; default 10s.
	ReadyTimeout time.Duration
	// CredentialsDir, when set, makes the server require authentication:
	// the watcher's and the notifier's NKey seeds are read from this
	// directory, or generated there on first start (LoadCredentials).
	// Empty: no authentication (tests only).
	CredentialsDir string
	// NotifierSubjects are the subjects the notifier identity may publish
	// on besides its own state (its nats channels); default
	// DefaultNotifierSubjects. Only with CredentialsDir.
	NotifierSubjects []string
}

// Server is a running embedded NATS server.
type Server struct {
	ns    *server.Server
	port  int
	creds *Credentials
}

// Start starts the server and waits until it accepts connections. Every
// write is synced to disk (SyncAlways): an event JetStream acknowledged
// survives a crash of the machine, which the outbox relay relies on when it
// deletes acknowledged records. The server installs no signal handlers.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS: a store directory is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Name == "" {
		o.Name = "pcwatch"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded NATS store %s: %w", o.StoreDir, err)
	}
	var creds *Credentials
	if o.CredentialsDir != "" {
		if len(o.NotifierSubjects) == 0 {
			o.NotifierSubjects = DefaultNotifierSubjects
		}
		if err := CheckNotifierSubjects(o.NotifierSubjects); err != nil {
			return nil, err
		}
		var err error
		if creds, err = LoadCredentials(o.CredentialsDir); err != nil {
			return nil, err
		}
	}
	if o.Port > 0 {
		// Give a clear message for the most common failure rather than a
		// timeout: something already listens there.
		ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s:%d (%v): is another watcher or NATS server running? Stop it, choose another --nats-port, or connect to it with --nats-url nats://%s:%d",
				o.Host, o.Port, err, o.Host, o.Port)
		}
		ln.Close()
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   filepath.Clean(o.StoreDir),
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
	}
	if creds != nil {
		opts.Nkeys = creds.users(o.NotifierSubjects)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Logger != nil {
		ns.SetLogger(slogAdapter{o.Logger.With("component", "nats")}, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not become ready within %s (store %s)", o.ReadyTimeout, o.StoreDir)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS started without JetStream (store %s): check the directory is writable and has free space", o.StoreDir)
	}
	srv := &Server{ns: ns, creds: creds}
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		srv.port = a.Port
	}
	return srv, nil
}

// ClientURL is the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Credentials are the identities the server accepts; nil when it runs
// without authentication.
func (s *Server) Credentials() *Credentials { return s.creds }

// Port is the port the server listens (or listened) on.
func (s *Server) Port() int { return s.port }

// Shutdown stops the server and waits until it is down. It is idempotent.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// NATS returns the underlying server (tests use it to inspect state).
func (s *Server) NATS() *server.Server { return s.ns }

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  {}
