package natsembed

// Names lets the external tests compare the names the permissions use with
// the constants of events and notify, which this package cannot import.
var Names = map[string]string{
	"events stream": eventsStream,
	"dlq stream":    dlqStream,
	"dlq subjects":  dlqSubjects,
	"deliveries":    deliveriesBucket,
	"claims":        claimsBucket,
	"alerts":        alertsBucket,
	"silences":      silencesBucket,
	"query":         querySubject,
}
