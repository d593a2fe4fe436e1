package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
)

// TestOptions configure SendTest.
type TestOptions struct {
	Config  *Config
	Channel string
	// Type of the sample event; default subscription.quantity-changed.
	Type events.Type
	// Conn is needed by nats channels only.
	Conn       *nats.Conn
	HTTPClient *http.Client
	Clock      clock.Clock
}

// SendTest sends a realistic sample event (see SampleEvent) through one
// channel, bypassing NATS, routing and deduplication, and returns it. Its
// error is the channel's, e.g. a *SendError with the HTTP status.
func SendTest(ctx context.Context, o TestOptions) (*events.Event, error) {
	if o.Config == nil {
		return nil, fmt.Errorf("no configuration")
	}
	ch, ok := o.Config.Channels[o.Channel]
	if !ok {
		return nil, &ConfigError{File: o.Config.file, Path: "channels", Msg: fmt.Sprintf("no channel named %q (defined: %v)", o.Channel, o.Config.names)}
	}
	if o.Type == "" {
		o.Type = events.SubscriptionQuantityChanged
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	snd, err := newSender(ch, senderDeps{http: o.HTTPClient, conn: o.Conn, clock: o.Clock})
	if err != nil {
		return nil, err
	}
	ev, err := SampleEvent(o.Type, o.Clock.Now())
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	d, err := ev.DecodeData()
	if err != nil {
		return nil, err
	}
	td, err := channelMessage(ch.Kind, ev, d, o.Config.overrides, o.Channel)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, ch.Timeout.D())
	defer cancel()
	return ev, snd.send(sctx, &notification{Event: ev, Data: d, Body: body, Message: td, Attempt: 1})
}
