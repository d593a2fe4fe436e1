package stream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/stream"
)

func TestEnsure(t *testing.T) {
	srv := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, srv.ClientURL()))
	ctx := context.Background()
	s, err := stream.Ensure(ctx, js, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.MaxAge != 30*24*time.Hour ||
		cfg.Duplicates != time.Hour || cfg.MaxBytes != 1<<30 || strings.Join(cfg.Subjects, ",") != "pcwatch.events.>,pcwatch.ops.>" {
		t.Errorf("stream config = %+v", cfg)
	}
	// Idempotent.
	if _, err := stream.Ensure(ctx, js, stream.Options{}); err != nil {
		t.Fatal(err)
	}
	// A limit change is applied in place.
	s, err = stream.Ensure(ctx, js, stream.Options{MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 7*24*time.Hour || c.MaxBytes != 1<<20 {
		t.Errorf("limits not updated: %+v", c)
	}
	// A storage change cannot be: a clear error naming the stream, the
	// field and the fix.
	_, err = stream.Ensure(ctx, js, stream.Options{Memory: true})
	var sce *stream.ConfigError
	if !errors.As(err, &sce) || sce.Field != "storage" {
		t.Fatalf("err = %v, want a ConfigError on storage", err)
	}
	for _, want := range []string{"PCWATCH_EVENTS", "storage", "nats stream rm"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Replicas beyond a single server cannot be applied either.
	if _, err := stream.Ensure(ctx, js, stream.Options{Replicas: 3}); !errors.As(err, &sce) || sce.Field != "replicas" {
		t.Errorf("replicas 3 on one server: %v", err)
	}
}
