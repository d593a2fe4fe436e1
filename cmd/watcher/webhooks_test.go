package main

import (
	"strings"
	"testing"
)

// watcher webhooks against the simulator's registration API: register,
// status, a refused overwrite of a registration pointing elsewhere (another
// tool may own it), then --force, then unregister.
func TestWebhooksCommands(t *testing.T) {
	_, url := simServer(t, 2)
	env := []string{"PCWATCH_PC_TOKEN=tok"}
	ours, theirs := "https://pcwatch.example.com/webhooks/partner-center", "https://other-tool.example.net/hook"
	wh := func(args ...string) result {
		t.Helper()
		return runBin(t, env, append([]string{"webhooks"}, append(args, "--pc-url", url)...)...)
	}
	if r := wh("register", "--webhook-url", theirs); r.code != 0 {
		t.Fatalf("register: %d %s", r.code, r.stderr)
	}
	if r := wh("status", "--webhook-url", theirs); r.code != 0 || !strings.Contains(r.stdout, theirs) {
		t.Fatalf("status: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r := wh("register", "--webhook-url", ours)
	if r.code != 1 || !strings.Contains(r.stderr, "--force") || !strings.Contains(r.stderr, theirs) {
		t.Fatalf("overwriting another tool's registration: exit %d, stderr %q; want 1 naming it and --force", r.code, r.stderr)
	}
	if r := wh("status", "--webhook-url", ours); !strings.Contains(r.stdout, theirs) {
		t.Fatalf("the refused register changed the registration: %q", r.stdout)
	}
	if r := wh("unregister", "--webhook-url", ours); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("unregistering another tool's registration: exit %d, %q", r.code, r.stderr)
	}
	if r := wh("register", "--webhook-url", ours, "--force"); r.code != 0 {
		t.Fatalf("register --force: %d %s", r.code, r.stderr)
	}
	if r := wh("status", "--webhook-url", ours); !strings.Contains(r.stdout, ours) {
		t.Fatalf("status after --force: %q", r.stdout)
	}
	if r := wh("unregister", "--webhook-url", ours); r.code != 0 {
		t.Fatalf("unregister: %d %s", r.code, r.stderr)
	}
	if r := wh("bogus"); r.code != 2 {
		t.Errorf("unknown subcommand: exit %d (%s), want 2", r.code, r.stderr)
	}
	if r := runBin(t, env, "webhooks"); r.code != 2 || !strings.Contains(r.stderr, "subcommand") {
		t.Errorf("no subcommand: exit %d (%s), want 2", r.code, r.stderr)
	}
}
