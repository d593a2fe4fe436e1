package fault

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOnlyTaggedBuildsCarryFaults: no program built without the tag links
// this package (an untagged file importing it would arm fault points in
// production), and a tagged watcher does (the shims are wired).
func TestOnlyTaggedBuildsCarryFaults(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	const self = "github.com/pcwatch/pcwatch/internal/fault"
	deps := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(goBin, append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	if d := deps("../../cmd/..."); slices.Contains(d, self) {
		t.Errorf("a production build of cmd/... links %s", self)
	}
	if d := deps("-tags", Tag, "../../cmd/watcher"); !slices.Contains(d, self) {
		t.Errorf("cmd/watcher built with -tags %s does not link %s", Tag, self)
	}
}
