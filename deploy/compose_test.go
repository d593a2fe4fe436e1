package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/stream"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// The subset of the compose specification deploy/compose.yaml uses;
// decoding is strict, so a key outside it (a typo) fails.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]struct{}       `yaml:"volumes"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	Ports       []string          `yaml:"ports"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	Tmpfs       []string          `yaml:"tmpfs"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Restart         string `yaml:"restart"`
}

func strictYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// envExample reads deploy/env.example (what compose interpolates).
func envExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = v
		}
	}
	return m
}

var interpRE = regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}`)

// interpolate resolves ${VAR}, ${VAR:-default} and ${VAR:?error} with
// vars; every variable used must be in env.example.
func interpolate(t *testing.T, s string, vars map[string]string) string {
	return interpRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := interpRE.FindStringSubmatch(m)
		v, ok := vars[sub[1]]
		if !ok {
			t.Errorf("compose.yaml uses ${%s}, which env.example does not set", sub[1])
		}
		return v
	})
}

// TestComposeFile decodes deploy/compose.yaml strictly and checks that
// every file, volume and secret it names exists, that the watcher and the
// notifier are given only flags and variables they read and load with
// them (their config files, secrets and credentials resolved as at
// start), that every secret file is made by secrets/create.sh and listed
// in secrets/README.md, and that the programs run hardened.
func TestComposeFile(t *testing.T) {
	var c composeFile
	strictYAML(t, "compose.yaml", &c)
	vars := envExample(t)
	if got := sortedKeys(c.Services); !reflect.DeepEqual(got, []string{"nats", "notifier", "watcher"}) {
		t.Fatalf("services %v", got)
	}
	script, _ := os.ReadFile("secrets/create.sh")
	readme, _ := os.ReadFile("secrets/README.md")
	for name, s := range c.Secrets {
		if s.File != "./secrets/"+name {
			t.Errorf("secret %s: file %q, want ./secrets/%s (git-ignored)", name, s.File, name)
		}
		if !regexp.MustCompile(`(?m)^(put|ask) ` + name + ` `).Match(script) {
			t.Errorf("secrets/create.sh does not make %s", name)
		}
		if !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("secrets/README.md does not list %s", name)
		}
	}
	usedVolumes := map[string]bool{}
	usedSecrets := map[string]bool{}
	for name, s := range c.Services {
		where := "compose.yaml: services." + name
		fs := files{}
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			dst = strings.TrimSuffix(dst, ":ro")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: volume %s: %v", where, v, err)
				}
				fs[dst] = "local:" + src
			} else {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared", where, src)
				}
				usedVolumes[src] = true
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s: secret %s is not declared", where, sec)
			}
			usedSecrets[sec] = true
			fs["/run/secrets/"+sec] = dummySecret(sec)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = interpolate(t, v, vars)
		}
		if name == "nats" {
			checkComposeNATS(t, s, fs)
			continue
		}
		if s.User != "65532:65532" || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: not hardened: user %q read_only %v cap_drop %v security_opt %v", where, s.User, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		image := interpolate(t, s.Image, vars)
		if image == "" {
			t.Errorf("%s: no image", where)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %s is published beyond the host's loopback", where, p)
			}
		}
		switch name {
		case "watcher":
			if s.Entrypoint != nil {
				t.Errorf("%s: the image's entrypoint is the watcher", where)
			}
			if s.Build == nil || s.Build.Context != ".." || s.Build.Dockerfile != "Dockerfile" {
				t.Errorf("%s: build %+v, want ../Dockerfile", where, s.Build)
			} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Error(err)
			}
			cfg := checkWatcher(t, where, s.Command, env, fs, "app+user")
			if cfg.DataDir != "/data" || !strings.HasPrefix(cfg.Listen, "0.0.0.0:") || !slices.Contains(cfg.AllowedHosts, "watcher") {
				t.Errorf("%s: data dir %q listen %q allowed hosts %v", where, cfg.DataDir, cfg.Listen, cfg.AllowedHosts)
			}
			if cfg.NATS.URL != "nats://nats:4222" {
				t.Errorf("%s: NATS URL %q", where, cfg.NATS.URL)
			}
			if !slices.Contains(s.Volumes, "watcher-data:/data") {
				t.Errorf("%s: the state is not on the watcher-data volume", where)
			}
			if _, port, _ := strings.Cut(cfg.Listen, ":"); !slices.Contains(s.Ports, "127.0.0.1:"+port+":"+port) {
				t.Errorf("%s: the operations port %s is not published on loopback", where, port)
			}
		case "notifier":
			if !slices.Equal(s.Entrypoint, []string{"/usr/local/bin/notifier"}) {
				t.Errorf("%s: entrypoint %q", where, s.Entrypoint)
			}
			checkNotifier(t, where, s.Command, env, fs)
			if env["PCWATCH_NATS_URL"] != "nats://nats:4222" || env["PCWATCH_NATS_USER"] != "notifier" {
				t.Errorf("%s: NATS %q as %q", where, env["PCWATCH_NATS_URL"], env["PCWATCH_NATS_USER"])
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: depends on unknown %s", where, dep)
			}
		}
	}
	for v := range c.Volumes {
		if !usedVolumes[v] {
			t.Errorf("volume %s is declared but not used", v)
		}
	}
	for s := range c.Secrets {
		if !usedSecrets[s] {
			t.Errorf("secret %s is declared but not used", s)
		}
	}
}

func dummySecret(name string) string {
	switch name {
	case "webhook_url":
		return "https://hooks.example.com/pcwatch"
	case "webhook_secret":
		return "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
	}
	return "dummy-" + name
}

var natsVarRE = regexp.MustCompile(`(?m)^\s*password:\s*\$([A-Z0-9_]+)\s*$`)

// checkComposeNATS: the nats service runs nats.conf with JetStream on its
// volume, and its entrypoint exports every variable nats.conf needs from
// a secret file the service mounts.
func checkComposeNATS(t *testing.T, s composeService, fs files) {
	conf, err := fs.read("/etc/nats/nats.conf")
	if err != nil {
		t.Fatalf("compose.yaml: services.nats does not mount nats.conf at /etc/nats/nats.conf: %v", err)
	}
	script := strings.Join(s.Command, "\n")
	if !strings.Contains(script, "nats-server --config /etc/nats/nats.conf") || !slices.Contains(s.Volumes, "nats-data:/data") {
		t.Errorf("compose.yaml: services.nats: %q, volumes %v", script, s.Volumes)
	}
	for _, m := range natsVarRE.FindAllStringSubmatch(string(conf), -1) {
		re := regexp.MustCompile(`export ` + m[1] + `="\$\$\(cat (/run/secrets/[a-z_]+)\)"`)
		sm := re.FindStringSubmatch(script)
		if sm == nil {
			t.Errorf("compose.yaml: services.nats does not export %s from a secret", m[1])
		} else if _, ok := fs[sm[1]]; !ok {
			t.Errorf("compose.yaml: services.nats reads %s, which it does not mount", sm[1])
		}
	}
}

// startNATSConf runs deploy/nats/nats.conf in process (its JetStream store
// and ports moved to the test's), with the passwords given.
func startNATSConf(t *testing.T, watcherPW, notifierPW string) *server.Server {
	t.Helper()
	t.Setenv("PCWATCH_WATCHER_NATS_PASSWORD", watcherPW)
	t.Setenv("PCWATCH_NOTIFIER_NATS_PASSWORD", notifierPW)
	opts, err := server.ProcessConfigFile("nats/nats.conf")
	if err != nil {
		t.Fatalf("nats/nats.conf: %v", err)
	}
	if !opts.JetStream || opts.StoreDir != "/data" {
		t.Errorf("nats.conf: jetstream %v store %q, want JetStream in /data", opts.JetStream, opts.StoreDir)
	}
	opts.StoreDir, opts.Port, opts.HTTPPort, opts.NoLog, opts.NoSigs = t.TempDir(), -1, -1, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats.conf: the server did not start")
	}
	return ns
}

// TestNATSConfMatchesEmbedded: nats.conf grants its two users exactly the
// permissions of the embedded server's two identities.
func TestNATSConfMatchesEmbedded(t *testing.T) {
	t.Setenv("PCWATCH_WATCHER_NATS_PASSWORD", "w")
	t.Setenv("PCWATCH_NOTIFIER_NATS_PASSWORD", "n")
	opts, err := server.ProcessConfigFile("nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	w, n := natsembed.Permissions(natsembed.DefaultNotifierSubjects)
	want := map[string]*server.Permissions{"watcher": w, "notifier": n}
	if len(opts.Users) != 2 {
		t.Fatalf("nats.conf has %d users, want watcher and notifier", len(opts.Users))
	}
	for _, u := range opts.Users {
		wp := want[u.Username]
		if wp == nil {
			t.Errorf("nats.conf: unexpected user %s", u.Username)
			continue
		}
		if !reflect.DeepEqual(u.Permissions, wp) {
			t.Errorf("nats.conf: user %s: permissions\n%+v %+v\nwant\n%+v %+v", u.Username, u.Permissions.Publish, u.Permissions.Subscribe, wp.Publish, wp.Subscribe)
		}
	}
}

// TestNATSConfWorks runs the watcher against nats.conf's server as
// compose runs it (user watcher): it creates the event stream and the
// notifier's dead-letter stream and bucket and publishes; the notifier
// user reads the events but can neither publish one nor create a stream.
func TestNATSConfWorks(t *testing.T) {
	ns := startNATSConf(t, "watcher-pw", "notifier-pw")
	sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 4, Token: "tok"})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("watcher-pw\n"), 0o600)
	env := map[string]string{"PCWATCH_PC_TOKEN": "tok", "PCWATCH_NATS_USER": "watcher", "PCWATCH_NATS_PASSWORD_FILE": pw}
	cfg, err := watcher.Load("run", []string{"--once", "--pc-url", srv.URL, "--data-dir", filepath.Join(dir, "data"), "--listen", "",
		"--nats-url", ns.ClientURL(), "--rate", "60000"}, func(n string) string { return env[n] })
	if err != nil {
		t.Fatal(err)
	}
	err = watcher.Run(context.Background(), watcher.Options{Config: cfg, Getenv: func(n string) string { return env[n] },
		Logger: watcher.NewLogger(io.Discard, "text", "error"), Stderr: io.Discard})
	if err != nil {
		t.Fatalf("the watcher as user watcher: %v", err)
	}
	nw := filepath.Join(dir, "npw")
	os.WriteFile(nw, []byte("notifier-pw"), 0o600)
	nopts, err := natsconn.Credentials(func(n string) string {
		return map[string]string{"PCWATCH_NATS_USER": "notifier", "PCWATCH_NATS_PASSWORD_FILE": nw}[n]
	}, natsconn.Options{URL: ns.ClientURL(), Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Connect(nopts)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{stream.Name, "PCWATCH_DLQ", "KV_PCWATCH_DELIVERIES"} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s (as the notifier): %v", name, err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, stream.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Errorf("the notifier reads no event: %v", err)
	}
	if err := nc.Publish("pcwatch.events.subscription.created.c1.forged", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.FlushTimeout(5 * time.Second)
	if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("the notifier publishing an event: %v, want a permission violation", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	if _, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
		t.Error("the notifier created a stream")
	}
}
