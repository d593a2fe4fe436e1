package watcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsconn"
)

// TestNATSSettingsPrecedence: the watcher's NATS connection settings are
// natsconn's (the notifier's flags and variables), also read from its
// config file, with the watcher's precedence: flags, then environment, then
// file. Credentials are never part of Config.
func TestNATSSettingsPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(file, []byte("nats_url: [nats://a:4222, nats://b:4222]\nnats_tls_ca: /file-ca.pem\nnats_tls_cert: /file-c.pem\nnats_nkey: /file.nk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PCWATCH_CONFIG": file, "PCWATCH_NATS_TLS_CA": "/env-ca.pem", "PCWATCH_NATS_NKEY": "/env.nk",
		"PCWATCH_NATS_PASSWORD": "pw", "PCWATCH_NATS_USER": "svc"}
	c, err := Load("run", []string{"--nats-nkey", "/flag.nk"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := natsconn.Options{URL: "nats://a:4222,nats://b:4222", TLSCAFile: "/env-ca.pem", TLSCertFile: "/file-c.pem", NKeySeedFile: "/flag.nk"}
	if c.NATS != want {
		t.Errorf("NATS = %#v\nwant   %#v", c.NATS, want)
	}
	for _, tc := range []struct{ body, want string }{
		{"nats_password: pw\n", `unknown key "nats_password"`},
		{"nats_url: http://x\n", `--nats-url "http://x"`},
	} {
		if err := os.WriteFile(file, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load("run", []string{"--config", file}, func(string) string { return "" })
		if _, ok := err.(*ConfigError); !ok || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want a ConfigError saying %s", tc.body, err, tc.want)
		}
	}
	u := Usage()
	for _, f := range natsconn.FlagNames() {
		if !strings.Contains(u, "--"+f) || !strings.Contains(u, strings.ReplaceAll(f, "-", "_")) {
			t.Errorf("usage lacks --%s or its file key", f)
		}
	}
}
