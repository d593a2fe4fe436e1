//go:build pcwatch_faults

package relay

import (
	"github.com/pcwatch/pcwatch/internal/fault"
	"github.com/pcwatch/pcwatch/internal/state"
)

// beforePublish runs before a batch of records is published. With the
// fault relay.delete-before-ack armed (package fault) it is a DELIBERATE
// BUG, for the chaos suite (test/chaos) to show it catches it: the relay
// deletes the records before JetStream acknowledged them, so a publish
// that fails (NATS down) or a crash before the PubAck loses the events.
func beforePublish(o Outbox, recs []state.OutboxRecord) {
	if !fault.On(fault.RelayDeleteBeforeAck) {
		return
	}
	seqs := make([]uint64, 0, len(recs))
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	_ = o.OutboxDelete(seqs)
}
