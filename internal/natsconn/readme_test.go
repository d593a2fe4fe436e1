package natsconn_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsconn"
)

var update = flag.Bool("update", false, "rewrite the README's NATS connection reference")

const (
	refBegin = "<!-- BEGIN nats options (generated: go test ./internal/natsconn -run TestREADMEReference -update) -->\n"
	refEnd   = "<!-- END nats options -->"
)

// TestREADMEReference keeps the README's NATS connection table, the one
// place both programs' connection settings are documented, equal to the
// table the code reads them from.
func TestREADMEReference(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, refBegin), strings.Index(s, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated NATS block (%q ... %q)", refBegin, refEnd)
	}
	want := s[:i+len(refBegin)] + natsconn.MarkdownReference() + s[j:]
	if want == s {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's NATS connection table is out of date; run: go test ./internal/natsconn -run TestREADMEReference -update")
}
