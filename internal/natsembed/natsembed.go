// Package natsembed runs a NATS server with JetStream inside the watcher
// process: the zero-config default, and the server every test talks to.
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
}

// Server is a running embedded NATS server.
type Server struct {
	ns   *server.Server
	port int
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
	srv := &Server{ns: ns}
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		srv.port = a.Port
	}
	return srv, nil
}

// ClientURL is the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

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
