// Package faulttest is test-only machinery for crash tests that run a
// child test binary with fault points compiled in.
package faulttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pcwatch/pcwatch/internal/fault"
)

// Child returns a test binary of the package under test (the working
// directory) with the fault points compiled in: this one when compiled is
// true (the running binary was built with -tags pcwatch_faults), else one
// built with `go test -c -tags pcwatch_faults` into t's temporary
// directory. Without the go command the test fails, naming it.
func Child(t testing.TB, compiled bool) string {
	t.Helper()
	if compiled {
		return os.Args[0]
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the crash test builds a test binary with -tags %s and needs the go command: %v", fault.Tag, err)
	}
	bin := filepath.Join(t.TempDir(), "faults.test")
	cmd := exec.Command(goBin, "test", "-c", "-tags", fault.Tag, "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test binary with -tags %s: %v\n%s", fault.Tag, err, out)
	}
	return bin
}
