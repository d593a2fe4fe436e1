package image

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// moduleRoot is the repository's root (this package is internal/image).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestImageRunsFromItsRootfs builds the image as cmd/pcwatch-image does,
// writes and reads back the OCI tar, unpacks the flattened filesystem and
// runs the binaries from it, as the image's user (65532) with the
// image's environment and nothing of the host: `watcher --help`,
// `notifier --help` and a short `watcher demo` that must print events.
// The demo may write only to /data and /tmp: nothing else of the root
// filesystem changes (the image runs with a read-only root).
func TestImageRunsFromItsRootfs(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is needed to run the image's binaries in their own root: apt-get install -y util-linux")
	}
	if testing.Short() {
		t.Skip("-short: builds the image and runs the demo in it")
	}
	ctx := context.Background()
	work := t.TempDir()
	bins, err := BuildBinaries(ctx, moduleRoot(t), filepath.Join(work, "bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Build(Options{Binaries: bins, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(work, "pcwatch.oci.tar")
	if err := WriteOCI(tarPath, img, "pcwatch:test"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadOCI(tarPath, filepath.Join(work, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := back.Digest()
	if d1 != d2 {
		t.Fatalf("the tar's image %s is not the one built, %s", d2, d1)
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !reflect.DeepEqual(c.Entrypoint, []string{"/usr/local/bin/watcher"}) || len(c.Volumes) != 1 || cf.OS != "linux" {
		t.Errorf("config: user %q entrypoint %q volumes %v os %s", c.User, c.Entrypoint, c.Volumes, cf.OS)
	}
	if _, ok := c.Volumes[DataDir]; !ok {
		t.Errorf("volumes %v, want only %s", c.Volumes, DataDir)
	}
	root := filepath.Join(work, "rootfs")
	rc := mutate.Extract(back)
	err = Untar(rc, root, true)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp: %v %v, want sticky and world-writable", fi.Mode(), err)
	}
	before := snapshot(t, root)

	run := func(args ...string) *exec.Cmd {
		full := append([]string{"--map-user=65532", "--map-group=65532", "--root=" + root}, args...)
		cmd := exec.Command(unshare, full...)
		cmd.Env = c.Env
		cmd.Dir = "/"
		return cmd
	}
	out, err := run("/usr/local/bin/watcher", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "commands:") || !strings.Contains(string(out), "backup") {
		t.Fatalf("watcher --help in the image: %v\n%s", err, out)
	}
	out, err = run("/usr/local/bin/notifier", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "usage: notifier") {
		t.Fatalf("notifier --help in the image: %v\n%s", err, out)
	}
	out, err = run("/usr/local/bin/watcher", "run", "--once", "--pc-url", "http://127.0.0.1:1").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "PCWATCH_PC_TOKEN") {
		t.Errorf("watcher run without credentials in the image: exit %d, want 2 naming the credentials:\n%s", code, out)
	}

	// The demo on free ports, its state in the volume.
	demo := run("/usr/local/bin/watcher", "demo", "--customers", "10", "--interval", "1s", "--data-dir", DataDir+"/demo")
	stdout, err := demo.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	demo.Stderr = &stderr
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	eventLine := regexp.MustCompile(` (subscription|customer|managed-service)\.[a-z-]+`)
	var seen []string
	events := 0
	timeout := time.After(90 * time.Second)
wait:
	for events < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			seen = append(seen, l)
			if eventLine.MatchString(l) {
				events++
			}
		case <-timeout:
			break wait
		}
	}
	demo.Process.Signal(syscall.SIGINT)
	go func() {
		for range lines {
		}
	}()
	werr := demo.Wait()
	if events < 3 {
		t.Fatalf("the demo in the image printed %d event lines; stdout:\n%s\nstderr:\n%s", events, strings.Join(seen, "\n"), stderr.String())
	}
	if werr != nil {
		t.Errorf("the demo did not exit cleanly on SIGINT: %v\n%s", werr, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(root, "data", "demo", "pcwatch.db")); err != nil {
		t.Errorf("the demo's state file is not in the volume: %v", err)
	}
	after := snapshot(t, root)
	for p, v := range after {
		if under(p, "data") || under(p, "tmp") {
			continue
		}
		if before[p] != v {
			t.Errorf("the image's root filesystem changed at /%s (%q, was %q): it must run read-only", p, v, before[p])
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("/%s disappeared", p)
		}
	}
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// snapshot maps every path under root to its mode, size and mtime.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[filepath.ToSlash(rel)] = fi.Mode().String() + " " + time.Duration(fi.Size()).String() + " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDockerfileMatchesImage: the Dockerfile (for docker build) makes
// the filesystem and configuration Build makes: multi-stage, static
// binaries of every program, FROM scratch, the same user, files,
// environment, volume, ports, entrypoint and command, and the Go release
// of go.mod.
func TestDockerfileMatchesImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var ins []string // instructions, continuation lines joined
	cur := ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if cur == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		ins = append(ins, cur+l)
		cur = ""
	}
	get := func(kw string) []string {
		var out []string
		for _, i := range ins {
			if k, rest, _ := strings.Cut(i, " "); strings.EqualFold(k, kw) {
				out = append(out, strings.TrimSpace(rest))
			}
		}
		return out
	}
	froms := get("FROM")
	gomod, _ := os.ReadFile(filepath.Join(moduleRoot(t), "go.mod"))
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if len(froms) < 2 || froms[len(froms)-1] != "scratch" || goLine == nil || !strings.HasPrefix(froms[0], "golang:"+string(goLine[1])) {
		t.Errorf("FROM %q: want a golang:%s build stage and a final FROM scratch", froms, goLine[1])
	}
	cfg := Config("")
	want := map[string]string{
		"USER":       cfg.User,
		"WORKDIR":    cfg.WorkingDir,
		"VOLUME":     `["` + DataDir + `"]`,
		"EXPOSE":     strings.Join(Ports, " "),
		"ENV":        strings.Join(cfg.Env, " "),
		"ENTRYPOINT": mustJSON(cfg.Entrypoint),
		"CMD":        mustJSON(cfg.Cmd),
	}
	for kw, w := range want {
		got := get(kw)
		if len(got) == 0 || got[len(got)-1] != w {
			t.Errorf("%s %q, want %s", kw, got, w)
		}
	}
	runs := strings.Join(get("RUN"), "\n")
	var progs []string
	for n, pkg := range Programs {
		progs = append(progs, n)
		if !regexp.MustCompile(`CGO_ENABLED=0 .*go build .*` + regexp.QuoteMeta(pkg) + `\b`).MatchString(runs) {
			t.Errorf("no static go build of %s in the Dockerfile", pkg)
		}
		if !strings.Contains(runs, "/out/"+n) || !strings.Contains(runs, BinDir) {
			t.Errorf("%s is not copied to %s", n, BinDir)
		}
	}
	slices.Sort(progs)
	for _, f := range []struct{ name, body string }{{"/etc/passwd", Passwd}, {"/etc/group", Group}} {
		lit := "printf '" + strings.ReplaceAll(f.body, "\n", `\n`) + "' > /rootfs" + f.name
		if !strings.Contains(runs, lit) {
			t.Errorf("the Dockerfile does not write %s as the image does: want %s", f.name, lit)
		}
	}
	for _, s := range []string{"/rootfs" + CAFile, "chown 65532:65532 /rootfs" + DataDir, "chmod 0700 /rootfs" + DataDir, "chmod 1777 /rootfs" + TmpDir} {
		if !strings.Contains(runs, s) {
			t.Errorf("the Dockerfile lacks %q", s)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
