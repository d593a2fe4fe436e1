package activity_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/fault"
	"github.com/pcwatch/pcwatch/internal/fault/faulttest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// The crash test runs a child test binary that polls once and dies at a
// crash point of state.Store.Commit (package fault): before the commit
// (neither the cursor nor the hints are written) or after it (both are).
// The parent then reopens the state file next to the same deterministic
// simulator and checks that the records are hinted exactly once in all:
// by the restarted tail in the first case, by the dead child in the
// second. The crash points exist only in binaries built with the build
// tag pcwatch_faults; a plain `go test` builds such a child with
// `go test -c -tags pcwatch_faults`.

const crashDirEnv = "PCWATCH_ACTIVITY_CRASH_DIR"

// crashChanges are the changes both the child and the parent make to
// their (identical) simulators: four relevant records.
func crashChanges(e *env) {
	for _, s := range e.active(4) {
		must(e.t, e.sim.IncreaseSeats(s.customer, s.id, 1))
		e.clk.Advance(time.Minute)
	}
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as a crash-test child")
	}
	e := newEnvAt(t, t0, 6, pcsim.AuditConfig{}, dir)
	crashChanges(e)
	e.poll(e.tail(nil))
	os.Exit(0) // the crash point did not fire
}

// faultChild returns a test binary of this package with the fault points
// compiled in (faulttest.Child).
func faultChild(t *testing.T) string { return faulttest.Child(t, faultsCompiled) }

func TestCrashAtCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a test binary and spawns processes")
	}
	bin := faultChild(t)
	for _, tc := range []struct {
		point     string
		committed bool
	}{
		{fault.StateCommitBefore, false},
		{fault.StateCommitAfter, true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), fault.EnvVar+"="+tc.point, crashDirEnv+"="+dir)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != fault.ExitCode {
				t.Fatalf("child: %v, want exit %d at the crash point\n%s", err, fault.ExitCode, out)
			}

			e := newEnvAt(t, t0, 6, pcsim.AuditConfig{}, dir)
			crashChanges(e)
			stored, hints := e.cursor() != nil, len(e.hints())
			if tc.committed != stored || tc.committed != (hints == 4) || (!tc.committed && hints != 0) {
				t.Fatalf("after a crash at %s: cursor stored %v, %d hints; want both or neither (committed %v)",
					tc.point, stored, hints, tc.committed)
			}
			rep := e.poll(e.tail(nil))
			want := 4
			if tc.committed {
				want = 0
			}
			if rep.New != want || rep.Relevant != want {
				t.Errorf("the restarted tail found %d new records, hinted %d; want %d", rep.New, rep.Relevant, want)
			}
			if n := e.hintCount(); n != 4 {
				t.Errorf("hints coalesce %d records after the restart, want each of the 4 once", n)
			}
		})
	}
}
