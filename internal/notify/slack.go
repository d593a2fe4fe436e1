package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Slack limits (Block Kit).
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackMaxFields  = 10
	slackChangesMax = 20
)

// slackSender posts a Block Kit message to a Slack incoming webhook: a
// header with the title, a section with the text, a section of fields
// (the facts), the changes, and a context line with the event id. text is
// the notification fallback.
type slackSender struct {
	ch   *Channel
	post poster
}

func (s *slackSender) target() string { return s.post.target() }

func (s *slackSender) send(ctx context.Context, n *notification) error {
	body, err := json.Marshal(slackPayload(n.Message))
	if err != nil {
		return &SendError{Channel: s.ch.name, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	return s.post.post(ctx, body, nil)
}

type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackEscape escapes the three characters mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackGroupRows is how many rows of a grouped message Slack shows (a
// message holds at most 50 blocks).
const slackGroupRows = 40

func slackPayload(m *TemplateData) slackMessage {
	if m.Group != nil {
		return slackGroupPayload(m)
	}
	icon := map[string]string{"warning": ":warning: ", "critical": ":rotating_light: "}[m.Severity]
	msg := slackMessage{
		Text: truncate(slackSectionMax, m.Title+"\n"+m.Text+"\n"+m.Footer),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(slackHeaderMax, icon+m.Title), Emoji: true}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.Text))}},
		},
	}
	var fields []slackText
	for _, f := range m.Facts {
		if len(fields) == slackMaxFields {
			break
		}
		fields = append(fields, slackText{Type: "mrkdwn", Text: truncate(slackFieldMax, "*"+slackEscape(f.Name)+"*\n"+slackEscape(f.Value))})
	}
	if len(fields) > 0 {
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Fields: fields})
	}
	if len(m.Changes) > 0 {
		var b strings.Builder
		b.WriteString("*Changes*")
		shown := 0
		for _, c := range m.Changes {
			line := fmt.Sprintf("\n• `%s`: %s → %s", slackEscape(c.Field), slackEscape(c.Old), slackEscape(c.New))
			if shown == slackChangesMax || b.Len()+len(line) > slackSectionMax-100 {
				break
			}
			b.WriteString(line)
			shown++
		}
		if more := len(m.Changes) + m.MoreChanges - shown; more > 0 {
			fmt.Fprintf(&b, "\n_… and %d more (see the event in pcwatch)_", more)
		}
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: b.String()}})
	}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.Footer))}}})
	return msg
}

// slackGroupPayload is a grouped message: the header and summary, then one
// section per event (its title; product, detail) as a table, at most
// slackGroupRows, then the footer.
func slackGroupPayload(m *TemplateData) slackMessage {
	icon := map[string]string{"warning": ":warning: ", "critical": ":rotating_light: "}[m.Severity]
	msg := slackMessage{
		Text: truncate(slackSectionMax, m.Title+"\n"+m.Text),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(slackHeaderMax, icon+m.Title), Emoji: true}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.Text))}},
			{Type: "divider"},
		},
	}
	for i, row := range m.Group {
		if i == slackGroupRows {
			msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn",
				Text: fmt.Sprintf("_… and %d more events (see pcwatch)_", len(m.Group)-i)}}})
			break
		}
		fields := []slackText{{Type: "mrkdwn", Text: truncate(slackFieldMax, "*"+slackEscape(row.Title)+"*")}}
		if d := strings.TrimSpace(row.Product + "\n" + row.Detail); d != "" {
			fields = append(fields, slackText{Type: "mrkdwn", Text: truncate(slackFieldMax, slackEscape(d))})
		}
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Fields: fields})
	}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(slackSectionMax, slackEscape(m.Footer))}}})
	return msg
}
