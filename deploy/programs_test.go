package deploy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// What the programs really accept, read from their own code: every
// artifact's variables, flags and secret files are checked against it.

var envRE = regexp.MustCompile(`PCWATCH_[A-Z0-9_]+`)

func names(texts ...string) map[string]bool {
	m := map[string]bool{}
	for _, t := range texts {
		for _, n := range envRE.FindAllString(t, -1) {
			m[strings.TrimSuffix(n, "_")] = true
		}
	}
	return m
}

// credentialVars are the variables that also have a _FILE variant.
func credentialVars(program string) map[string]bool {
	m := map[string]bool{opsguard.TokenEnv: true, "PCWATCH_NATS_USER": true, "PCWATCH_NATS_PASSWORD": true, "PCWATCH_NATS_TOKEN": true}
	if program == "watcher" {
		for n := range names(pc.ErrNoCredentials.Error()) {
			if !strings.HasSuffix(n, "_FILE") {
				m[n] = true
			}
		}
		m["PCWATCH_PC_TOKEN_URL"] = true
	}
	return m
}

// envAllowed says whether program reads the variable name.
func envAllowed(program, name string) error {
	var known map[string]bool
	switch program {
	case "watcher":
		known = names(watcher.Usage(), natsconn.Usage(), "PCWATCH_CONFIG")
	case "notifier":
		known = names(natsconn.Usage())
	default:
		return fmt.Errorf("unknown program %s", program)
	}
	creds := credentialVars(program)
	for c := range creds {
		known[c] = true
	}
	if base, ok := strings.CutSuffix(name, "_FILE"); ok && creds[base] {
		return nil
	}
	if !known[name] {
		return fmt.Errorf("%s does not read %s", program, name)
	}
	return nil
}

// notifierRunFlags are `notifier run`'s flags, read from cmd/notifier's
// source (its flag set is package main's) and natsconn's.
func notifierRunFlags(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("../cmd/notifier/main.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i := strings.Index(s, "func cmdRun(")
	j := strings.Index(s[i:], "\n}\n")
	if i < 0 || j < 0 {
		t.Fatal("cmd/notifier/main.go has no cmdRun")
	}
	m := map[string]bool{}
	for _, f := range regexp.MustCompile(`fs\.(?:String|Var|Bool|Int|Duration)\((?:&\w+, )?"([a-z-]+)"`).FindAllStringSubmatch(s[i:i+j], -1) {
		m[f[1]] = true
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	natsconn.AddFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = true })
	if !m["config"] || !m["listen"] || !m["nats-url"] {
		t.Fatalf("notifier run's flags not found: %v", m)
	}
	return m
}

// checkNotifierArgs checks `notifier run` arguments: known flags, each
// with a value, and returns them.
func checkNotifierArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 || args[0] != "run" {
		t.Errorf("%s: notifier %q, want run", where, args)
		return nil
	}
	known := notifierRunFlags(t)
	vals := map[string]string{}
	for i := 1; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || !known[name] {
			t.Errorf("%s: notifier run does not take %q", where, args[i])
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				t.Errorf("%s: --%s has no value", where, name)
				break
			}
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

// files maps paths inside a container or unit to what is there: a local
// file (a config) or a secret's dummy value.
type files map[string]string

func (f files) read(path string) ([]byte, error) {
	v, ok := f[path]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", path, os.ErrNotExist)
	}
	if local, ok := strings.CutPrefix(v, "local:"); ok {
		return os.ReadFile(local)
	}
	return []byte(v), nil
}

// materialise writes the files to a directory, returning the path each
// maps to (the programs' loaders open real files).
func (f files) materialise(t *testing.T) func(string) string {
	t.Helper()
	dir := t.TempDir()
	m := map[string]string{}
	for p := range f {
		b, err := f.read(p)
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(dir, strings.ReplaceAll(strings.Trim(p, "/"), "/", "_"))
		if err := os.WriteFile(local, b, 0o600); err != nil {
			t.Fatal(err)
		}
		m[p] = local
	}
	return func(p string) string {
		if l, ok := m[p]; ok {
			return l
		}
		return p
	}
}

// checkWatcher loads `watcher <args>` with env as the real watcher does
// (its config file, variables and flags), reads its Partner Center, NATS
// and operations credentials from the files, and returns the config.
// wantPC is the credentials mode expected ("app+user", ...).
func checkWatcher(t *testing.T, where string, args []string, env map[string]string, fs files, wantPC string) watcher.Config {
	t.Helper()
	for n := range env {
		if err := envAllowed("watcher", n); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	local := fs.materialise(t)
	getenv := func(n string) string {
		v := env[n]
		if strings.HasSuffix(n, "_FILE") || n == "PCWATCH_CONFIG" {
			if _, ok := fs[v]; !ok && v != "" {
				t.Errorf("%s: %s=%s: no such file in the deployment", where, n, v)
			}
			return local(v)
		}
		return v
	}
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("%s: watcher %q, want run", where, args)
	}
	runArgs := slices.Clone(args[1:])
	for i, a := range runArgs {
		if (a == "--config" || a == "-config") && i+1 < len(runArgs) {
			if _, ok := fs[runArgs[i+1]]; !ok {
				t.Errorf("%s: --config %s: no such file in the deployment", where, runArgs[i+1])
			}
			runArgs[i+1] = local(runArgs[i+1])
		}
	}
	cfg, err := watcher.Load("run", runArgs, getenv)
	if err != nil {
		t.Fatalf("%s: watcher run %q: %v", where, args[1:], err)
	}
	creds, err := pc.CredentialsFromEnv(getenv)
	if err != nil {
		t.Errorf("%s: Partner Center credentials: %v", where, err)
	} else if creds.Mode() != wantPC {
		t.Errorf("%s: Partner Center credentials mode %q, want %q", where, creds.Mode(), wantPC)
	}
	if _, err := natsconn.Credentials(getenv, cfg.NATS); err != nil {
		t.Errorf("%s: NATS credentials: %v", where, err)
	}
	if tok, err := opsguard.TokenFromEnv(getenv); err != nil || tok == "" {
		t.Errorf("%s: operations token: %q %v (set %s)", where, tok, err, opsguard.TokenFileEnv)
	}
	return cfg
}

// checkNotifier checks `notifier <args>` with env: flags, variables, the
// configuration (decoded strictly and resolved with its secret files from
// fs, as `notifier check` does), and the NATS and operations credentials.
func checkNotifier(t *testing.T, where string, args []string, env map[string]string, fs files) *notify.Config {
	t.Helper()
	for n := range env {
		if err := envAllowed("notifier", n); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	flags := checkNotifierArgs(t, where, args)
	path := flags["config"]
	b, err := fs.read(path)
	if err != nil {
		t.Fatalf("%s: --config %s: %v", where, path, err)
	}
	cfg, err := notify.ParseConfig(b, notify.ParseOptions{File: path, ReadFile: fs.read,
		LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok }})
	if err != nil {
		t.Fatalf("%s: notifier configuration: %v", where, err)
	}
	local := fs.materialise(t)
	getenv := func(n string) string {
		if strings.HasSuffix(n, "_FILE") {
			if _, ok := fs[env[n]]; !ok && env[n] != "" {
				t.Errorf("%s: %s=%s: no such file in the deployment", where, n, env[n])
			}
			return local(env[n])
		}
		return env[n]
	}
	o, err := natsconn.Credentials(getenv, natsconn.Options{URL: env["PCWATCH_NATS_URL"]})
	if err != nil || (o.User == "" && o.Token == "" && flags["nats-nkey"] == "" && flags["nats-creds"] == "" && env["PCWATCH_NATS_NKEY"] == "") {
		t.Errorf("%s: the notifier has no NATS credentials: %v", where, err)
	}
	if tok, err := opsguard.TokenFromEnv(getenv); err != nil || tok == "" {
		t.Errorf("%s: operations token: %q %v", where, tok, err)
	}
	return cfg
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
