package watcher

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's configuration reference")

const (
	refBegin = "<!-- BEGIN watcher options (generated: go test ./internal/watcher -run TestREADMEReference -update) -->\n"
	refEnd   = "<!-- END watcher options -->"
)

// TestREADMEReference keeps the README's option table equal to the option
// table the code reads flags, environment and file from.
func TestREADMEReference(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, refBegin), strings.Index(s, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated options block (%q ... %q)", refBegin, refEnd)
	}
	want := s[:i+len(refBegin)] + MarkdownReference() + s[j:]
	if want == s {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's option table is out of date; run: go test ./internal/watcher -run TestREADMEReference -update")
}
