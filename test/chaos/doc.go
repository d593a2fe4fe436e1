// Package chaos is pcwatch's end-to-end fault-injection suite: it proves
// that no event is lost, doubled or invented when the programs crash and
// their dependencies fail.
//
//	go test ./test/chaos -run TestChaos [-chaos.profile=short|long] [-chaos.seed=N] [-chaos.keep] [-chaos.faults=BUG,...] [-chaos.watcher-tags=TAGS] [-v]
//
// The short profile (the default) runs in CI as part of go test ./... in
// about three minutes on two cores, the hostile-input phase included;
// -short skips it. The long profile needs
// -timeout 30m.
//
// # What runs
//
// TestChaos builds the real programs (go build, without -race: watcher,
// notifier, pcsim, and nats-server from the module pcwatch depends on) and
// runs them as separate processes on 127.0.0.1, all data under one
// temporary directory:
//
//   - nats-server with JetStream, store_dir in the run directory and
//     sync_interval: always (the relay deletes outbox rows after the
//     PubAck; without an fsync a kill -9 of the server could lose
//     acknowledged messages);
//   - pcsim with a few hundred customers (520: more than the 500 of one
//     customer page, so the listing has a second page that can fail) on an
//     accelerated calendar (one business hour per wall second), seeded by
//     -chaos.seed;
//   - the notifier, with two webhook channels: "hook" (every event) to a
//     receiver in this test that verifies the Standard Webhooks signature
//     and records each delivery, and "broken" (the types in brokenTypes)
//     to a receiver that always answers 400, so the dead-letter queue must
//     hold exactly those events. The harness creates PCWATCH_EVENTS and
//     waits for the notifier's consumers before the watcher publishes
//     anything (consumers start at DeliverPolicy New);
//   - with them a third channel, "grouped", to /grouped: every event,
//     grouped by customer (group_wait 1h, group_interval 2h of the
//     calendar); the receiver unpacks each CloudEvents batch, checks that
//     it holds one customer, and counts each event. The hook channel
//     repeats deadline warnings every 48 calendar hours (reminders, with
//     resolved notices when the simulator's mutations act on them), and
//     30% into the chaos phase `notifier silence add` mutes the deadline
//     warnings for 20 calendar hours: they are held and sent when it ends
//     (or overridden before their deadline). The notifier runs on the
//     simulator's calendar (--clock);
//   - the watcher (--created-on-first-sighting, so a model can start
//     empty; the simulator's clock; a poll every second; deadlines every
//     second).
//
// # The run
//
// A warm-up waits for the first complete cycle and an empty outbox. The
// chaos phase then follows a schedule drawn from the seed: random and
// explicit mutations through the admin API (customers added and removed,
// purchases, cancellations, ...) at random instants; kill -9 of the watcher
// (10 in the short profile, 50 in the long one), each restarted; kill -9 of
// nats-server (2, 5), at least one of them an outage of several poll
// cycles; Partner Center fault windows, one at a time (a 10% 5xx rate, 429
// bursts with Retry-After, 30% truncated bodies, 30% malformed JSON, the
// customer listing's second page failing), and a few customers whose
// subscription listing answers 500 for several cycles in a row (an
// injected rule: random windows rarely fail one customer twice running,
// and removals need two listings); the webhook receiver answering 503 with
// Retry-After for a while; kill -9 of the notifier (1, 3). Every fault is
// logged in a timeline (timeline.txt in the run directory, printed on
// failure) and counted in the summary.
//
// A hostile-input phase follows (about a minute; one round in the short
// profile, two in the long one), with the chaos phase's faults cleared,
// no kills, and random mutations throughout: seven windows, one after
// another, of the simulator's hostile mode (pcsim.Hostile), each scoped to
// a few customers drawn from the seed, with a purchase on some of them
// while their polls are hostile:
//
//  1. malformed 200 bodies that are valid JSON: each of null, {}, [], a
//     string, a number and a collection whose items are missing, null,
//     empty (totalCount says otherwise) or an object on one small
//     customer's subscription listing; every shape in turn on two
//     customers' managed services, on get-subscription-by-id of three
//     others and on the customer listing's second page (two cycles: a
//     removal needs two complete listings);
//  2. redirects: 302/307 to another origin (the simulator's off-origin
//     server, which answers empty collections and counts bearer tokens)
//     for subscriptions, managed services and the customer listing's
//     second page, and 302 to the same origin (two cycles);
//  3. Retry-After: 86400 on 429 (a subscription listing, the customer
//     listing's second page);
//  4. oversized fields: one subscription's friendlyName and another's
//     custom field of 1.2 MB, changed every second (every poll), each
//     change a logged mutation, then renamed or removed;
//  5. an endless customer listing: new customer ids on every page, then
//     page 1 repeated, a new continuation token on every page;
//  6. a customer listed twice across pages, identical, then different;
//  7. a subscription listing trickled (512 bytes every 100 ms), a managed
//     services body that never ends, a persistent 500 whose body echoes
//     the request's Authorization header, and a 503 with Retry-After:
//     86400 (managed services).
//
// Each step of a window stays on until the cycles it needs (at least one)
// started under it and completed (at least 4 s a window, at most 30 s a
// step). Every window is logged in
// the timeline and counted in the summary. Besides the five invariants
// below, which cover the phase too (a false removal, a lost or doubled
// event, a deadline fired twice, a delivery missed), the phase requires:
//   - the watcher kept polling the others: in every step, some cycle that
//     started under it polled every known customer and failed none but
//     the step's targets and customers the simulator had removed meanwhile
//     (the customer list itself may fail where the step makes it hostile);
//   - the off-origin server never received an Authorization header;
//   - each oversized change reached the stream: an event about that
//     subscription carries data.truncated, or an ops.event-dropped names
//     it;
//   - the bearer token, raw or base64, appears nowhere in the stream, the
//     dead-letter queue, the watcher's and notifier's logs or watcher
//     state.
//
// A quiet phase then
// clears the faults, stops mutating, freezes the simulator's calendar
// (POST /admin/freeze) and waits, polling, until the watcher has completed
// three complete cycles that started after the freeze, its outbox is empty
// and no notifier consumer has anything pending or unacknowledged. Every
// program is then stopped with SIGTERM, and the stream, the dead-letter
// queue, the simulator's final state and its whole mutation log are read.
//
// # The invariants (package internal/oracle)
//
//  1. Completeness: the stream's events applied in order to an empty model
//     give exactly the simulator's final state (every customer,
//     subscription with its quantity, status and auto-renew, and managed
//     service), every typed old value and view matching the state built
//     so far.
//  2. No doubles: no event id twice; no (entity, type, revision) twice; no
//     (subscription, deadline kind, deadline, threshold) twice. An entity's
//     revisions follow one another without a gap (a gap is an event that
//     never reached the stream).
//  3. No inventions: every removal matches a removal in the mutation log,
//     every change of an entity has a mutation of it behind it, and no
//     entity has more change revisions than mutations.
//  4. Deadlines: cancellation windows and trial ends are reconstructed from
//     the simulator's state before the watcher's first listing and the
//     mutation log (purchase, renewal, conversion + 168h; trial commitment
//     ends), self-checked against the final state. Every deadline event
//     fires inside its threshold (deadline - threshold <= time <
//     deadline; cancellation-window-closed at or after the deadline, only
//     for a window an earlier event showed open) and names a window the
//     simulator had. Completeness: each threshold must fire exactly once
//     when, inside the span where it is the tightest crossed threshold,
//     the watcher knew the window (from the start of the cycle after the
//     event that first showed it), the simulator had it unchanged (no
//     status change to an ended status, renewal, conversion or removal),
//     the calendar was not yet frozen, and a watcher process ran its
//     evaluator for at least minUpWall (3 evaluation intervals). Where
//     that does not hold a later, tighter event marked late legitimately
//     replaces it, and the pair is only counted as excluded, by reason.
//     Excluded altogether: refund windows (they depend on the per-cycle
//     budget of get-subscription-by-id calls) and renewal-approaching
//     (commitment ends a month or more out); their events are checked for
//     timing and duplicates only.
//  5. Delivery: every event routed to "hook" was received, by id, with a
//     valid signature and webhook-id equal to the id; an id received twice
//     only when a notifier kill falls between the two receipts (the
//     documented at-least-once window: reported, not failed); the
//     watcher's outbox is empty and no consumer has anything pending or
//     unacknowledged; the dead-letter queue holds exactly the events
//     routed to "broken", each once. The same holds for "grouped", event
//     by event across its grouped messages, with each message (by
//     webhook-id) received once; no group or held warning is left in
//     PCWATCH_ALERTS; every reminder or resolved notice (on either
//     channel) came once, names in X-Pcwatch-Thread-Id the deadline
//     warning in its body, which that channel received, and reminders come
//     only where a route repeats. Silences delay warnings, never drop them,
//     so the silenced warnings count like the others.
//
// A program that exits without being told to fails the run, except a
// watcher that refuses to start (exit 2, "Partner Center ... is not
// usable") while a Partner Center fault window is open: that is its
// documented behaviour, and the harness restarts it.
//
// # Deliberate bugs
//
// -chaos.faults arms deliberate bugs that the suite must catch — a run
// with one must fail with invariant violations. They are fault points of
// package internal/fault: the harness builds the watcher with the build
// tag pcwatch_faults (without -chaos.faults it builds the production
// watcher, untagged) and arms them in its environment (PCWATCH_FAULTS):
//   - poller.failed-listing-as-empty: a failed subscription listing is
//     taken for an empty complete one (internal/poller/faults.go);
//   - relay.delete-before-ack: the relay deletes outbox rows before their
//     PubAck (internal/relay/faults.go).
//
// They were once the build tags chaosbug_removals and chaosbug_ack;
// -chaos.watcher-tags (extra build tags of the watcher) refuses those
// names and says which fault to arm instead.
package chaos
