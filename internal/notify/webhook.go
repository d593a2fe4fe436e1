package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/events"
)

// webhookSender POSTs the CloudEvent itself (structured mode, the bytes as
// received) signed per Standard Webhooks (https://www.standardwebhooks.com):
//
//	webhook-id:        the event id (the same on every retry, so receivers dedupe on it)
//	webhook-timestamp: Unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>
//
// where key is the base64-decoded part of a "whsec_" secret, or the raw
// secret. X-Pcwatch-Event-Id and X-Pcwatch-Event-Type repeat the id and
// type; X-Pcwatch-Attempt counts attempts.
type webhookSender struct {
	ch   *Channel
	post poster
	key  []byte // nil: unsigned
}

func newWebhook(ch *Channel, deps senderDeps) (*webhookSender, error) {
	w := &webhookSender{ch: ch, post: poster{hc: deps.http, ch: ch.name, clk: deps.clock, url: ch.url}}
	if ch.secret.set() {
		k, err := signingKey(ch.secret.value())
		if err != nil {
			return nil, err
		}
		w.key = k
	}
	return w, nil
}

func (w *webhookSender) target() string { return w.post.target() }

func (w *webhookSender) send(ctx context.Context, n *notification) error {
	h := http.Header{}
	for k, v := range w.ch.Headers {
		h.Set(k, v)
	}
	ts := strconv.FormatInt(w.post.clk.Now().Unix(), 10)
	h.Set("Content-Type", events.ContentType)
	if n.Group != nil {
		// A CloudEvents JSON batch (https://github.com/cloudevents/spec,
		// JSON format, batched mode).
		h.Set("Content-Type", "application/cloudevents-batch+json")
		h.Set("X-Pcwatch-Group-Size", strconv.Itoa(len(n.Group)))
	}
	id := n.deliveryID()
	h.Set("Webhook-Id", id)
	h.Set("Webhook-Timestamp", ts)
	if w.key != nil {
		h.Set("Webhook-Signature", Sign(w.key, id, ts, n.Body))
	}
	h.Set("X-Pcwatch-Event-Id", n.Event.ID)
	h.Set("X-Pcwatch-Event-Type", string(n.Event.Type))
	if nt := n.Notice; nt != nil {
		// A follow-up of the warning in the body (the same CloudEvent).
		h.Set("X-Pcwatch-Notice", nt.Kind)
		h.Set("X-Pcwatch-Notice-Reason", cli.OneLine(nt.Reason))
		if nt.Thread != "" {
			h.Set("X-Pcwatch-Thread-Id", nt.Thread)
		}
	}
	if n.Attempt > 0 {
		h.Set("X-Pcwatch-Attempt", strconv.Itoa(n.Attempt))
	}
	return w.post.post(ctx, n.Body, h)
}

// Sign returns the Standard Webhooks signature header value of one
// message: "v1," followed by the base64 HMAC-SHA256 of id.timestamp.body.
func Sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
