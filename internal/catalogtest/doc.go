// Package catalogtest holds the end-to-end test of pcwatch's public event
// catalog: it drives the Partner Center simulator through a scripted
// scenario, lets the real poller, differ and deadline evaluator emit every
// type of events.Catalog() and the real relay publish them on an in-process
// NATS JetStream (where oversized events are shrunk or dropped), checks each
// stored event against docs/events.schema.json,
// the CloudEvents SDK and the documented invariants, and (re)generates
// docs/events.md from what was emitted. It has no non-test code.
//
//	go test ./internal/catalogtest                                 # check
//	go test ./internal/catalogtest -run TestEventCatalog -update   # rewrite docs/events.md
package catalogtest
