package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/fault"
	"github.com/pcwatch/pcwatch/internal/fault/faulttest"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// The crash tests re-run a test binary of this package as a child that
// commits to a state file and dies: at a crash point of Commit (package
// fault), or by kill -9 from the parent at a random instant. The parent
// reopens the file and checks that it holds the old state, or the new
// state with its events — never one without the other.
//
// The crash points exist only in binaries built with the build tag
// pcwatch_faults. A plain `go test ./internal/state` builds, for the
// crash-point test, a second test binary of this package with
// `go test -c -tags pcwatch_faults` (faultChild); under
// `go test -tags pcwatch_faults ./internal/state` the test binary is its
// own child. The kill -9 test needs no fault point and runs either way.

const childEnv = "PCWATCH_STATE_CRASH_CHILD"

// revChange is the change that takes entity c1/s1 to revision rev: its
// snapshot, its event and its ledger entry.
func revChange(rev uint64) *Change {
	raw := []byte(fmt.Sprintf(`{"id":"s1","quantity":%d}`, rev))
	return &Change{
		Puts:   []Put{{Kind: resource.Subscriptions, Key: "c1/s1", Record: Record{Hash: HashOf(raw), Rev: rev, Raw: raw}}},
		Events: []events.Envelope{{ID: fmt.Sprintf("ev-%d", rev), Subject: "pcwatch.events.subscription.quantity-changed.c1.s1", Entity: "subscription/c1/s1", Body: raw}},
		Ledger: []string{fmt.Sprintf("ledger-%d", rev)},
	}
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("only runs as a crash-test child")
	}
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := uint64(1)
	s.View(func(r *ReadTx) error {
		snap, _ := r.Customer("c1", resource.Subscriptions)
		if rec, ok := snap.Records[resource.Subscriptions]["s1"]; ok {
			start = rec.Rev + 1
		}
		return nil
	})
	limit, _ := strconv.ParseUint(os.Getenv("PCWATCH_STATE_CRASH_LIMIT"), 10, 64)
	for rev := start; limit == 0 || rev < start+limit; rev++ {
		if err := s.Commit(revChange(rev)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	s.Close()
	os.Exit(0)
}

func runChild(t *testing.T, path string, env ...string) *exec.Cmd {
	t.Helper()
	return runChildOf(os.Args[0], path, env...)
}

// runChildOf is runChild with the test binary bin.
func runChildOf(bin, path string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, childEnv+"="+path)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// checkConsistent verifies the invariant: the stored revision R of c1/s1
// is matched by exactly the events ev-1..ev-R in order and ledger entries
// 1..R. It returns R.
func checkConsistent(t *testing.T, path string) uint64 {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopening after the crash: %v", err)
	}
	defer s.Close()
	checkInvariants(t, s)
	var rev uint64
	var ledger []bool
	s.View(func(r *ReadTx) error {
		snap, _ := r.Customer("c1", resource.Subscriptions)
		if rec, ok := snap.Records[resource.Subscriptions]["s1"]; ok {
			rev = rec.Rev
			raw, err := rec.JSON()
			if want := fmt.Sprintf(`{"id":"s1","quantity":%d}`, rev); err != nil || string(raw) != want || rec.Hash != HashOf(raw) {
				t.Errorf("snapshot at rev %d holds %s (%v)", rev, raw, err)
			}
		}
		for i := uint64(1); i <= rev+1; i++ {
			ledger = append(ledger, r.LedgerHas(fmt.Sprintf("ledger-%d", i)))
		}
		return nil
	})
	recs, err := s.OutboxRead(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(recs)) != rev {
		t.Fatalf("snapshot at revision %d but the outbox holds %d events", rev, len(recs))
	}
	for i, r := range recs {
		if r.ID != fmt.Sprintf("ev-%d", i+1) {
			t.Fatalf("outbox[%d] = %s, want ev-%d", i, r.ID, i+1)
		}
	}
	for i, ok := range ledger {
		if want := uint64(i+1) <= rev; ok != want {
			t.Fatalf("ledger-%d present=%v with snapshot at revision %d", i+1, ok, rev)
		}
	}
	return rev
}

// faultChild returns a test binary of this package with the fault points
// compiled in (faulttest.Child).
func faultChild(t *testing.T) string { return faulttest.Child(t, faultsCompiled) }

// TestCrashAtEachCommitStep crashes a child at each crash point of Commit.
// The crash points sit outside the bbolt transaction (see Commit: Batch may
// run its function twice); a crash inside a transaction is what the kill
// -9 test hits, and a transaction that fails half-way is
// TestBatchRerunsCommitOnce's.
func TestCrashAtEachCommitStep(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	bin := faultChild(t)
	for _, fp := range []struct {
		name      string
		committed bool
	}{
		{fault.StateCommitBefore, false},
		{fault.StateCommitAfter, true},
	} {
		t.Run(fp.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			// Revisions 1 and 2 commit; the crash point fires on the third.
			cmd := runChildOf(bin, path, fault.EnvVar+"="+fp.name+"=3", "PCWATCH_STATE_CRASH_LIMIT=10")
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != fault.ExitCode {
				t.Fatalf("child: %v, want exit %d at the crash point", err, fault.ExitCode)
			}
			want := uint64(2)
			if fp.committed {
				want = 3
			}
			if rev := checkConsistent(t, path); rev != want {
				t.Errorf("after a crash at %s the state is at revision %d, want %d", fp.name, rev, want)
			}
		})
	}
}

// TestKillNineAtRandomInstants kills a committing child with SIGKILL at
// random instants, restarts it each time, and checks the invariant after
// every kill.
func TestKillNineAtRandomInstants(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), FileName)
	r := rand.New(rand.NewPCG(42, 7))
	last := uint64(0)
	for kill := 0; kill < 8; kill++ {
		cmd := runChild(t, path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A random instant: the child is somewhere inside its commit loop.
		time.Sleep(time.Duration(20+r.IntN(200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		rev := checkConsistent(t, path)
		if rev < last {
			t.Fatalf("revision went back from %d to %d", last, rev)
		}
		last = rev
	}
	if last == 0 {
		t.Fatal("the child never committed; the test proved nothing")
	}
	t.Logf("%d revisions committed across 8 kills, each consistent", last)
}
