package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
)

// emailSender sends a plain-text mail per event through SMTP (net/smtp):
// STARTTLS (required when configured), implicit TLS or plain, AUTH PLAIN
// when a username is set. The Message-ID is derived from the event id and
// the channel, so a resend after a crash carries the same Message-ID and
// mail clients thread or drop it.
type emailSender struct {
	ch  *Channel
	clk clock.Clock
}

func (s *emailSender) target() string {
	return "smtp://" + net.JoinHostPort(s.ch.SMTP.Host, strconv.Itoa(s.ch.SMTP.Port))
}

func (s *emailSender) fail(reason string, code int, permanent bool, err error) *SendError {
	return &SendError{Channel: s.ch.name, Reason: reason, Status: code, Permanent: permanent, Err: fmt.Errorf("%s: %w", s.target(), err)}
}

// smtpError classifies an error of the SMTP conversation.
func (s *emailSender) smtpError(ctx context.Context, step string, err error) *SendError {
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code >= 500 {
			return s.fail(ReasonSMTPPerm, te.Code, true, fmt.Errorf("%s: %d %s", step, te.Code, te.Msg))
		}
		return s.fail(ReasonSMTPTemp, te.Code, false, fmt.Errorf("%s: %d %s", step, te.Code, te.Msg))
	}
	var ne net.Error
	if ctx.Err() == context.DeadlineExceeded || errors.As(err, &ne) && ne.Timeout() {
		return s.fail(ReasonTimeout, 0, false, fmt.Errorf("%s: %v", step, err))
	}
	return s.fail(ReasonNetwork, 0, false, fmt.Errorf("%s: %v", step, err))
}

func (s *emailSender) send(ctx context.Context, n *notification) error {
	msg, err := s.compose(n)
	if err != nil {
		return err
	}
	return s.deliver(ctx, msg)
}

// deliver sends one composed mail (headers and body) to the channel's
// recipients: events (send) and digests (sendDigest) alike.
func (s *emailSender) deliver(ctx context.Context, msg []byte) error {
	cfg := s.ch.SMTP
	var err error
	tlsCfg := &tls.Config{ServerName: cfg.Host, RootCAs: s.ch.rootCAs, MinVersion: tls.VersionTLS12}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	d := &net.Dialer{}
	var conn net.Conn
	if cfg.TLS == "tls" {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return s.smtpError(ctx, "connect", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c, err := smtp.NewClient(conn, cfg.Host)
	if err != nil {
		return s.smtpError(ctx, "greeting", err)
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return s.smtpError(ctx, "EHLO", err)
	}
	if cfg.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return s.fail(ReasonRejected, 0, true, errors.New("the server does not offer STARTTLS; set smtp.tls to tls (implicit TLS, usually port 465) or none"))
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return s.smtpError(ctx, "STARTTLS", err)
		}
	}
	if cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", cfg.Username, s.ch.password.value(), cfg.Host)); err != nil {
			var te *textproto.Error
			if !errors.As(err, &te) {
				// net/smtp refuses PLAIN over an unencrypted connection.
				return s.fail(ReasonRejected, 0, true, fmt.Errorf("AUTH: %v", err))
			}
			return s.smtpError(ctx, "AUTH", err)
		}
	}
	from, _ := mail.ParseAddress(s.ch.From)
	if err := c.Mail(from.Address); err != nil {
		return s.smtpError(ctx, "MAIL FROM", err)
	}
	for _, to := range s.ch.To {
		a, _ := mail.ParseAddress(to)
		if err := c.Rcpt(a.Address); err != nil {
			return s.smtpError(ctx, "RCPT TO "+a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return s.smtpError(ctx, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return s.smtpError(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return s.smtpError(ctx, "end of DATA", err)
	}
	_ = c.Quit() // the mail is accepted; a failed QUIT changes nothing
	return nil
}

func helloName() string {
	return "pcwatch-notifier.localdomain"
}

var msgIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// MessageID is the Message-ID of the mail an email channel sends for an
// event: "<event-id.channel@sender-domain>".
func MessageID(eventID, channel, from string) string {
	domain := "pcwatch.invalid"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			domain = d
		}
	}
	return "<" + msgIDUnsafe.ReplaceAllString(eventID, "_") + "." + channel + "@" + msgIDUnsafe.ReplaceAllString(domain, "_") + ">"
}

// compose renders the mail: RFC 5322 headers and a quoted-printable UTF-8
// plain-text body.
func (s *emailSender) compose(n *notification) ([]byte, error) {
	subject, err := execTemplate(s.ch.subjectTmpl, n.Message)
	if err != nil {
		return nil, &SendError{Channel: s.ch.name, Reason: ReasonRender, Permanent: true, Err: err}
	}
	body, err := execTemplate(s.ch.bodyTmpl, n.Message)
	if err != nil {
		return nil, &SendError{Channel: s.ch.name, Reason: ReasonRender, Permanent: true, Err: err}
	}
	subject = truncate(200, cli.OneLine(subject))
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("Date", s.clk.Now().Format(time.RFC1123Z))
	hdr("From", s.ch.From)
	hdr("To", strings.Join(s.ch.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Message-ID", MessageID(n.deliveryID(), s.ch.name, s.ch.From))
	if n.Notice != nil && n.Notice.Thread != "" {
		// A reminder or resolved notice is a reply to the first mail.
		first := MessageID(n.Notice.Thread, s.ch.name, s.ch.From)
		hdr("In-Reply-To", first)
		hdr("References", first)
	}
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated")
	hdr("X-Pcwatch-Event-Id", n.Event.ID)
	hdr("X-Pcwatch-Event-Type", string(n.Event.Type))
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
