package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/deadlinequery"
)

// digestMsg is one run of a digest, ready to render for any channel.
type digestMsg struct {
	ID        string    // digest-<name>-<local wall time>: the webhook-id, Message-ID and Nats-Msg-Id seed
	Name      string    // the digest's name
	Scheduled time.Time // the scheduled instant
	Zone      string    // the digest's time zone
	Within    time.Duration
	AsOf      time.Time // the watcher's clock when it answered
	Until     time.Time // the window's end
	Rows      []deadlinequery.Deadline
	Total     int // deadlines in the window, shown or not
	Warnings  []string
	loc       *time.Location
}

// more is how many deadlines the message does not show.
func (m *digestMsg) more() int { return max(0, m.Total-len(m.Rows)) }

func (m *digestMsg) window() string { return "the next " + humanDuration(m.Within) }

// title is the message's one-line summary.
func (m *digestMsg) title() string {
	if m.Total == 0 {
		return fmt.Sprintf("pcwatch digest %s: nothing closes in %s", m.Name, m.window())
	}
	return fmt.Sprintf("pcwatch digest %s: %d %s in %s", m.Name, m.Total, plural(m.Total, "deadline closes", "deadlines close"), m.window())
}

// intro says when the digest ran and what it covers.
func (m *digestMsg) intro() string {
	return fmt.Sprintf("What closes between %s and %s (%s), from the watcher's state.",
		m.AsOf.In(m.loc).Format("Mon 2 Jan 15:04"), m.Until.In(m.loc).Format("Mon 2 Jan 2006 15:04 MST"), m.Zone)
}

// moreLine is the line under a cut table.
func (m *digestMsg) moreLine() string {
	if m.more() == 0 {
		return ""
	}
	return fmt.Sprintf("… and %d more (watcher deadlines --within %s lists them all)", m.more(), m.Within)
}

func (m *digestMsg) footer() string {
	return fmt.Sprintf("pcwatch · %s · %s · scheduled %s", DigestType, m.ID, m.Scheduled.In(m.loc).Format("2006-01-02 15:04 MST"))
}

// digestCells are a row's cells as text: closes, in, kind, customer,
// offer, seats.
func (m *digestMsg) cells(d deadlinequery.Deadline) [6]string {
	cust := d.CustomerName
	if cust == "" {
		cust = d.CustomerID
	}
	offer := d.Offer
	if offer == "" {
		offer = d.SubscriptionID
	}
	seats := ""
	if d.Quantity > 0 {
		seats = strconv.Itoa(d.Quantity)
	}
	return [6]string{d.ClosesAt.In(m.loc).Format("Mon 02 Jan 15:04"), humanDuration(d.ClosesAt.Sub(m.AsOf)), d.Kind, cust, offer, seats}
}

var digestHeads = [6]string{"Closes", "In", "Kind", "Customer", "Offer", "Seats"}

// textTable is the rows as a fixed-width plain-text table (email, Slack's
// code block), names cut to keep lines short.
func (m *digestMsg) textTable(rows []deadlinequery.Deadline) []string {
	widths := [6]int{16, 7, 12, 28, 28, 5}
	line := func(c [6]string) string {
		var b strings.Builder
		for i, s := range c {
			s = truncate(widths[i], cli.OneLine(s))
			b.WriteString(s)
			if i < len(c)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(s))+2))
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	out := []string{line(digestHeads)}
	for _, d := range rows {
		out = append(out, line(m.cells(d)))
	}
	return out
}

// digestSender sends a digest run to one channel; like sender.send it
// returns a *SendError on failure.
type digestSender interface {
	sendDigest(ctx context.Context, m *digestMsg) error
	target() string
}

// newDigestSender builds the digest sender of a channel. It shares nothing
// with the channel's event sender but its settings and the HTTP client:
// a digest is one message per run, outside the channel's pacing.
func newDigestSender(ch *Channel, deps senderDeps) (digestSender, error) {
	post := poster{hc: deps.http, ch: ch.name, clk: deps.clock, url: ch.url}
	switch ch.Kind {
	case KindWebhook:
		w, err := newWebhook(ch, deps)
		if err != nil {
			return nil, err
		}
		return &webhookDigest{w}, nil
	case KindSlack:
		return &slackDigest{post}, nil
	case KindTeams:
		return &teamsDigest{post}, nil
	case KindEmail:
		return &emailDigest{&emailSender{ch: ch, clk: deps.clock}}, nil
	case KindNATS:
		if deps.conn == nil {
			return nil, fmt.Errorf("channel %s: a nats channel needs a NATS connection", ch.name)
		}
		s, err := newNATSSender(ch, deps.conn)
		if err != nil {
			return nil, err
		}
		return &natsDigest{s}, nil
	}
	return nil, fmt.Errorf("channel %s: unknown kind %q", ch.name, ch.Kind)
}

// DigestBody is the JSON a webhook or nats channel receives for a digest
// run (application/json; not a CloudEvent: digests are the notifier's
// messages, not events of the watcher's catalog). Rows are those the
// message shows (at most the digest's max_rows); Total counts them all.
type DigestBody struct {
	Type        string                   `json:"type"` // "notifier.digest"
	ID          string                   `json:"id"`   // the same on every retry and from every notifier: deduplicate on it
	Digest      string                   `json:"digest"`
	ScheduledAt time.Time                `json:"scheduledAt"`
	TimeZone    string                   `json:"timeZone"`
	Within      string                   `json:"within"`
	AsOf        time.Time                `json:"asOf"`
	Until       time.Time                `json:"until"`
	Total       int                      `json:"total"`
	More        int                      `json:"more"`
	Deadlines   []deadlinequery.Deadline `json:"deadlines"`
	Warnings    []string                 `json:"warnings,omitempty"`
}

func (m *digestMsg) body() ([]byte, error) {
	rows := m.Rows
	if rows == nil {
		rows = []deadlinequery.Deadline{}
	}
	return json.Marshal(DigestBody{Type: DigestType, ID: m.ID, Digest: m.Name, ScheduledAt: m.Scheduled.UTC(), TimeZone: m.Zone,
		Within: m.Within.String(), AsOf: m.AsOf.UTC(), Until: m.Until.UTC(), Total: m.Total, More: m.more(), Deadlines: rows, Warnings: m.Warnings})
}

// webhookDigest POSTs DigestBody, signed like events (Standard Webhooks,
// webhook-id = the digest run's id), with X-Pcwatch-Event-Type
// notifier.digest and X-Pcwatch-Digest naming the digest.
type webhookDigest struct{ w *webhookSender }

func (s *webhookDigest) target() string { return s.w.target() }

func (s *webhookDigest) sendDigest(ctx context.Context, m *digestMsg) error {
	body, err := m.body()
	if err != nil {
		return &SendError{Channel: s.w.ch.name, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	h := http.Header{}
	for k, v := range s.w.ch.Headers {
		h.Set(k, v)
	}
	ts := strconv.FormatInt(s.w.post.clk.Now().Unix(), 10)
	h.Set("Content-Type", "application/json")
	h.Set("Webhook-Id", m.ID)
	h.Set("Webhook-Timestamp", ts)
	if s.w.key != nil {
		h.Set("Webhook-Signature", Sign(s.w.key, m.ID, ts, body))
	}
	h.Set("X-Pcwatch-Event-Type", DigestType)
	h.Set("X-Pcwatch-Digest", m.Name)
	return s.w.post.post(ctx, body, h)
}

// natsDigest publishes DigestBody on the channel's subject (its template
// sees Type notifier.digest and the digest's name as Product), with
// Nats-Msg-Id the run's id.
type natsDigest struct{ s *natsSender }

func (s *natsDigest) target() string { return s.s.target() }

func (s *natsDigest) sendDigest(ctx context.Context, m *digestMsg) error {
	name := s.s.ch.name
	subj, err := s.s.ch.execSubject(digestTemplateData(m.Name, name))
	if err != nil {
		return &SendError{Channel: name, Reason: ReasonRender, Permanent: true, Err: err}
	}
	body, err := m.body()
	if err != nil {
		return &SendError{Channel: name, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	msg := nats.NewMsg(subj)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set("Pcwatch-Event-Type", DigestType)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.s.ch.Timeout.D())
		defer cancel()
	}
	if s.s.js != nil {
		if _, err := s.s.js.PublishMsg(ctx, msg); err != nil {
			return &SendError{Channel: name, Reason: ReasonNATS, Err: fmt.Errorf("JetStream publish on %s: %w", subj, err)}
		}
		return nil
	}
	before := s.s.nc.LastError()
	if err := s.s.nc.PublishMsg(msg); err != nil {
		return &SendError{Channel: name, Reason: ReasonNATS, Err: fmt.Errorf("publish on %s: %w", subj, err)}
	}
	if err := s.s.nc.FlushWithContext(ctx); err != nil {
		return &SendError{Channel: name, Reason: ReasonNATS, Err: fmt.Errorf("flushing the publish on %s: %w", subj, err)}
	}
	if err := s.s.nc.LastError(); err != nil && err != before && refusedPublish(err, subj) {
		return &SendError{Channel: name, Reason: ReasonNATS, Permanent: true, Err: fmt.Errorf("NATS refused the publish on %s (%v)", subj, err)}
	}
	return nil
}

// slackDigest posts a Block Kit message: a header, the window, the table
// in code blocks (monospace, so the columns line up) of at most
// slackSectionMax characters each, the warnings, "and N more", a footer.
type slackDigest struct{ post poster }

func (s *slackDigest) target() string { return s.post.target() }

func (s *slackDigest) sendDigest(ctx context.Context, m *digestMsg) error {
	body, err := json.Marshal(slackDigestPayload(m))
	if err != nil {
		return &SendError{Channel: s.post.ch, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	return s.post.post(ctx, body, nil)
}

// slackMaxBlocks is Slack's limit of blocks per message.
const slackMaxBlocks = 50

func slackDigestPayload(m *digestMsg) slackMessage {
	title := m.title()
	msg := slackMessage{
		Text: truncate(slackSectionMax, title),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(slackHeaderMax, title), Emoji: true}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.intro()))}},
		},
	}
	for _, w := range m.Warnings {
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackSectionMax, ":warning: "+slackEscape(w))}})
	}
	if len(m.Rows) > 0 {
		lines := m.textTable(m.Rows)
		shown := 0
		var b strings.Builder
		flush := func() {
			if b.Len() > 0 {
				msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: "```\n" + b.String() + "```"}})
				b.Reset()
			}
		}
		for i, l := range lines {
			l = slackEscape(l) + "\n"
			if b.Len()+len(l) > slackSectionMax-10 {
				flush()
				if len(msg.Blocks) >= slackMaxBlocks-3 {
					break
				}
			}
			b.WriteString(l)
			if i > 0 {
				shown++
			}
		}
		flush()
		if shown < len(m.Rows) {
			m = &digestMsg{ID: m.ID, Name: m.Name, Scheduled: m.Scheduled, Zone: m.Zone, Within: m.Within, AsOf: m.AsOf, Until: m.Until,
				Rows: m.Rows[:shown], Total: m.Total, loc: m.loc}
		}
	}
	if more := m.moreLine(); more != "" {
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: "_" + slackEscape(more) + "_"}})
	}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.footer()))}}})
	return msg
}

// teamsDigest posts an Adaptive Card 1.5 with a Table, kept under Teams'
// 28 KB by showing fewer rows (counted in "and N more").
type teamsDigest struct{ post poster }

func (s *teamsDigest) target() string { return s.post.target() }

func (s *teamsDigest) sendDigest(ctx context.Context, m *digestMsg) error {
	body, err := teamsDigestPayload(m)
	if err != nil {
		return &SendError{Channel: s.post.ch, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	return s.post.post(ctx, body, nil)
}

// teamsTableElement is an Adaptive Card 1.5 Table (and its rows and
// cells): cardElement has no room for columns.
type teamsTableElement struct {
	Type              string            `json:"type"`
	Text              string            `json:"text,omitempty"`
	Size              string            `json:"size,omitempty"`
	Weight            string            `json:"weight,omitempty"`
	Color             string            `json:"color,omitempty"`
	Wrap              bool              `json:"wrap,omitempty"`
	IsSubtle          bool              `json:"isSubtle,omitempty"`
	Spacing           string            `json:"spacing,omitempty"`
	Columns           []map[string]any  `json:"columns,omitempty"`
	Rows              []teamsTableRow   `json:"rows,omitempty"`
	FirstRowAsHeader  *bool             `json:"firstRowAsHeader,omitempty"`
	ShowGridLines     *bool             `json:"showGridLines,omitempty"`
	GridStyle         string            `json:"gridStyle,omitempty"`
	VerticalAlignment string            `json:"verticalCellContentAlignment,omitempty"`
	Items             []json.RawMessage `json:"items,omitempty"`
}

type teamsTableRow struct {
	Type  string           `json:"type"`
	Cells []teamsTableCell `json:"cells"`
	Style string           `json:"style,omitempty"`
}

type teamsTableCell struct {
	Type  string              `json:"type"`
	Items []teamsTableElement `json:"items"`
}

func teamsDigestCard(m *digestMsg, rows []deadlinequery.Deadline) map[string]any {
	body := []teamsTableElement{
		{Type: "TextBlock", Text: m.title(), Size: "Medium", Weight: "Bolder", Wrap: true},
		{Type: "TextBlock", Text: m.intro(), Wrap: true},
	}
	for _, w := range m.Warnings {
		body = append(body, teamsTableElement{Type: "TextBlock", Text: "⚠ " + w, Color: "Warning", Wrap: true})
	}
	if len(rows) > 0 {
		var cells [][]string
		for _, d := range rows {
			c := m.cells(d)
			cells = append(cells, c[:])
		}
		body = append(body, teamsTable([]int{3, 2, 2, 4, 4, 1}, digestHeads[:], cells))
	}
	if more := m.Total - len(rows); more > 0 {
		body = append(body, teamsTableElement{Type: "TextBlock", Text: fmt.Sprintf("… and %d more (watcher deadlines --within %s lists them all)", more, m.Within), IsSubtle: true, Wrap: true})
	}
	body = append(body, teamsTableElement{Type: "TextBlock", Text: m.footer(), Size: "Small", IsSubtle: true, Wrap: true, Spacing: "Medium"})
	return adaptiveCard15(body)
}

// teamsDigestPayload renders the card with as many rows as fit in
// teamsBudget.
func teamsDigestPayload(m *digestMsg) ([]byte, error) {
	rows := m.Rows
	for {
		b, err := json.Marshal(teamsDigestCard(m, rows))
		if err != nil {
			return nil, err
		}
		if len(b) <= teamsBudget {
			return b, nil
		}
		if len(rows) == 0 {
			return nil, fmt.Errorf("the Teams card does not fit in 28 KB")
		}
		cut := max(1, len(rows)*(len(b)-teamsBudget)/len(b)+1)
		rows = rows[:max(0, len(rows)-cut)]
	}
}

// emailDigest mails a plain-text table through the channel's SMTP
// settings (its subject and body templates are for events: a digest has
// its own), with a Message-ID derived from the run's id.
type emailDigest struct{ s *emailSender }

func (s *emailDigest) target() string { return s.s.target() }

func (s *emailDigest) sendDigest(ctx context.Context, m *digestMsg) error {
	return s.s.deliver(ctx, s.compose(m))
}

func (s *emailDigest) compose(m *digestMsg) []byte {
	var text strings.Builder
	text.WriteString(m.title() + "\n\n" + m.intro() + "\n")
	for _, w := range m.Warnings {
		text.WriteString("\nWARNING: " + w + "\n")
	}
	if len(m.Rows) > 0 {
		text.WriteString("\n")
		for _, l := range m.textTable(m.Rows) {
			text.WriteString(l + "\n")
		}
	}
	if more := m.moreLine(); more != "" {
		text.WriteString("\n" + more + "\n")
	}
	text.WriteString("\n-- \n" + m.footer() + "\n")

	ch := s.s.ch
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("Date", s.s.clk.Now().Format(time.RFC1123Z))
	hdr("From", ch.From)
	hdr("To", strings.Join(ch.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", truncate(200, m.title())))
	hdr("Message-ID", MessageID(m.ID, ch.name, ch.From))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated")
	hdr("X-Pcwatch-Event-Type", DigestType)
	hdr("X-Pcwatch-Digest", m.Name)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(text.String(), "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}
