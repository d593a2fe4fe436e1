package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// SilencesBucket holds the runtime silences (`notifier silence add`): one
// key, silencesKey, whose value is the whole list, changed only by
// compare-and-set, so two people adding silences at once both land, and a
// notifier reads every silence with one direct get (no consumer: on the
// watcher's embedded server the notifier may not create one there).
const SilencesBucket = "PCWATCH_SILENCES"

const silencesKey = "silences"

// Limits of the runtime silences: what a notifier reads from NATS is
// outside input, and the list is read every silencePoll.
const (
	maxSilences       = 500
	maxSilenceBytes   = 512 << 10
	maxSilenceComment = 1024
	// expiredKept is how long an expired silence stays listed (for
	// `silence list --all`) before an add prunes it.
	expiredKept = 7 * 24 * time.Hour
)

// RuntimeSilence mutes the events it matches on every channel from
// StartsAt until EndsAt. A deadline warning it mutes is held, not dropped:
// it is sent when the silence ends, or silence_lead before its deadline if
// the silence would last longer (see holdUntil).
type RuntimeSilence struct {
	ID        string    `json:"id"`
	Match     Match     `json:"match"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	CreatedAt time.Time `json:"createdAt"`
}

// Active reports whether the silence mutes at instant now.
func (s RuntimeSilence) Active(now time.Time) bool {
	return !now.Before(s.StartsAt) && now.Before(s.EndsAt)
}

type silenceDoc struct {
	Silences []RuntimeSilence `json:"silences"`
}

// SilenceError says the silences bucket holds something this notifier
// cannot use; the last good list stays in force.
type SilenceError struct {
	Err error
}

func (e *SilenceError) Error() string {
	return fmt.Sprintf("runtime silences (NATS KV %s, key %s): %v; fix it with `notifier silence list` / `notifier silence expire`, or delete the key (`nats kv del %s %s`) to start again",
		SilencesBucket, silencesKey, e.Err, SilencesBucket, silencesKey)
}

func (e *SilenceError) Unwrap() error { return e.Err }

// EnsureSilences creates the silences bucket (file storage, one value per
// key) or returns the existing one. ttl is ignored: silences end by their
// own EndsAt; the parameter matches openBucket.
func EnsureSilences(ctx context.Context, js jetstream.JetStream, _ time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SilencesBucket, Description: "pcwatch notifier runtime silences (notifier silence add|list|expire)",
		History: 1, Storage: jetstream.FileStorage, MaxValueSize: maxSilenceBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("creating KV bucket %s: %w", SilencesBucket, err)
	}
	return kv, nil
}

// decodeSilences reads the bucket's value strictly: unknown fields, more
// than maxSilences, an oversized value or a silence that does not compile
// are errors, never a partial list.
func decodeSilences(b []byte) ([]RuntimeSilence, error) {
	if len(b) > maxSilenceBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", len(b), maxSilenceBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc silenceDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a silence list: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a silence list: trailing data")
	}
	if len(doc.Silences) > maxSilences {
		return nil, fmt.Errorf("%d silences, more than the %d allowed", len(doc.Silences), maxSilences)
	}
	ids := map[string]bool{}
	for i, s := range doc.Silences {
		if _, err := compileSilence(s); err != nil {
			return nil, fmt.Errorf("silence %d (%q): %w", i, s.ID, err)
		}
		if ids[s.ID] {
			return nil, fmt.Errorf("silence id %q appears twice", s.ID)
		}
		ids[s.ID] = true
	}
	return doc.Silences, nil
}

// compileSilence checks one runtime silence and compiles its match.
func compileSilence(s RuntimeSilence) (compiledSilence, error) {
	if s.ID == "" || len(s.ID) > 64 || strings.ContainsFunc(s.ID, func(r rune) bool { return r < '!' || r > '~' }) {
		return compiledSilence{}, fmt.Errorf("bad id %q", s.ID)
	}
	if s.EndsAt.IsZero() || !s.EndsAt.After(s.StartsAt) {
		return compiledSilence{}, errors.New("it must end after it starts (give --end or --duration)")
	}
	for _, f := range []struct{ name, v string }{{"comment", s.Comment}, {"author", s.CreatedBy}} {
		if len(f.v) > maxSilenceComment || !utf8.ValidString(f.v) {
			return compiledSilence{}, fmt.Errorf("%s: more than %d bytes, or not UTF-8", f.name, maxSilenceComment)
		}
	}
	v := &validator{cfg: &Config{}, w: &walker{lines: map[string]int{}}}
	m, err := v.match("match", s.Match)
	if err != nil {
		return compiledSilence{}, err
	}
	if m.empty() {
		return compiledSilence{}, errors.New("match: empty: a silence needs at least one condition (it would mute everything)")
	}
	comment := s.Comment
	if s.CreatedBy != "" {
		comment = strings.TrimSpace(comment + " (" + s.CreatedBy + ")")
	}
	return compiledSilence{m: m, from: s.StartsAt, until: s.EndsAt, comment: comment, id: s.ID}, nil
}

// ListSilences returns the runtime silences, expired ones included, in the
// order they were added.
func ListSilences(ctx context.Context, js jetstream.JetStream) ([]RuntimeSilence, error) {
	kv, err := js.KeyValue(ctx, SilencesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", SilencesBucket, err)
	}
	l, _, err := readSilences(ctx, kv)
	return l, err
}

func readSilences(ctx context.Context, kv jetstream.KeyValue) ([]RuntimeSilence, uint64, error) {
	e, err := kv.Get(ctx, silencesKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s in %s: %w", silencesKey, SilencesBucket, err)
	}
	l, err := decodeSilences(e.Value())
	if err != nil {
		return nil, e.Revision(), &SilenceError{Err: err}
	}
	return l, e.Revision(), nil
}

// changeSilences applies f to the list and writes it back with
// compare-and-set, trying again when someone else wrote meanwhile.
func changeSilences(ctx context.Context, js jetstream.JetStream, f func([]RuntimeSilence) ([]RuntimeSilence, error)) error {
	kv, err := js.KeyValue(ctx, SilencesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = EnsureSilences(ctx, js, 0)
	}
	if err != nil {
		return fmt.Errorf("opening KV bucket %s: %w", SilencesBucket, err)
	}
	for range 10 {
		l, rev, err := readSilences(ctx, kv)
		if err != nil {
			return err
		}
		l, err = f(slices.Clone(l))
		if err != nil {
			return err
		}
		b, _ := json.Marshal(silenceDoc{Silences: l})
		if _, err := decodeSilences(b); err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, silencesKey, b)
		} else {
			_, err = kv.Update(ctx, silencesKey, b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("writing %s in %s: %w", silencesKey, SilencesBucket, err)
		}
	}
	return fmt.Errorf("writing %s in %s: too many concurrent changes, try again", silencesKey, SilencesBucket)
}

// AddSilence stores s with a new id (returned) and CreatedAt now; silences
// expired for more than a week are pruned on the way. s is checked as a
// notifier would check it.
func AddSilence(ctx context.Context, js jetstream.JetStream, s RuntimeSilence, now time.Time) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.ID, s.CreatedAt = hex.EncodeToString(b[:]), now.UTC()
	if s.StartsAt.IsZero() {
		s.StartsAt = now.UTC()
	}
	if _, err := compileSilence(s); err != nil {
		return "", err
	}
	if !s.EndsAt.After(now) {
		return "", errors.New("the silence would already be over: give an end in the future")
	}
	err := changeSilences(ctx, js, func(l []RuntimeSilence) ([]RuntimeSilence, error) {
		l = slices.DeleteFunc(l, func(o RuntimeSilence) bool { return now.Sub(o.EndsAt) > expiredKept })
		if len(l) >= maxSilences {
			return nil, fmt.Errorf("%d silences already: expire some first", len(l))
		}
		return append(l, s), nil
	})
	return s.ID, err
}

// ExpireSilence ends the silence id at now (it stays listed as expired).
func ExpireSilence(ctx context.Context, js jetstream.JetStream, id string, now time.Time) error {
	return changeSilences(ctx, js, func(l []RuntimeSilence) ([]RuntimeSilence, error) {
		i := slices.IndexFunc(l, func(s RuntimeSilence) bool { return s.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("no silence with id %q (see `notifier silence list`)", id)
		}
		if !l[i].EndsAt.After(now) {
			return nil, fmt.Errorf("silence %s already ended at %s", id, l[i].EndsAt.UTC().Format(time.RFC3339))
		}
		l[i].EndsAt = now.UTC()
		if !l[i].StartsAt.Before(l[i].EndsAt) {
			l[i].StartsAt = l[i].EndsAt.Add(-time.Second) // a future silence expired before it began
		}
		return l, nil
	})
}

// silencePoll is how often the notifier reads the runtime silences.
const silencePoll = 5 * time.Second

// silencePoller keeps cfg's runtime silences equal to SilencesBucket's. A
// value it cannot use leaves the last good list in force, with an error
// in the log at every change.
type silencePoller struct {
	kv    jetstream.KeyValue
	cfg   *Config
	log   interface{ Error(string, ...any) }
	hooks *testHooks
	rev   uint64
}

// refresh reads the list once; a failure keeps what is in force.
func (p *silencePoller) refresh(ctx context.Context) {
	l, rev, err := readSilences(ctx, p.kv)
	if err != nil {
		if rev != p.rev {
			p.log.Error("runtime silences not applied; the previous ones stay in force", "err", err)
			p.rev = rev
		}
		return
	}
	if rev != p.rev || p.cfg.runtime.Load() == nil {
		set := make([]compiledSilence, 0, len(l))
		for _, s := range l {
			cs, _ := compileSilence(s) // decodeSilences compiled each
			set = append(set, cs)
		}
		p.cfg.runtime.Store(&set)
		p.rev = rev
	}
	if p.hooks != nil && p.hooks.silences != nil {
		p.hooks.silences(len(l))
	}
}

// run refreshes every silencePoll until ctx ends.
func (p *silencePoller) run(ctx context.Context) error {
	every := silencePoll
	if p.hooks != nil && p.hooks.alertEvery > 0 {
		every = p.hooks.alertEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.refresh(ctx)
		}
	}
}
