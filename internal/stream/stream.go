// Package stream defines PCWATCH_EVENTS, the JetStream stream the relay
// publishes pcwatch's events onto and the notifier consumes them from: its
// name, its subjects, its limits, and Ensure, which creates it or brings it
// to those limits.
//
// Who may call: the watcher at start-up (and while NATS is unreachable, until
// it succeeds); tests and tools that need the stream. Ensure is idempotent.
// The event contract itself (types, subjects, bodies) is package events.
package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The stream's name and defaults.
const (
	Name              = "PCWATCH_EVENTS"
	DefaultMaxAge     = 30 * 24 * time.Hour
	DefaultMaxBytes   = 1 << 30 // 1 GiB
	DefaultDuplicates = time.Hour
)

// Subjects are the subjects PCWATCH_EVENTS captures. Callers must not
// modify the slice.
var Subjects = []string{"pcwatch.events.>", "pcwatch.ops.>"}

// Options shape PCWATCH_EVENTS. The zero value gives the defaults:
// limits retention, file storage, 30 days, 1 GiB, a 1-hour duplicate window,
// one replica.
type Options struct {
	Name       string
	MaxAge     time.Duration
	MaxBytes   int64
	Duplicates time.Duration
	Replicas   int
	// Memory selects memory storage (tests, throwaway demos).
	Memory bool
}

func (o Options) config() jetstream.StreamConfig {
	if o.Name == "" {
		o.Name = Name
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Duplicates == 0 {
		o.Duplicates = DefaultDuplicates
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "pcwatch change and deadline events (CloudEvents); see docs/events.md",
		Subjects:    slices.Clone(Subjects),
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		MaxAge:      o.MaxAge,
		MaxBytes:    o.MaxBytes,
		Duplicates:  o.Duplicates,
		Replicas:    o.Replicas,
		Discard:     jetstream.DiscardOld,
	}
}

// ConfigError says the existing stream cannot be brought to the
// wanted configuration in place.
type ConfigError struct {
	Stream string
	Field  string
	Have   any
	Want   any
	Err    error
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("JetStream stream %s exists with %s %v but pcwatch is configured for %v", e.Stream, e.Field, e.Have, e.Want)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; NATS cannot change this in place: either configure pcwatch to match the stream, or back up and delete the stream (nats stream rm " + e.Stream + ") so pcwatch recreates it"
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Ensure creates the stream or brings an existing one to the wanted
// limits. It is idempotent: calling it again with the same options changes
// nothing. A difference NATS cannot apply in place (storage type, or
// replicas on a server that refuses) is a *ConfigError, never a silently
// mismatched stream. Any other error (NATS unreachable, a permission
// denied) is returned wrapped and may be retried.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.Stream, error) {
	want := o.config()
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("creating JetStream stream %s on %v: %w", want.Name, want.Subjects, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up JetStream stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if have.Storage != want.Storage {
		return nil, &ConfigError{Stream: want.Name, Field: "storage", Have: have.Storage, Want: want.Storage}
	}
	if have.Retention != want.Retention {
		return nil, &ConfigError{Stream: want.Name, Field: "retention", Have: have.Retention, Want: want.Retention}
	}
	if streamMatches(have, want) {
		return s, nil
	}
	upd := have
	upd.Description = want.Description
	upd.Subjects = want.Subjects
	upd.MaxAge, upd.MaxBytes, upd.Duplicates, upd.Replicas, upd.Discard = want.MaxAge, want.MaxBytes, want.Duplicates, want.Replicas, want.Discard
	s, err = js.UpdateStream(ctx, upd)
	if err != nil {
		field, hv, wv := "configuration", any(have), any(want)
		if have.Replicas != want.Replicas {
			field, hv, wv = "replicas", have.Replicas, want.Replicas
		}
		return nil, &ConfigError{Stream: want.Name, Field: field, Have: hv, Want: wv, Err: err}
	}
	return s, nil
}

func streamMatches(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes &&
		have.Duplicates == want.Duplicates && have.Replicas == want.Replicas && have.Discard == want.Discard &&
		have.Description == want.Description
}
