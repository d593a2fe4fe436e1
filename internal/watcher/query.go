package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/deadlinequery"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// actorQuery answers the notifier's deadline queries (its scheduled
// digests) on NATS: restarted with backoff, since everything it needs is
// in the state file and a digest that finds no watcher retries.
const actorQuery = "deadline-query"

// queryServer answers deadlinequery requests on deadlinequery.Subject from
// the state file, one at a time (a scan of the state file each; what one
// request may ask is bounded, and requests queue in a bounded channel:
// beyond it NATS drops them and the asker times out and retries).
type queryServer struct {
	nc    *nats.Conn
	store *state.Store
	dcfg  deadline.Config
	clk   clock.Clock
	red   *secret.Redactor
	log   *slog.Logger
	kinds []string
}

func newQueryServer(nc *nats.Conn, store *state.Store, dcfg deadline.Config, clk clock.Clock, red *secret.Redactor, log *slog.Logger) *queryServer {
	q := &queryServer{nc: nc, store: store, dcfg: dcfg, clk: clk, red: red, log: log}
	for _, r := range deadline.Rules() {
		q.kinds = append(q.kinds, r.Name())
	}
	return q
}

// queryQueue bounds the requests waiting to be answered.
const queryQueue = 64

// Run subscribes and answers until ctx ends.
func (q *queryServer) Run(ctx context.Context) error {
	ch := make(chan *nats.Msg, queryQueue)
	sub, err := q.nc.ChanSubscribe(deadlinequery.Subject, ch)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", deadlinequery.Subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			q.handle(m)
		}
	}
}

// handle answers one request. Only replies to an inbox are sent: the
// watcher may publish events, so a request naming pcwatch.events.x (or a
// JetStream API subject) as its reply would otherwise have the watcher
// publish there on the asker's behalf.
func (q *queryServer) handle(m *nats.Msg) {
	if m.Reply == "" {
		q.log.Debug("deadline query without a reply subject: ignored")
		return
	}
	if !strings.HasPrefix(m.Reply, "_INBOX.") {
		q.log.Warn("deadline query with a reply subject outside _INBOX.>: not answered (use a plain NATS request)", "reply", cli.OneLine(m.Reply))
		return
	}
	body := q.answer(m.Data)
	if err := m.Respond(body); err != nil {
		q.log.Warn("answering a deadline query", "err", err)
	}
}

// answer is the reply to request b, as JSON, within the reply budget.
func (q *queryServer) answer(b []byte) []byte {
	rep := q.reply(b)
	budget := deadlinequery.MaxReplyBytes
	if mp := int(q.nc.MaxPayload()); mp > 0 {
		budget = min(budget, mp-4096)
	}
	for {
		out, err := json.Marshal(rep)
		if err != nil {
			out, _ = json.Marshal(deadlinequery.Reply{Error: &deadlinequery.Error{Code: deadlinequery.CodeUnavailable, Message: "encoding the reply failed"}})
			return out
		}
		if len(out) <= budget || len(rep.Deadlines) <= 1 {
			return out
		}
		// Rows are bounded (MaxFieldLen), so this is only for a server
		// whose max_payload is far below NATS's default: a shorter page,
		// and the cursor after its last row.
		rep.Deadlines = rep.Deadlines[:len(rep.Deadlines)/2]
		rep.Next = deadlinequery.EncodeCursor(deadlinequery.KeyOf(rep.Deadlines[len(rep.Deadlines)-1]), rep.AsOf, rep.Until)
	}
}

func (q *queryServer) reply(b []byte) deadlinequery.Reply {
	qu, err := deadlinequery.DecodeRequest(b, q.kinds)
	if err != nil {
		return deadlinequery.Reply{Error: &deadlinequery.Error{Code: deadlinequery.CodeBadRequest, Message: err.Error()}}
	}
	now := q.clk.Now()
	asOf, until := now, now.Add(qu.Within)
	if qu.After != nil {
		asOf, until = qu.AsOf, qu.Until
	}
	rep := deadlinequery.Reply{AsOf: asOf, Until: until, Deadlines: []deadlinequery.Deadline{}}
	// One page of the rows after the cursor, in key order, kept in a
	// buffer of at most twice the page: memory stays bounded whatever the
	// state file holds.
	var page []deadlinequery.Deadline
	after := 0 // matches after the cursor
	less := func(a, b deadlinequery.Deadline) int {
		ka, kb := deadlinequery.KeyOf(a), deadlinequery.KeyOf(b)
		switch {
		case ka.Less(kb):
			return -1
		case kb.Less(ka):
			return 1
		}
		return 0
	}
	err = eachUpcoming(q.store, q.dcfg, now, func(u UpcomingDeadline) {
		if u.ClosesAt.After(until) {
			return
		}
		typ := ""
		if r, ok := deadline.RuleNamed(u.Rule); ok {
			typ = strings.TrimPrefix(string(r.Event()), events.TypePrefix)
		}
		d := deadlinequery.Deadline{Type: typ, CustomerID: u.CustomerID, CustomerName: deadlinequery.Cut(u.CustomerName),
			SubscriptionID: u.SubscriptionID, Offer: deadlinequery.Cut(u.Offer), PartnerID: u.PartnerID, Kind: u.Rule,
			ClosesAt: u.ClosesAt.UTC(), InSeconds: int64(u.ClosesAt.Sub(now) / time.Second), Quantity: u.Quantity, AutoRenew: u.AutoRenew}
		if !qu.Matches(d) {
			return
		}
		rep.Total++
		if qu.After != nil && !qu.After.Less(deadlinequery.KeyOf(d)) {
			return
		}
		after++
		page = append(page, d)
		if len(page) >= 2*qu.Limit {
			slices.SortFunc(page, less)
			page = page[:qu.Limit]
		}
	})
	var damaged *state.DamagedError
	switch {
	case errors.As(err, &damaged):
		rep.Warnings = []string{q.red.String(cli.ErrorLine(err)) + " (the list may be incomplete)"}
	case err != nil:
		return deadlinequery.Reply{Error: &deadlinequery.Error{Code: deadlinequery.CodeUnavailable, Message: "the watcher cannot read its state file: " + q.red.String(cli.ErrorLine(err))}}
	}
	slices.SortFunc(page, less)
	if len(page) > qu.Limit {
		page = page[:qu.Limit]
	}
	rep.Deadlines = append(rep.Deadlines, page...)
	if after > len(page) {
		rep.Next = deadlinequery.EncodeCursor(deadlinequery.KeyOf(page[len(page)-1]), asOf, until)
	}
	return rep
}
