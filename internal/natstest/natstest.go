// Package natstest gives tests a real in-process nats-server with
// JetStream, connections to it, and a way to read a stream back in order.
// Everything started is stopped by t.Cleanup.
package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// Start runs a server on a free port with its store in a fresh temporary
// directory.
func Start(t testing.TB) *natsembed.Server {
	t.Helper()
	return StartAt(t, t.TempDir(), -1)
}

// StartAt runs a server with its store in dir on port (-1: a free one);
// tests restart a server on the same store and port with it.
func StartAt(t testing.TB, dir string, port int) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect dials url the way pcwatch does (natsconn.Connect).
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(natsconn.Options{URL: url, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// EnsureEvents creates PCWATCH_EVENTS with o (stream.Ensure).
func EnsureEvents(t testing.TB, nc *nats.Conn, o stream.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, JetStream(t, nc), o); err != nil {
		t.Fatal(err)
	}
}

// ReadStream returns every message of a stream, in stream order.
func ReadStream(t testing.TB, nc *nats.Conn, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := JetStream(t, nc).Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
