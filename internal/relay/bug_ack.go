//go:build chaosbug_ack

package relay

import "github.com/pcwatch/pcwatch/internal/state"

// chaosDeleteBeforeAck is a DELIBERATE BUG, compiled only with the build
// tag chaosbug_ack, so that the chaos suite (test/chaos) can show it
// catches it: the relay deletes outbox records before JetStream
// acknowledged them, so a publish that fails (NATS down) or a crash before
// the PubAck loses the events.
func chaosDeleteBeforeAck(o Outbox, recs []state.OutboxRecord) {
	seqs := make([]uint64, 0, len(recs))
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	_ = o.OutboxDelete(seqs)
}
