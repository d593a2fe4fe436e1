// Package oracle judges a run of pcwatch against the Partner Center
// simulator's ground truth. It is used by the in-process property test of
// internal/diff and by the end-to-end chaos suite (test/chaos), which runs
// the real programs as separate processes and kills them.
//
// The pieces:
//
//   - Model applies events in stream order to an empty state, the way a
//     consumer that sees every event would, checking on the way that every
//     typed old value (quantity, status, auto-renew) and every after/before
//     view matches the state built so far, that no event id and no
//     (entity, type, revision) is seen twice, and that each entity's
//     revisions follow one another without a gap (a gap is an event that
//     never reached the stream). Compare then compares the result with a
//     pcsim.State.
//   - CheckInventions holds the events against the simulator's mutation
//     log: every removal matches a removal in the log, every change of an
//     entity has a mutation of that entity behind it, and an entity never
//     has more change revisions than mutations.
//   - CheckDeadlines reconstructs the cancellation windows and trial ends
//     from the initial state and the mutation log, and checks that the
//     deadline events fired when and as often as the rules in
//     internal/deadline say.
//   - CheckDelivery holds what a webhook receiver and the dead-letter queue
//     got against what the stream holds and the routes say.
//
// Every check returns problems as strings, each naming the entity and the
// event (type, subject, id, revision) concerned, so that a failing run says
// what went wrong without a debugger.
package oracle
