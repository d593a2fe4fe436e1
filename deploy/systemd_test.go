package deploy

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/state"
)

// unit is a parsed systemd unit: every assignment, by section and key,
// in order.
type unit map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: %q", path, l)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

func (u unit) one(key string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// TestSystemdUnits runs systemd-analyze verify on both units, checks their
// hardening, that every credential a *_FILE variable names is loaded
// (LoadCredential) and every loaded one is used, and loads the watcher and
// the notifier with exactly the command line, environment, configuration
// and credential files the units give them.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is needed to verify deploy/systemd's units: apt-get install -y systemd (.ci/run does)")
	}
	units := map[string]string{"watcher": "systemd/pcwatch-watcher.service", "notifier": "systemd/pcwatch-notifier.service"}
	parsed := map[string]unit{}
	for program, path := range units {
		u := parseUnit(t, path)
		parsed[program] = u
		name := filepath.Base(path)
		where := path
		for _, want := range []string{"Service.DynamicUser=yes", "Service.ProtectSystem=strict", "Service.NoNewPrivileges=yes",
			"Service.PrivateTmp=yes", "Service.ProtectHome=yes", "Service.CapabilityBoundingSet=", "Service.RestrictSUIDSGID=yes",
			"Service.SystemCallFilter=@system-service", "Service.UMask=0077", "Install.WantedBy=multi-user.target"} {
			k, v, _ := strings.Cut(want, "=")
			if !slices.Contains(u[k], v) {
				t.Errorf("%s: want %s", where, want)
			}
		}
		credDir := "/run/credentials/" + name
		expand := func(s string) string {
			return strings.NewReplacer("%d", credDir, "%S", "/var/lib", "%%", "%").Replace(s)
		}
		env := map[string]string{}
		for _, e := range u["Service.Environment"] {
			k, v, _ := strings.Cut(e, "=")
			env[k] = expand(v)
		}
		fs := files{}
		loaded := map[string]string{}
		for _, lc := range u["Service.LoadCredential"] {
			id, src, ok := strings.Cut(lc, ":")
			if !ok || !filepath.IsAbs(src) {
				t.Errorf("%s: LoadCredential=%s: want ID:/absolute/path", where, lc)
			}
			loaded[id] = src
			fs[credDir+"/"+id] = dummySecret(id)
		}
		used := map[string]bool{}
		for k, v := range env {
			if id, ok := strings.CutPrefix(v, credDir+"/"); ok {
				used[id] = true
				if _, ok := loaded[id]; !ok {
					t.Errorf("%s: %s=%s but no LoadCredential=%s:...", where, k, v, id)
				}
			} else if strings.HasSuffix(k, "_FILE") {
				t.Errorf("%s: %s=%s is not a credential of the unit (%%d/...)", where, k, v)
			}
		}
		exec := strings.Fields(u.one("Service.ExecStart"))
		if len(exec) == 0 || exec[0] != "/usr/local/bin/"+program {
			t.Fatalf("%s: ExecStart=%q, want /usr/local/bin/%s", where, exec, program)
		}
		switch program {
		case "watcher":
			fs["/etc/pcwatch/watcher.yaml"] = "local:watcher.yaml"
			cfg := checkWatcher(t, where, exec[1:], env, fs, "app+user")
			sd := u.one("Service.StateDirectory")
			if sd == "" || cfg.DataDir != "/var/lib/"+sd || u.one("Service.StateDirectoryMode") != "0700" {
				t.Errorf("%s: data dir %q, StateDirectory=%q mode %q", where, cfg.DataDir, sd, u.one("Service.StateDirectoryMode"))
			}
			if !strings.HasPrefix(cfg.Listen, "127.0.0.1:") || cfg.NATS.URL != "" {
				t.Errorf("%s: listen %q NATS %q: want loopback and the embedded server", where, cfg.Listen, cfg.NATS.URL)
			}
		case "notifier":
			fs["/etc/pcwatch/notifier.yaml"] = "local:systemd/notifier.yaml"
			cfg := checkNotifier(t, where, exec[1:], env, fs)
			// Every channel secret is a loaded credential.
			b, _ := os.ReadFile("systemd/notifier.yaml")
			for id := range loaded {
				if strings.Contains(string(b), credDir+"/"+id) {
					used[id] = true
				}
			}
			_ = cfg
		}
		for id := range loaded {
			if !used[id] {
				t.Errorf("%s: LoadCredential=%s is not used", where, id)
			}
		}
	}
	// The notifier's NATS seed is the one the watcher creates in its state
	// directory (a DynamicUser's lives under /var/lib/private).
	w, n := parsed["watcher"], parsed["notifier"]
	seed := filepath.Join("/var/lib/private", w.one("Service.StateDirectory"), natsembed.CredentialsDirName, "notifier.nk")
	if !slices.Contains(n["Service.LoadCredential"], "nats_nkey:"+seed) {
		t.Errorf("the notifier does not load the watcher's seed %s: %q", seed, n["Service.LoadCredential"])
	}
	if w.one("Service.User") == n.one("Service.User") {
		t.Errorf("both units run as %s: the notifier must not reach the watcher's %s", w.one("Service.User"), state.FileName)
	}

	// systemd-analyze verify, against a root holding the units, systemd's
	// own units and an executable at each ExecStart path (their
	// arguments are checked above, by the programs' own parsers).
	root := t.TempDir()
	sysUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(sysUnits); err != nil {
		sysUnits = "/lib/systemd/system"
	}
	if err := os.CopyFS(filepath.Join(root, "usr/lib/systemd/system"), os.DirFS(sysUnits)); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for program, path := range units {
		copyFile(t, self, filepath.Join(root, "usr/local/bin", program), 0o755)
		copyFile(t, path, filepath.Join(root, "etc/systemd/system", filepath.Base(path)), 0o644)
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, "pcwatch-watcher.service", "pcwatch-notifier.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
