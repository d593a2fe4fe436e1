package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// TeamsMaxBytes is the largest message a Teams workflow webhook accepts
// (28 KB); payloads are kept below it.
const TeamsMaxBytes = 28 * 1024

// teamsBudget leaves room for what the workflow adds.
const teamsBudget = TeamsMaxBytes - 1024

// teamsSender posts an Adaptive Card 1.4 to a Teams workflow ("Post to a
// channel when a webhook request is received") webhook.
type teamsSender struct {
	ch   *Channel
	post poster
}

func (s *teamsSender) target() string { return s.post.target() }

func (s *teamsSender) send(ctx context.Context, n *notification) error {
	body, err := teamsPayload(n.Message)
	if err != nil {
		return &SendError{Channel: s.ch.name, Reason: ReasonRejected, Permanent: true, Err: err}
	}
	return s.post.post(ctx, body, nil)
}

type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"`
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"`
	Version string         `json:"version"`
	Body    []cardElement  `json:"body"`
	MSTeams map[string]any `json:"msteams,omitempty"`
}

type cardElement struct {
	Type     string     `json:"type"`
	Text     string     `json:"text,omitempty"`
	Size     string     `json:"size,omitempty"`
	Weight   string     `json:"weight,omitempty"`
	Color    string     `json:"color,omitempty"`
	Wrap     bool       `json:"wrap,omitempty"`
	IsSubtle bool       `json:"isSubtle,omitempty"`
	Spacing  string     `json:"spacing,omitempty"`
	Facts    []cardFact `json:"facts,omitempty"`
}

type cardFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// teamsPayload renders the card and shrinks it below teamsBudget: first the
// change list is cut (with a note saying how many were left out), then the
// text.
func teamsPayload(m *TemplateData) ([]byte, error) {
	if m.Group != nil {
		return teamsGroupPayload(m)
	}
	total := len(m.Changes) + m.MoreChanges
	text := m.Text
	for shown := len(m.Changes); ; {
		b, err := json.Marshal(teamsCard(m, text, shown, total))
		if err != nil {
			return nil, err
		}
		if len(b) <= teamsBudget {
			return b, nil
		}
		switch {
		case shown > 0:
			// Cut in proportion to the excess, at least one.
			cut := max(1, shown*(len(b)-teamsBudget)/len(b)+1)
			shown = max(0, shown-cut)
		case len(text) > 500:
			text = truncateBytes(text, len(text)/2)
		default:
			return nil, errors.New("the Teams card does not fit in 28 KB")
		}
	}
}

func teamsCard(m *TemplateData, text string, shown, total int) teamsMessage {
	color := map[string]string{"warning": "Warning", "critical": "Attention"}[m.Severity]
	body := []cardElement{
		{Type: "TextBlock", Text: m.Title, Size: "Medium", Weight: "Bolder", Color: color, Wrap: true},
		{Type: "TextBlock", Text: text, Wrap: true},
	}
	var facts []cardFact
	for _, f := range m.Facts {
		facts = append(facts, cardFact{Title: f.Name, Value: f.Value})
	}
	if len(facts) > 0 {
		body = append(body, cardElement{Type: "FactSet", Facts: facts})
	}
	if total > 0 {
		body = append(body, cardElement{Type: "TextBlock", Text: "Changes", Weight: "Bolder", Spacing: "Medium", Wrap: true})
		var cf []cardFact
		for _, c := range m.Changes[:min(shown, len(m.Changes))] {
			cf = append(cf, cardFact{Title: c.Field, Value: c.Old + " → " + c.New})
		}
		if len(cf) > 0 {
			body = append(body, cardElement{Type: "FactSet", Facts: cf})
		}
		if shown < total {
			body = append(body, cardElement{Type: "TextBlock", Text: fmt.Sprintf("… and %d more changes not shown (the message would exceed Teams' 28 KB limit); see the event in pcwatch.", total-shown), IsSubtle: true, Wrap: true})
		}
	}
	body = append(body, cardElement{Type: "TextBlock", Text: m.Footer, Size: "Small", IsSubtle: true, Wrap: true, Spacing: "Medium"})
	return teamsMessage{
		Type: "message",
		Attachments: []teamsAttachment{{
			ContentType: "application/vnd.microsoft.card.adaptive",
			Content: adaptiveCard{
				Schema:  "http://adaptivecards.io/schemas/adaptive-card.json",
				Type:    "AdaptiveCard",
				Version: "1.4",
				Body:    body,
				MSTeams: map[string]any{"width": "Full"},
			},
		}},
	}
}

// teamsGroupPayload is a grouped message as an Adaptive Card 1.5 with a
// table (event, product, detail), cut to fit teamsBudget with a note of
// what was left out.
func teamsGroupPayload(m *TemplateData) ([]byte, error) {
	for shown := len(m.Group); ; {
		b, err := json.Marshal(teamsGroupCard(m, shown))
		if err != nil {
			return nil, err
		}
		if len(b) <= teamsBudget {
			return b, nil
		}
		if shown == 0 {
			return nil, errors.New("the Teams card does not fit in 28 KB")
		}
		shown = max(0, shown-max(1, shown*(len(b)-teamsBudget)/len(b)+1))
	}
}

func teamsGroupCard(m *TemplateData, shown int) map[string]any {
	color := map[string]string{"warning": "Warning", "critical": "Attention"}[m.Severity]
	var rows [][]string
	for _, r := range m.Group[:shown] {
		rows = append(rows, []string{r.Title, r.Product, r.Detail})
	}
	body := []teamsTableElement{
		{Type: "TextBlock", Text: m.Title, Size: "Medium", Weight: "Bolder", Color: color, Wrap: true},
		{Type: "TextBlock", Text: m.Text, Wrap: true},
		teamsTable([]int{3, 2, 2}, []string{"Event", "Product", "Detail"}, rows),
	}
	if shown < len(m.Group) {
		body = append(body, teamsTableElement{Type: "TextBlock", Text: fmt.Sprintf("… and %d more events not shown (the message would exceed Teams' 28 KB limit); see pcwatch.", len(m.Group)-shown), IsSubtle: true, Wrap: true})
	}
	body = append(body, teamsTableElement{Type: "TextBlock", Text: m.Footer, Size: "Small", IsSubtle: true, Wrap: true, Spacing: "Medium"})
	return adaptiveCard15(body)
}

// teamsTable is an Adaptive Card 1.5 Table: a header row, then rows of
// text cells, in columns of the given relative widths.
func teamsTable(widths []int, head []string, rows [][]string) teamsTableElement {
	yes := true
	cell := func(s string, bold bool) teamsTableCell {
		e := teamsTableElement{Type: "TextBlock", Text: s, Wrap: true}
		if bold {
			e.Weight = "Bolder"
		}
		return teamsTableCell{Type: "TableCell", Items: []teamsTableElement{e}}
	}
	t := teamsTableElement{Type: "Table", FirstRowAsHeader: &yes, ShowGridLines: &yes}
	for _, w := range widths {
		t.Columns = append(t.Columns, map[string]any{"width": w})
	}
	hr := teamsTableRow{Type: "TableRow", Style: "accent"}
	for _, h := range head {
		hr.Cells = append(hr.Cells, cell(h, true))
	}
	t.Rows = append(t.Rows, hr)
	for _, row := range rows {
		r := teamsTableRow{Type: "TableRow"}
		for _, c := range row {
			r.Cells = append(r.Cells, cell(c, false))
		}
		t.Rows = append(t.Rows, r)
	}
	return t
}

// adaptiveCard15 is a Teams workflow message holding one Adaptive Card 1.5
// (tables need 1.5) with body, at full width.
func adaptiveCard15(body []teamsTableElement) map[string]any {
	return map[string]any{
		"type": "message",
		"attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content": map[string]any{
				"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"type":    "AdaptiveCard",
				"version": "1.5",
				"body":    body,
				"msteams": map[string]any{"width": "Full"},
			},
		}},
	}
}
