package notify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/events"
)

// A core publish the server refuses for lack of permission used to count
// as delivered (the refusal arrives asynchronously): it is now a
// permanent failure naming the subject, and an allowed subject still works.
func TestNATSChannelRefusedPublishIsAFailure(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "notifier", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"alerts.>", "_INBOX.>"}}}}}}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("notifier", "pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := mustConfig(t, "channels:\n  ok: {kind: nats, subject: \"alerts.{{.Type}}\"}\n  denied: {kind: nats, subject: \"workflows.{{.Type}}\"}\ndefault: {channels: [ok, denied]}\n", nil)

	n := notificationOf(t, cfg, "denied", events.SubscriptionQuantityChanged)
	err = senderOf(t, cfg, "denied", senderDeps{conn: nc}).send(context.Background(), n)
	var se *SendError
	if !errors.As(err, &se) || !se.Permanent || se.Reason != ReasonNATS {
		t.Fatalf("refused publish: %v; want a permanent NATS failure", err)
	}
	// The same refusal again is seen again (not hidden by the sticky last
	// error), and an allowed subject after it is not blamed for it.
	if err := senderOf(t, cfg, "denied", senderDeps{conn: nc}).send(context.Background(), n); err == nil {
		t.Fatal("second refused publish reported as delivered")
	}
	if err := senderOf(t, cfg, "ok", senderDeps{conn: nc}).send(context.Background(), notificationOf(t, cfg, "ok", events.SubscriptionQuantityChanged)); err != nil {
		t.Fatalf("allowed publish: %v", err)
	}
}
