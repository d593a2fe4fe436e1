package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
)

// Dead-letter queue.
const (
	DLQStream        = "PCWATCH_DLQ"
	DLQSubjectPrefix = "pcwatch.dlq."
	DLQMaxAge        = 30 * 24 * time.Hour
)

// Headers of a dead-lettered message. Its body is the original message.
const (
	HeaderDLQReason    = "Pcwatch-Dlq-Reason"     // a Reason constant
	HeaderDLQError     = "Pcwatch-Dlq-Error"      // the last error, one line, without secrets
	HeaderDLQStatus    = "Pcwatch-Dlq-Status"     // HTTP status or SMTP code, when there was one
	HeaderDLQAttempts  = "Pcwatch-Dlq-Attempts"   // deliveries tried
	HeaderDLQChannel   = "Pcwatch-Dlq-Channel"    // the channel that failed
	HeaderDLQSubject   = "Pcwatch-Dlq-Subject"    // the original NATS subject
	HeaderDLQStreamSeq = "Pcwatch-Dlq-Stream-Seq" // its sequence in PCWATCH_EVENTS
	HeaderDLQTime      = "Pcwatch-Dlq-Time"       // when it was dead-lettered (RFC 3339)
	HeaderEventID      = "Pcwatch-Event-Id"
	HeaderEventType    = "Pcwatch-Event-Type"
	HeaderCustomerID   = "Pcwatch-Customer-Id"
)

// DLQEntry is one dead-lettered event.
type DLQEntry struct {
	Seq          uint64          `json:"seq"` // sequence in PCWATCH_DLQ
	Time         time.Time       `json:"time"`
	Channel      string          `json:"channel"`
	EventID      string          `json:"eventId,omitempty"`
	Type         string          `json:"type,omitempty"`
	CustomerID   string          `json:"customerId,omitempty"`
	CustomerName string          `json:"customerName,omitempty"`
	Reason       string          `json:"reason"`
	Error        string          `json:"error,omitempty"`
	Status       int             `json:"status,omitempty"`
	Attempts     int             `json:"attempts"`
	Subject      string          `json:"subject,omitempty"`
	StreamSeq    uint64          `json:"streamSeq,omitempty"`
	Event        json.RawMessage `json:"event,omitempty"` // the CloudEvent, when it is JSON
	Body         []byte          `json:"-"`               // the original message
}

// EnsureDLQ creates the dead-letter stream if it does not exist (file
// storage, 30 days). An existing stream is left as its operator configured
// it.
func EnsureDLQ(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, DLQStream)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("looking up JetStream stream %s: %w", DLQStream, err)
	}
	s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "pcwatch notifier: events a channel could not deliver (see `notifier dlq list`)",
		Subjects:    []string{DLQSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      DLQMaxAge,
		Duplicates:  2 * time.Minute,
		Discard:     jetstream.DiscardOld,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, DLQStream)
	}
	if err != nil {
		return nil, fmt.Errorf("creating JetStream stream %s: %w", DLQStream, err)
	}
	return s, nil
}

// publishDLQ stores a dead-lettered message. Its Nats-Msg-Id is derived from
// the channel, the event id and the original stream sequence, so that
// dead-lettering the same message twice (a crash between the publish and
// the Term) stores it once.
func publishDLQ(ctx context.Context, js jetstream.JetStream, e DLQEntry, body []byte) error {
	msg := nats.NewMsg(DLQSubjectPrefix + e.Channel)
	msg.Data = body
	h := msg.Header
	h.Set(HeaderDLQReason, e.Reason)
	h.Set(HeaderDLQError, truncate(1000, cli.OneLine(e.Error)))
	if e.Status != 0 {
		h.Set(HeaderDLQStatus, strconv.Itoa(e.Status))
	}
	h.Set(HeaderDLQAttempts, strconv.Itoa(e.Attempts))
	h.Set(HeaderDLQChannel, e.Channel)
	h.Set(HeaderDLQSubject, e.Subject)
	if e.StreamSeq != 0 {
		h.Set(HeaderDLQStreamSeq, strconv.FormatUint(e.StreamSeq, 10))
	}
	h.Set(HeaderDLQTime, e.Time.UTC().Format(time.RFC3339Nano))
	if e.EventID != "" {
		h.Set(HeaderEventID, e.EventID)
		h.Set(HeaderEventType, e.Type)
		h.Set(HeaderCustomerID, e.CustomerID)
	}
	h.Set("Content-Type", events.ContentType)
	id := fmt.Sprintf("%s.%s.%d", e.Channel, e.EventID, e.StreamSeq)
	if e.StreamSeq == 0 {
		id = fmt.Sprintf("%s.%s.t%d", e.Channel, e.EventID, e.Time.UnixNano())
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(DLQStream)); err != nil {
		return fmt.Errorf("publishing to the dead-letter queue %s: %w", DLQStream, err)
	}
	return nil
}

func entryFromMsg(seq uint64, stored time.Time, h nats.Header, body []byte) DLQEntry {
	e := DLQEntry{
		Seq: seq, Time: stored, Channel: h.Get(HeaderDLQChannel), EventID: h.Get(HeaderEventID), Type: h.Get(HeaderEventType),
		CustomerID: h.Get(HeaderCustomerID), Reason: h.Get(HeaderDLQReason), Error: h.Get(HeaderDLQError),
		Subject: h.Get(HeaderDLQSubject), Body: body,
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime)); err == nil {
		e.Time = t
	}
	e.Status, _ = strconv.Atoi(h.Get(HeaderDLQStatus))
	e.Attempts, _ = strconv.Atoi(h.Get(HeaderDLQAttempts))
	e.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderDLQStreamSeq), 10, 64)
	if json.Valid(body) {
		e.Event = body
	}
	if ev, d, err := decodeEvent(body); err == nil {
		e.EventID, e.Type, e.CustomerID = ev.ID, shortType(ev.Type), d.CustomerID
		e.CustomerName = newTemplateData(ev, d, e.Channel).CustomerName
	}
	return e
}

// ListDLQ returns the dead-lettered events of channel (all channels when
// empty), oldest first. A missing DLQ stream is an empty list.
func ListDLQ(ctx context.Context, js jetstream.JetStream, channel string) ([]DLQEntry, error) {
	s, err := js.Stream(ctx, DLQStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up JetStream stream %s: %w", DLQStream, err)
	}
	filter := DLQSubjectPrefix + ">"
	if channel != "" {
		filter = DLQSubjectPrefix + channel
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("reading JetStream stream %s: %w", DLQStream, err)
	}
	var count uint64
	for _, n := range info.State.Subjects {
		count += n
	}
	if count == 0 {
		return nil, nil
	}
	// Read message by message (the next one on the filter from a sequence
	// on) rather than through a consumer: on the watcher's embedded NATS
	// server the notifier may not create consumers on this stream (a push
	// consumer's deliver subject could copy dead letters into the event
	// stream).
	var out []DLQEntry
	for seq := uint64(1); uint64(len(out)) < count; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // messages deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading JetStream stream %s: %w", DLQStream, err)
		}
		out = append(out, entryFromMsg(m.Sequence, m.Time, m.Header, m.Data))
		seq = m.Sequence + 1
	}
	return out, nil
}

// ReplayOptions select dead-lettered events to send again.
type ReplayOptions struct {
	// Config gives the channels, as configured now. Required.
	Config *Config
	// Conn reaches the NATS server holding PCWATCH_DLQ. Required.
	Conn *nats.Conn
	// Channel restricts the replay to one channel; empty means all.
	Channel string
	// IDs restricts the replay to these event ids; empty means all.
	IDs        []string
	Logger     *slog.Logger
	HTTPClient *http.Client
	Clock      clock.Clock
}

// ReplayResult is the outcome of one entry.
type ReplayResult struct {
	Entry     DLQEntry
	Delivered bool   // sent now; the DLQ entry is deleted
	Skipped   string // why nothing was sent (e.g. already delivered); the entry is deleted
	Err       error  // the entry stays in the DLQ
}

// ReplayDLQ sends the selected dead-lettered events through their channels
// as configured now, with the same senders the consumers use. An event
// delivered now (or found already delivered) is recorded in the deliveries
// bucket and deleted from the DLQ; a failure leaves it there and is
// reported in its result. Routing and silences do not apply: a replay is
// an explicit request. The error is for problems reaching NATS; an id
// without an entry is a result with an error.
func ReplayDLQ(ctx context.Context, o ReplayOptions) ([]ReplayResult, error) {
	if o.Config == nil || o.Conn == nil {
		return nil, errors.New("replay needs a configuration and a NATS connection")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = newHTTPClient()
	}
	cfg := o.Config
	if o.Channel != "" {
		if _, ok := cfg.Channels[o.Channel]; !ok {
			// Entries of a removed channel can still be listed; replaying
			// them needs the channel.
			log.Warn("replay: the channel is not in the configuration; its entries will fail", "channel", o.Channel)
		}
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, err
	}
	entries, err := ListDLQ(ctx, js, o.Channel)
	if err != nil {
		return nil, err
	}
	if len(o.IDs) > 0 {
		var sel []DLQEntry
		for _, e := range entries {
			if slices.Contains(o.IDs, e.EventID) {
				sel = append(sel, e)
			}
		}
		entries = sel
	}
	var results []ReplayResult
	for _, id := range o.IDs {
		if !slices.ContainsFunc(entries, func(e DLQEntry) bool { return e.EventID == id }) {
			results = append(results, ReplayResult{Entry: DLQEntry{EventID: id, Channel: o.Channel}, Err: fmt.Errorf("no dead-lettered event with id %s", id)})
		}
	}
	if len(entries) == 0 {
		return results, nil
	}
	s, err := js.Stream(ctx, DLQStream)
	if err != nil {
		return nil, fmt.Errorf("looking up JetStream stream %s: %w", DLQStream, err)
	}
	kv, err := openDeliveries(ctx, js, cfg.Delivery.DedupeTTL.D(), log)
	if err != nil {
		return nil, err
	}
	store := newDeliveryStore(js, kv.deliveries, kv.claims, "replay-"+randomHex(4), o.Clock, cfg.Delivery.DedupeTTL.D(), func(ch string) time.Duration {
		return cfg.Delivery.AckWait.D() + cfg.Channels[ch].Timeout.D()
	})
	senders := map[string]sender{}
	for _, e := range entries {
		r := ReplayResult{Entry: e}
		r.Delivered, r.Skipped, r.Err = replayOne(ctx, o, s, store, senders, e)
		if r.Err != nil {
			log.Warn("replay failed; the event stays in the dead-letter queue", "channel", e.Channel, "event_id", e.EventID, "err", r.Err)
		} else {
			log.Info("replayed", "channel", e.Channel, "event_id", e.EventID, "delivered", r.Delivered, "skipped", r.Skipped)
		}
		results = append(results, r)
	}
	return results, nil
}

func replayOne(ctx context.Context, o ReplayOptions, s jetstream.Stream, store *deliveryStore, senders map[string]sender, e DLQEntry) (bool, string, error) {
	ch, ok := o.Config.Channels[e.Channel]
	if !ok {
		return false, "", &SendError{Channel: e.Channel, Reason: ReasonConfig, Permanent: true, Err: fmt.Errorf("channel %q is not in the configuration", e.Channel)}
	}
	ev, d, err := decodeEvent(e.Body)
	if err != nil {
		return false, "", &SendError{Channel: e.Channel, Reason: ReasonUndecodable, Permanent: true, Err: err}
	}
	if se := o.Config.admit(e.Channel, ev); se != nil {
		return false, "", se
	}
	key := deliveryKey(e.Channel, ev.ID)
	cl, err := store.claim(ctx, e.Channel, key, 0, 0)
	if err != nil {
		return false, "", err
	}
	switch cl.outcome {
	case duplicate:
		if err := s.DeleteMsg(ctx, e.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, "", fmt.Errorf("deleting DLQ message %d: %w", e.Seq, err)
		}
		return false, "already delivered", nil
	case busy:
		return false, "", fmt.Errorf("a running notifier is delivering event %s on %s right now; try again in %s", ev.ID, e.Channel, cl.wait.Round(time.Second))
	}
	snd, ok := senders[e.Channel]
	if !ok {
		snd, err = newSender(ch, senderDeps{http: o.HTTPClient, conn: o.Conn, clock: o.Clock})
		if err != nil {
			_ = store.release(ctx, key, cl.rev, stateDead)
			return false, "", err
		}
		senders[e.Channel] = snd
	}
	td, err := channelMessage(ch.Kind, ev, d, o.Config.overrides, e.Channel)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, ch.Timeout.D())
		err = snd.send(sctx, &notification{Event: ev, Data: d, Body: e.Body, Message: td, Subject: e.Subject, Attempt: e.Attempts + 1})
		cancel()
	}
	if err != nil {
		_ = store.release(ctx, key, cl.rev, stateDead)
		return false, "", err
	}
	if err := store.delivered(ctx, key, cl.rev); err != nil {
		return true, "", fmt.Errorf("sent, but %w", err)
	}
	if err := s.DeleteMsg(ctx, e.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, "", fmt.Errorf("sent, but deleting DLQ message %d failed: %w", e.Seq, err)
	}
	return true, "", nil
}

// decodeEvent reads a message body as the consumer does: a pcwatch
// CloudEvent whose data object decodes.
func decodeEvent(body []byte) (*events.Event, *events.Data, error) {
	ev, err := events.Decode(body)
	if err != nil {
		return nil, nil, err
	}
	d, err := ev.DecodeData()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", events.ErrNotCloudEvent, err)
	}
	return ev, d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
