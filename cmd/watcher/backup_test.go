package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// customersIn opens a state file (as a watcher's start checks it) and
// counts its customers.
func customersIn(t *testing.T, path string) int {
	t.Helper()
	st, err := state.Open(path, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("%s does not open as a state file: %v", path, err)
	}
	defer st.Close()
	c, err := st.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return c.Records[resource.Customers]
}

// watcher backup copies a stopped watcher's state file directly, and a
// running watcher's through its guarded /api/backup (the lock is held);
// the running watcher answers /api/progress; a copy put back in place is
// a state file the next watcher runs with.
func TestBackupAndRestore(t *testing.T) {
	if binary == "" {
		t.Skip("binary tests disabled")
	}
	_, url := simServer(t, 6)
	dir := t.TempDir()
	env := []string{"PCWATCH_PC_TOKEN=tok"}
	if r := runBin(t, env, runArgs(url, dir)...); r.code != 0 {
		t.Fatalf("first cycle: exit %d: %s", r.code, r.stderr)
	}
	backups := t.TempDir()

	// Stopped: the file itself, read-only.
	offline := filepath.Join(backups, "offline.db")
	r := runBin(t, nil, "backup", offline, "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "checked (6 customers") || !strings.Contains(r.stdout, filepath.Join(dir, state.FileName)) {
		t.Fatalf("backup of a stopped watcher: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if n := customersIn(t, offline); n != 6 {
		t.Errorf("offline copy holds %d customers, want 6", n)
	}
	if r := runBin(t, nil, "backup", filepath.Join(dir, state.FileName), "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "state file itself") {
		t.Errorf("backup onto the state file: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runBin(t, nil, "backup"); r.code != 2 {
		t.Errorf("backup without a destination: exit %d, want 2", r.code)
	}

	// Running: the watcher holds the lock; the copy comes from it.
	const token = "ops-T0KEN-9"
	cmd := exec.Command(binary, "run", "--pc-url", url, "--data-dir", dir, "--nats-port", "-1", "--listen", "127.0.0.1:0",
		"--log-format", "json", "--rate", "60000", "--interval", "1h", "--sweep", "burst")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PCWATCH_PC_TOKEN=tok", "PCWATCH_OPS_TOKEN=" + token}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	defer stop()
	sc := bufio.NewScanner(stderr)
	var listen string
	cycled := make(chan struct{})
	for listen == "" && sc.Scan() {
		var l struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "watcher started" {
			listen = l.Listen
		}
	}
	if listen == "" {
		t.Fatal("the watcher did not start")
	}
	go func() {
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"poll cycle"`) {
				select {
				case <-cycled:
				default:
					close(cycled)
				}
			}
		}
	}()
	select {
	case <-cycled:
	case <-time.After(60 * time.Second):
		t.Fatal("no poll cycle logged")
	}

	online := filepath.Join(backups, "online.db")
	r = runBin(t, nil, "backup", online, "--data-dir", dir, "--listen", listen)
	if r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "PCWATCH_OPS_TOKEN") {
		t.Errorf("backup of a running watcher without the token: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(online); !os.IsNotExist(err) {
		t.Errorf("a refused backup left %s: %v", online, err)
	}
	r = runBin(t, []string{"PCWATCH_OPS_TOKEN=" + token}, "backup", backups, "--data-dir", dir, "--listen", listen)
	if r.code != 0 || !strings.Contains(r.stdout, "/api/backup") || !strings.Contains(r.stdout, "checked (6 customers") {
		t.Fatalf("backup of a running watcher: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	copies, _ := filepath.Glob(filepath.Join(backups, "pcwatch-*.db"))
	if len(copies) != 1 {
		t.Fatalf("backup into a directory made %v", copies)
	}
	if n := customersIn(t, copies[0]); n != 6 {
		t.Errorf("online copy holds %d customers, want 6", n)
	}

	// /api/progress: the sweep is done, 6 of 6.
	req, _ := http.NewRequest("GET", "http://"+listen+"/api/progress", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pr struct {
		Cycle   uint64  `json:"cycle"`
		Running bool    `json:"running"`
		Total   int     `json:"total"`
		Polled  int     `json:"polled"`
		Percent float64 `json:"percent"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &pr) != nil || pr.Total != 6 || pr.Polled != 6 || pr.Percent != 100 || pr.Cycle < 2 {
		t.Errorf("/api/progress: %s %s", resp.Status, body)
	}

	// Restore: stop, put the copy in place, run again.
	stop()
	path := filepath.Join(dir, state.FileName)
	b, err := os.ReadFile(copies[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, env, runArgs(url, dir)...); r.code != 0 {
		t.Fatalf("a cycle on the restored file: exit %d: %s", r.code, r.stderr)
	}
}
