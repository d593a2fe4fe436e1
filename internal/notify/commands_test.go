package notify

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/events"
)

func TestCommandErrorsExitStatus(t *testing.T) {
	_, badType := ParseEventType("subscription.exploded")
	_, badLevel := NewLogger(io.Discard, "text", "loud")
	_, badFormat := NewLogger(io.Discard, "xml", "info")
	_, missing := LoadConfig("/nonexistent/notifier.yaml")
	replayed := WriteReplay(io.Discard, []ReplayResult{{Entry: DLQEntry{Channel: "hook"}, Err: errors.New("HTTP 500\nbody")}})
	for _, tc := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"unknown event type", badType, cli.StatusUsage, `--type "subscription.exploded" is not an event type`},
		{"bad log level", badLevel, cli.StatusUsage, `--log-level "loud"`},
		{"bad log format", badFormat, cli.StatusUsage, `--log-format "xml"`},
		{"configuration", fmt.Errorf("check: %w", missing), cli.StatusUsage, "cannot read the configuration"},
		{"replay with failures", replayed, cli.StatusFailure, "1 of 1 failed"},
	} {
		if code := cli.ExitCode(tc.err); code != tc.code || tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, exit status %d; want %d and %q", tc.name, tc.err, code, tc.code, tc.want)
		}
	}
	for _, in := range []string{"subscription.quantity-changed", "io.pcwatch.subscription.quantity-changed"} {
		if typ, err := ParseEventType(in); err != nil || typ != events.SubscriptionQuantityChanged {
			t.Errorf("ParseEventType(%q) = %q, %v", in, typ, err)
		}
	}
}
