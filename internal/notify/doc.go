// Package notify is pcwatch's notifier: it consumes the CloudEvents the
// watcher publishes on NATS JetStream (stream PCWATCH_EVENTS) and delivers
// them as alerts — Standard Webhooks-signed webhooks, Slack Block Kit
// messages, Teams Adaptive Cards, plain-text email and NATS republishes —
// routed by a YAML configuration (see deploy/notifier.example.yaml and
// Config). cmd/notifier is its command line; Run is the embeddable entry
// point.
//
// # Consumers
//
// Each channel has its own durable pull consumer, notify-<channel>, filtered
// to the subjects its routes can match (Config.FilterSubjects); routing,
// silences and the finer matchers (customers, offers, resellers, quantity
// deltas, time left) run in process. A consumer is created at
// delivery.start: by default 24 hours back (DeliverPolicy ByStartTime), so a
// channel started after the watcher still gets the alerts published before
// its first start, less the deadline warnings whose deadline has passed
// meanwhile (ResultPast); "new" starts at new events, "all" at the start of
// the stream. An existing consumer resumes where it left off. Channels
// never wait for one another. Within a channel, delivery.concurrency sends
// run at once, and the events of one entity (a subscription, a customer)
// always go through the same sender, in order. A long send tells JetStream
// it is still working (InProgress) so that ack_wait does not expire under
// it; a channel's timeout must be shorter than ack_wait anyway.
//
// Each message is decoded (not a pcwatch CloudEvent: dead-lettered with
// reason "undecodable" and terminated), routed (silenced, or not for this
// channel: acknowledged), deduplicated, rendered and sent. A retryable
// failure — a network error, a timeout, HTTP 408, 429 or 5xx, an SMTP 4xx —
// is negatively acknowledged with a delay: the receiver's Retry-After
// (seconds or an HTTP date) when it sent one, else exponential backoff by
// delivery count from delivery.retry_initial to delivery.retry_max. A
// permanent failure (any other 4xx, an SMTP 5xx, a payload the channel
// cannot take, a template that fails on the event) and the failure of the
// last attempt (delivery.max_attempts, counted by JetStream's delivery
// count) publish the message to pcwatch.dlq.<channel> in stream PCWATCH_DLQ
// (created when missing; file storage, 30 days) with headers naming the
// reason, the HTTP status, the attempts, the channel and the original
// subject, and then terminate it. ListDLQ and ReplayDLQ (`notifier dlq list`
// and `notifier dlq replay`) read and resend them.
//
// While the stream PCWATCH_EVENTS does not exist (the watcher has not
// started) or NATS cannot be reached, Run logs why and retries with
// backoff; /readyz says not ready meanwhile.
//
// # Digests
//
// Config.Digests are scheduled summaries of the watcher's open deadlines
// (digest.go): at each instant of a cron schedule in a time zone, the
// digests actor asks the watcher over NATS (package deadlinequery: the
// watcher's state, not a replay of the stream) what closes within the
// window and sends one message per channel, exactly once per (digest,
// scheduled local time, channel) through a record in PCWATCH_DELIVERIES;
// runs missed while the notifier was down are caught up within their
// grace.
//
// # Exactly once per channel, and its limits
//
// JetStream delivers at least once: a message is redelivered when its ack is
// lost, when the notifier dies before acknowledging it, and when the watcher
// publishes the same event twice (the stream's duplicate window drops most
// of those). The notifier turns this into exactly once per channel in the
// normal case with two key-value buckets, keyed <channel>.<event id>:
// PCWATCH_CLAIMS (memory storage, not synced to disk: the per-event
// question is cheap) and PCWATCH_DELIVERIES (file storage, synced: what
// survives), both with TTL delivery.dedupe_ttl (default 7 days):
//
//  1. Before sending, the consumer writes a "sending" claim with a
//     compare-and-set create or update, naming this process, the stream
//     sequence, the delivery count and where this process's next delivered
//     batch will be (the deliveries stream's sequence after its last
//     batch). Two copies of one event cannot both win: the loser sees
//     "sending" and looks again later.
//  2. After the receiver accepted the event the sender hands it to the
//     channel's settler and goes on with its next message. The settler
//     commits the deliveries as one batch record in PCWATCH_DELIVERIES (a
//     group commit: everything that finished while the previous batch was
//     being written, waiting up to a millisecond for sends under way), then
//     publishes the acks and waits for the server to have them (one flush
//     per batch). The claims are not marked delivered one by one: the batch
//     the claim points at says it (a commit that fails falls back to
//     marking each claim).
//  3. A message whose claim says "delivered", or says "sending" while the
//     owner's batches written since the claim hold its key (read with
//     direct gets, then the claim is marked delivered), is acknowledged
//     without sending: a lost ack, a redelivery, a second copy of the
//     event. Batches written after the claim went stale (ack_wait plus the
//     channel timeout) do not count: that send is the stalled-sender
//     window below.
//  4. A failed attempt turns the claim into "failed" (or "dead" once
//     dead-lettered), so the next attempt may claim it.
//
// A NATS server restart loses the claims (a memory stream). The claims
// bucket carries a marker, "_restored"; without it (made again by the
// watcher on its embedded server, or by the notifier elsewhere) the
// delivered batches are copied back into it before any claim is answered,
// so a redelivery or a copy of a delivered event is still recognised. What
// the restart loses for good are the "sending" claims: a send interrupted
// at that very moment is sent again without the takeover warning.
//
// The honest limit is the window between a send the receiver accepted and
// the "delivered" record: if the process dies there (kill -9, power loss, a
// crash), or dies while a send is in flight and the receiver processed it
// without the notifier seeing the answer, JetStream redelivers the message
// after ack_wait, the new owner finds the claim still "sending" for that
// very message and sends the event again. That is at-least-once, bounded by
// the sends in flight at the moment of death and the
// sends answered but not yet committed (together at most
// delivery.max_ack_pending per channel). The resend carries the same event id everywhere — the
// webhook-id header (Standard Webhooks receivers must deduplicate on it),
// X-Pcwatch-Event-Id, the email Message-ID (<event id.channel@domain>), the
// Slack and Teams footer, the NATS Nats-Msg-Id header — so receivers can
// drop it. The same applies when a sender stalls past ack_wait despite its
// InProgress acks and JetStream hands the message to another notifier. A
// record that could not be written after a successful send (NATS lost at
// that moment) is remembered in memory for 8192 deliveries, but not across
// a restart. Records expire after dedupe_ttl: an event redelivered later
// than that (a replay of an old stream) is sent again. Replays from the
// dead-letter queue use and update the same records.
//
// # Open alerts: silences, reminders, resolution
//
// A deadline warning (alertFamilies: cancellation and refund windows,
// renewal, trial end) delivered on a channel opens an alert, a record in
// AlertsBucket keyed by channel, subscription and deadline. Each channel's
// scheduler (alerts.go) fires what is due every few seconds: a reminder
// when a route's repeat_interval elapsed, a resolved notice when an event
// about the subscription says the user acted (the family's resolves) or the
// deadline passed. A warning that an active silence mutes is held in the
// same bucket and sent when the silence ends, or alerts.silence_lead before
// its deadline (holdDecision). Every change of a record is a
// compare-and-set on the revision read, so a resolution written while a
// reminder is being sent wins; every notice has its own delivery key and is
// claimed like an event, so two notifiers never both send it. A crash
// between a send and the record's update repeats nothing (the claim) but
// may leave the record one step behind, which the next round corrects.
// A route's group_by collects what it sends in a group record in the same
// bucket (group.go); the scheduler sends a due group as one message whose
// batch and id are written to the record before the send (Pending), so
// that a message is sent again only as itself. Records written while a
// rescan walks the bucket are kept over what the walk saw.
// Runtime silences are one compare-and-set value in SilencesBucket, read
// every few seconds (silencePoller); what cannot be decoded never replaces
// the last good list.
//
// Secrets — webhook URLs with tokens, signing secrets, SMTP passwords —
// never appear in logs, errors, metrics or the DLQ: URLs are reduced to
// scheme and host.
package notify
