package natsconn_test

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsconn"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestSettingsPrecedence: a flag given on the command line wins over the
// environment, the environment over the program's base (its default, or
// the watcher's config file); a flag given empty still wins.
func TestSettingsPrecedence(t *testing.T) {
	base := natsconn.Options{URL: "nats://base:4222", Name: "prog", TLSCAFile: "/base-ca.pem", User: "base-user"}
	env := map[string]string{"PCWATCH_NATS_URL": "nats://env:4222", "PCWATCH_NATS_NKEY": "/env.nk", "PCWATCH_NATS_CREDS": "/env.creds",
		"PCWATCH_NATS_TLS_CA": "/env-ca.pem", "PCWATCH_NATS_TLS_CERT": "/env-c.pem", "PCWATCH_NATS_TLS_KEY": "/env-k.pem",
		"PCWATCH_NATS_USER": "env-user", "PCWATCH_NATS_PASSWORD": "env-pass", "PCWATCH_NATS_TOKEN": "env-token"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want natsconn.Options
	}{
		{"base only", nil, nil, base},
		{"environment over base", nil, env, natsconn.Options{URL: "nats://env:4222", Name: "prog", NKeySeedFile: "/env.nk", CredsFile: "/env.creds",
			TLSCAFile: "/env-ca.pem", TLSCertFile: "/env-c.pem", TLSKeyFile: "/env-k.pem", User: "env-user", Password: "env-pass", Token: "env-token"}},
		{"flags over environment", []string{"--nats-url", "tls://flag:4222", "--nats-nkey", "/flag.nk", "--nats-creds", "/flag.creds",
			"--nats-tls-ca", "/flag-ca.pem", "--nats-tls-cert", "/flag-c.pem", "--nats-tls-key", "/flag-k.pem"}, env,
			natsconn.Options{URL: "tls://flag:4222", Name: "prog", NKeySeedFile: "/flag.nk", CredsFile: "/flag.creds",
				TLSCAFile: "/flag-ca.pem", TLSCertFile: "/flag-c.pem", TLSKeyFile: "/flag-k.pem", User: "env-user", Password: "env-pass", Token: "env-token"}},
		{"a flag given empty wins", []string{"--nats-tls-ca="}, map[string]string{"PCWATCH_NATS_TLS_CA": "/env-ca.pem"},
			natsconn.Options{URL: "nats://base:4222", Name: "prog", User: "base-user"}},
		{"white space trimmed", []string{"--nats-url", " nats://flag:4222 "}, map[string]string{"PCWATCH_NATS_PASSWORD": " pw\n"},
			natsconn.Options{URL: "nats://flag:4222", Name: "prog", TLSCAFile: "/base-ca.pem", User: "base-user", Password: "pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := natsconn.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.Options(envOf(tc.env), base)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
			// Settings alone leaves the credentials as base has them.
			if s := f.Settings(envOf(tc.env), base); s.User != base.User || s.Password != "" || s.Token != "" {
				t.Errorf("Settings read credentials: %#v", s)
			}
		})
	}
}

// TestCredentialFiles: each credential can come from the file its _FILE
// variable names; anything unusable is an ErrBadCredential naming the
// variable, and never the value.
func TestCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw, tok, user := write("pw", "s3cret-pw\n"), write("tok", "  t0ken  "), write("user", "svc")
	empty, big := write("empty", " \n"), write("big", strings.Repeat("x", 64<<10+1))
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    natsconn.Options
		wantErr string // in the error; "" for none
	}{
		{"from files", map[string]string{"PCWATCH_NATS_USER_FILE": user, "PCWATCH_NATS_PASSWORD_FILE": pw, "PCWATCH_NATS_TOKEN_FILE": tok},
			natsconn.Options{User: "svc", Password: "s3cret-pw", Token: "t0ken"}, ""},
		{"both set", map[string]string{"PCWATCH_NATS_PASSWORD": "s3cret-pw", "PCWATCH_NATS_PASSWORD_FILE": pw}, natsconn.Options{},
			"both PCWATCH_NATS_PASSWORD and PCWATCH_NATS_PASSWORD_FILE are set"},
		{"missing file", map[string]string{"PCWATCH_NATS_TOKEN_FILE": filepath.Join(dir, "nope")}, natsconn.Options{}, "PCWATCH_NATS_TOKEN_FILE"},
		{"empty file", map[string]string{"PCWATCH_NATS_PASSWORD_FILE": empty}, natsconn.Options{}, "is empty"},
		{"huge file", map[string]string{"PCWATCH_NATS_PASSWORD_FILE": big}, natsconn.Options{}, "larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := natsconn.Credentials(envOf(tc.env), natsconn.Options{})
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Credentials = %#v, %v; want %#v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, natsconn.ErrBadCredential) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want an ErrBadCredential saying %q", err, tc.wantErr)
			}
			noSecrets(t, "the error", err.Error(), "s3cret-pw")
		})
	}
}

// TestSetNamesOnlyFlagSettings: a program's config file can set what has a
// flag, never a credential.
func TestSetNamesOnlyFlagSettings(t *testing.T) {
	var o natsconn.Options
	for _, name := range natsconn.FlagNames() {
		if !o.Set(name, " /"+name+" ") {
			t.Errorf("Set(%q) refused", name)
		}
	}
	want := natsconn.Options{URL: "/nats-url", NKeySeedFile: "/nats-nkey", CredsFile: "/nats-creds", TLSCAFile: "/nats-tls-ca",
		TLSCertFile: "/nats-tls-cert", TLSKeyFile: "/nats-tls-key"}
	if o != want {
		t.Errorf("got %#v, want %#v", o, want)
	}
	for _, name := range []string{"nats-password", "nats-user", "nats-token", "password", "url"} {
		if o.Set(name, "x") {
			t.Errorf("Set(%q) accepted", name)
		}
	}
}

// TestUsageAndHintName: the usage text names every flag and variable, and
// the refusal hint only names settings that exist.
func TestUsageAndHintName(t *testing.T) {
	u := natsconn.Usage()
	all := []string{"PCWATCH_NATS_USER", "PCWATCH_NATS_USER_FILE", "PCWATCH_NATS_PASSWORD", "PCWATCH_NATS_PASSWORD_FILE",
		"PCWATCH_NATS_TOKEN", "PCWATCH_NATS_TOKEN_FILE"}
	for _, f := range natsconn.FlagNames() {
		all = append(all, "--"+f, "PCWATCH_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_")))
	}
	for _, want := range all {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %s", want)
		}
	}
	for _, w := range strings.FieldsFunc(natsconn.CredentialsHint(), func(r rune) bool { return strings.ContainsRune(" ,()", r) }) {
		if (strings.HasPrefix(w, "--") || strings.HasPrefix(w, "PCWATCH_")) && !strings.Contains(u, w) {
			t.Errorf("the hint names %s, which is no setting", w)
		}
	}
}
