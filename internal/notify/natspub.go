package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
)

// natsSender republishes the CloudEvent on a subject rendered from the
// channel's template, with Nats-Msg-Id = the event id (so a JetStream
// stream behind the subject drops a resend), Content-Type, and
// Pcwatch-Event-Type and Pcwatch-Source-Subject headers. With jetstream:
// true it waits for the stream's acknowledgement; otherwise a core publish
// is flushed to the server.
type natsSender struct {
	ch *Channel
	nc *nats.Conn
	js jetstream.JetStream
}

func newNATSSender(ch *Channel, nc *nats.Conn) (*natsSender, error) {
	s := &natsSender{ch: ch, nc: nc}
	if ch.JetStream {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		s.js = js
	}
	return s, nil
}

func (s *natsSender) target() string { return "nats:" + s.ch.Subject }

// execSubject renders a nats channel's subject; other kinds have none.
func (ch *Channel) execSubject(m *TemplateData) (string, error) {
	if ch.Kind != KindNATS {
		return "", nil
	}
	subj, err := execTemplate(ch.subjectTmpl, m)
	if err != nil {
		return "", err
	}
	subj = strings.TrimSpace(subj)
	if err := checkPublishSubject(subj); err != nil {
		return "", err
	}
	return subj, nil
}

func checkPublishSubject(s string) error {
	switch {
	case s == "":
		return errors.New("the subject renders empty")
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("subject %q contains whitespace", s)
	case strings.HasPrefix(s, "pcwatch."):
		return fmt.Errorf("subject %q is inside pcwatch's own subject space", s)
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("subject %q has an empty or wildcard token", s)
		}
	}
	return nil
}

func (s *natsSender) send(ctx context.Context, n *notification) error {
	subj, err := s.ch.execSubject(n.Message)
	if err != nil {
		return &SendError{Channel: s.ch.name, Reason: ReasonRender, Permanent: true, Err: err}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.ch.Timeout.D())
		defer cancel()
	}
	msg := nats.NewMsg(subj)
	msg.Data = n.Body
	msg.Header.Set(jetstream.MsgIDHeader, n.deliveryID())
	msg.Header.Set("Content-Type", events.ContentType)
	if n.Group != nil {
		msg.Header.Set("Content-Type", "application/cloudevents-batch+json")
	}
	msg.Header.Set("Pcwatch-Event-Type", string(n.Event.Type))
	if n.Subject != "" {
		msg.Header.Set("Pcwatch-Source-Subject", n.Subject)
	}
	if s.js != nil {
		if _, err := s.js.PublishMsg(ctx, msg); err != nil {
			return &SendError{Channel: s.ch.name, Reason: ReasonNATS, Err: fmt.Errorf("JetStream publish on %s: %w", subj, err)}
		}
		return nil
	}
	// A core publish the server refuses (permissions) is answered with an
	// asynchronous -ERR, which arrives before the flush's PONG and becomes
	// the connection's last error: compare it before and after, so a
	// refused publish is a failure, not a silent drop.
	before := s.nc.LastError()
	if err := s.nc.PublishMsg(msg); err != nil {
		return &SendError{Channel: s.ch.name, Reason: ReasonNATS, Err: fmt.Errorf("publish on %s: %w", subj, err)}
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return &SendError{Channel: s.ch.name, Reason: ReasonNATS, Err: fmt.Errorf("flushing the publish on %s: %w", subj, err)}
	}
	if err := s.nc.LastError(); err != nil && err != before && refusedPublish(err, subj) {
		return &SendError{Channel: s.ch.name, Reason: ReasonNATS, Permanent: true,
			Err: fmt.Errorf("NATS refused the publish on %s (%v): give the notifier's identity publish rights on it (with the watcher's embedded server: --nats-notifier-subjects)", subj, err)}
	}
	return nil
}

// refusedPublish reports whether err is the server refusing a publish on
// subj.
func refusedPublish(err error, subj string) bool {
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), "publish to \""+strings.ToLower(subj)+"\"")
}
