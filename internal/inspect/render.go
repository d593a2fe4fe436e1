package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// Format is how a view is written: a table for people, or the JSON of the
// operations server's /api/ answer.
type Format string

// The formats of --format.
const (
	Table Format = "table"
	JSON  Format = "json"
)

// ParseFormat reads --format; anything but table or json is a
// *cli.UsageError.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON:
		return f, nil
	}
	return "", cli.Usagef("--format %q: want table or json", s)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteDeadlines writes the deadlines: in JSON the same array as
// /api/deadlines, as a table one line each with a note (the seats of a
// refund batch, whether the subscription renews).
func WriteDeadlines(w io.Writer, ds []watcher.UpcomingDeadline, f Format) error {
	if f == JSON {
		return writeJSON(w, ds)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOSES AT (UTC)\tIN\tKIND\tCUSTOMER\tSUBSCRIPTION\tOFFER\tNOTE")
	for _, d := range ds {
		note := ""
		if d.Quantity > 0 {
			note = fmt.Sprintf("%d seats", d.Quantity)
		}
		if d.AutoRenew != nil {
			note = map[bool]string{true: "will renew", false: "will expire"}[*d.AutoRenew]
		}
		who := d.CustomerName
		if who == "" {
			who = d.CustomerID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ClosesAt.UTC().Format("2006-01-02 15:04"), d.In, d.Rule,
			who, d.SubscriptionID, d.Offer, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "(no upcoming deadlines)")
		return err
	}
	return nil
}

// WriteState writes the summary: in JSON the same object as /api/state,
// else the counts, the damaged records and one line per customer.
func WriteState(w io.Writer, s *watcher.StateSummary, f Format) error {
	if f == JSON {
		return writeJSON(w, s)
	}
	var counts []string
	for _, k := range resource.All() {
		counts = append(counts, fmt.Sprintf("%s: %d", k.Plural(), s.Records[k]))
	}
	fmt.Fprintf(w, "cycles run: %d\n%s\npending removals: %d   deadline ledger: %d   outbox depth: %d\n",
		s.Cycle, strings.Join(counts, "   "), s.Pending, s.LedgerEntries, s.Outbox)
	fmt.Fprintf(w, "events too large for NATS: %d published shrunk (data.truncated), %d replaced by ops.event-dropped\n",
		s.EventsTruncated, s.EventsDropped)
	cf := s.ChangeFeed
	feed := "activity log: never read"
	switch {
	case cf.CursorError != "":
		feed = "activity log: cursor unreadable (the tail starts again from its initial look-back): " + cf.CursorError
	case cf.CursorNewest != nil:
		feed = fmt.Sprintf("activity log: newest record %s (%d remembered)", cf.CursorNewest.UTC().Format("2006-01-02 15:04:05"), cf.CursorSeen)
	}
	hints := fmt.Sprintf("hinted customers waiting for a refresh: %d", cf.PendingHints)
	if cf.OldestHint != nil {
		hints += ", the oldest since " + cf.OldestHint.UTC().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(w, "%s   %s\n\n", feed, hints)
	if s.DamagedCount > 0 {
		fmt.Fprintf(w, "DAMAGED RECORDS: %d (skipped; stop the watcher and restore a backup, or move the state file aside to rebuild from a fresh baseline):\n", s.DamagedCount)
		for _, r := range s.DamagedRecords {
			fmt.Fprintf(w, "  %s\n", r)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tNAME\tSUBSCRIPTIONS\tLAST SUCCESSFUL POLL\tFAILING")
	for _, c := range s.PerCustomer {
		last := "never"
		if c.LastSuccess != nil {
			last = c.LastSuccess.UTC().Format("2006-01-02 15:04:05")
		}
		failing := ""
		if c.ConsecutiveFails > 0 {
			failing = fmt.Sprintf("%d in a row: %s", c.ConsecutiveFails, strings.TrimSpace(c.LastError))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.ID, c.Name, c.Subscriptions, last, failing)
	}
	return tw.Flush()
}
