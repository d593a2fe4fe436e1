package natsembed

import (
	"strings"
	"testing"
)

func TestStartAndPortInUse(t *testing.T) {
	s, err := Start(Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if s.Port() == 0 || !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("port %d, url %s", s.Port(), s.ClientURL())
	}
	_, err = Start(Options{Port: s.Port(), StoreDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "is another watcher or NATS server running") || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("second server on the same port: %v", err)
	}
	s.Shutdown()
	s.Shutdown() // idempotent
	if _, err := Start(Options{Port: -1}); err == nil {
		t.Error("no store directory accepted")
	}
}
