package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

type startup struct{ error }

func (startup) ExitStatus() int { return StatusUsage }

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"success", nil, 0, ""},
		{"help", fmt.Errorf("watcher run: %w", flag.ErrHelp), 0, ""},
		{"runtime failure", errors.New("some customers could not be polled"), 1, "prog: some customers could not be polled\n"},
		{"usage", Usagef("--format %q: want table or json", "xml"), 2, "prog: --format \"xml\": want table or json\n"},
		{"wrapped usage", fmt.Errorf("dlq list: %w", Usage(errors.New("bad"))), 2, "prog: dlq list: bad\n"},
		{"own ExitStatus, wrapped", fmt.Errorf("start: %w", startup{errors.New("state file locked")}), 2, "prog: start: state file locked\n"},
		{"one line", errors.New("HTTP 500:\n  <html>\r\n\tdown</html>\n"), 1, "prog: HTTP 500: <html> down</html>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if code := Exit(&b, "prog", tc.err); code != tc.code || b.String() != tc.stderr {
				t.Errorf("Exit: %d %q, want %d %q", code, b.String(), tc.code, tc.stderr)
			}
		})
	}
	if Usage(nil) != nil {
		t.Error("Usage(nil) is not nil")
	}
}
