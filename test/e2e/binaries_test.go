package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	redact "github.com/pcwatch/pcwatch/internal/secret"
)

// binDir holds the watcher and notifier built for the binary tests.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds cmd/watcher and cmd/notifier once per test binary.
func binaries(t *testing.T) (watcherBin, notifierBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "pcwatch-e2e-"); binErr != nil {
			return
		}
		for _, name := range []string{"watcher", "notifier"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "github.com/pcwatch/pcwatch/cmd/"+name).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("building %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "watcher"), filepath.Join(binDir, "notifier")
}

// testPKI is a CA and the server and client certificates it signed, as PEM
// files.
type testPKI struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
	pool                                             *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), pool: x509.NewCertPool()}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pcwatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.pool.AddCert(caCert)
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "pcwatch test " + name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), writeKey(name+".key", k)
	}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// serverTLS requires TLS and a client certificate signed by the CA.
func (p *testPKI) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func startNATSServer(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	edit(o)
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// runProc runs a binary to its end and returns its exit status and stderr.
func runProc(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", filepath.Base(bin), err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// notifierProc is a running notifier.
type notifierProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	log   strings.Builder
	ready chan struct{}
	done  chan struct{}
}

func (n *notifierProc) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

func startNotifier(t *testing.T, bin string, env []string, args ...string) *notifierProc {
	t.Helper()
	n := &notifierProc{cmd: exec.Command(bin, args...), ready: make(chan struct{}), done: make(chan struct{})}
	n.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			n.mu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
			if strings.Contains(sc.Text(), `"msg":"notifier ready"`) {
				once.Do(func() { close(n.ready) })
			}
		}
	}()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		<-n.done
		_ = n.cmd.Wait()
	})
	select {
	case <-n.ready:
	case <-n.done:
		t.Fatalf("the notifier exited before it was ready:\n%s", n.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("the notifier is not ready:\n%s", n.logs())
	}
	return n
}

// TestBinariesOverTLSAndPassword: the built watcher and notifier reach an
// external NATS server with the same connection settings (package
// natsconn): over mutual TLS (a private CA, client certificates) and with
// a user and password, each given once by flags and once by the
// environment (and a *_FILE). The watcher publishes, the notifier consumes
// and delivers; wrong credentials make both say the server refused them.
// Before natsconn, the notifier had no flags for TLS and neither program
// read a password from a file.
func TestBinariesOverTLSAndPassword(t *testing.T) {
	watcherBin, notifierBin := binaries(t)
	pki := newPKI(t)
	secrets := t.TempDir()
	const user, pass = "svc", "n4ts-pa/ss@word"
	passFile, userFile, wrongFile := filepath.Join(secrets, "pass"), filepath.Join(secrets, "user"), filepath.Join(secrets, "wrong")
	const wrongPass = "wrong-from-a-file"
	for f, v := range map[string]string{passFile: pass + "\n", userFile: user, wrongFile: wrongPass} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		server func(*server.Options)
		scheme string
		// NATS settings of each program; the URL is added.
		watcherEnv, watcherArgs, notifierEnv, notifierArgs []string
		// wrong credentials, for the refusal (nil: not tried)
		wrongWatcherEnv, wrongNotifierEnv []string
	}{
		{
			name: "mutual TLS",
			server: func(o *server.Options) {
				o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, pki.serverTLS(t), 5
			},
			scheme:       "tls",
			watcherEnv:   []string{"PCWATCH_NATS_TLS_CA=" + pki.ca, "PCWATCH_NATS_TLS_CERT=" + pki.clientCert, "PCWATCH_NATS_TLS_KEY=" + pki.clientKey},
			notifierArgs: []string{"--nats-tls-ca", pki.ca, "--nats-tls-cert", pki.clientCert, "--nats-tls-key", pki.clientKey},
		},
		{
			name:             "user and password",
			server:           func(o *server.Options) { o.Username, o.Password = user, pass },
			scheme:           "nats",
			watcherEnv:       []string{"PCWATCH_NATS_USER=" + user, "PCWATCH_NATS_PASSWORD_FILE=" + passFile},
			notifierEnv:      []string{"PCWATCH_NATS_USER_FILE=" + userFile, "PCWATCH_NATS_PASSWORD=" + pass},
			wrongWatcherEnv:  []string{"PCWATCH_NATS_USER=" + user, "PCWATCH_NATS_PASSWORD=wrong-" + pass},
			wrongNotifierEnv: []string{"PCWATCH_NATS_USER=" + user, "PCWATCH_NATS_PASSWORD_FILE=" + wrongFile},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATSServer(t, tc.server)
			url := fmt.Sprintf("%s://127.0.0.1:%d", tc.scheme, ns.Addr().(*net.TCPAddr).Port)
			sim := pcsim.New(pcsim.Options{Seed: 11, Customers: 3, Token: "tok"})
			simSrv := httptest.NewServer(sim)
			defer simSrv.Close()
			dataDir := t.TempDir()
			// The watcher takes its URL from the flag, the notifier from the
			// environment: both sources of the one definition.
			watcherArgs := append([]string{"run", "--once", "--pc-url", simSrv.URL, "--data-dir", dataDir, "--listen", "", "--log-format", "json",
				"--retry-budget", "2s", "--rate", "60000", "--nats-url", url}, tc.watcherArgs...)
			watcherEnv := append([]string{"PCWATCH_PC_TOKEN=tok"}, tc.watcherEnv...)
			watch := func() {
				t.Helper()
				if code, stderr := runProc(t, watcherBin, watcherEnv, watcherArgs...); code != 0 {
					t.Fatalf("watcher --once: exit %d\n%s", code, stderr)
				}
			}
			watch() // the baseline; creates PCWATCH_EVENTS

			rc := &receiver{t: t, ch: make(chan delivery, 100)}
			hook := httptest.NewServer(rc)
			defer hook.Close()
			cfg := filepath.Join(t.TempDir(), "notifier.yaml")
			if err := os.WriteFile(cfg, []byte(`
channels:
  hook: {kind: webhook, url_env: HOOK_URL, secret_env: HOOK_SECRET, timeout: 5s}
routes:
  - match: {types: ["subscription.quantity-changed"]}
    channels: [hook]
`), 0o600); err != nil {
				t.Fatal(err)
			}
			notifierEnv := append([]string{"PCWATCH_NATS_URL=" + url, "HOOK_URL=" + hook.URL + "/pcwatch", "HOOK_SECRET=" + secret}, tc.notifierEnv...)
			notifierArgs := append([]string{"run", "--config", cfg, "--listen", "127.0.0.1:0", "--log-format", "json"}, tc.notifierArgs...)
			n := startNotifier(t, notifierBin, notifierEnv, notifierArgs...)

			var cust, sub string
			for _, c := range sim.State().Customers {
				for _, s := range c.Subscriptions {
					if s.Status == "active" && !s.IsTrial && sub == "" {
						cust, sub = c.ID, s.ID
					}
				}
			}
			if sub == "" {
				t.Fatal("no active subscription")
			}
			if err := sim.IncreaseSeats(cust, sub, 2); err != nil {
				t.Fatal(err)
			}
			watch() // publishes the change
			select {
			case d := <-rc.ch:
				ev, err := events.Decode(d.body)
				if err != nil {
					t.Fatal(err)
				}
				data, err := ev.DecodeData()
				if err != nil {
					t.Fatal(err)
				}
				if ev.Type != events.SubscriptionQuantityChanged || data.SubscriptionID != sub || data.Delta == nil || *data.Delta != 2 {
					t.Errorf("delivered %s for %s, delta %v; want the quantity change of %s by 2", ev.Type, data.SubscriptionID, data.Delta, sub)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("the webhook received nothing; notifier logs:\n%s", n.logs())
			}

			if tc.wrongWatcherEnv == nil {
				return
			}
			code, stderr := runProc(t, watcherBin, append([]string{"PCWATCH_PC_TOKEN=tok"}, tc.wrongWatcherEnv...), watcherArgs...)
			if code != 2 || !strings.Contains(stderr, "refused the credentials") || !strings.Contains(stderr, `auth user "svc" and password`) {
				t.Errorf("watcher with a wrong password: exit %d, want 2 and the refusal; stderr:\n%s", code, stderr)
			}
			checkNoSecret(t, "the watcher's stderr", stderr, "wrong-"+pass)
			code, stderr = runProc(t, notifierBin, append([]string{"PCWATCH_NATS_URL=" + url, "HOOK_URL=" + hook.URL, "HOOK_SECRET=" + secret}, tc.wrongNotifierEnv...), notifierArgs...)
			if code != 1 || !strings.Contains(stderr, "refused the credentials") || !strings.Contains(stderr, `auth user "svc" and password`) || !strings.Contains(stderr, "PCWATCH_NATS_PASSWORD") {
				t.Errorf("notifier with a wrong password: exit %d, want 1 and the refusal; stderr:\n%s", code, stderr)
			}
			checkNoSecret(t, "the notifier's stderr", stderr, wrongPass)
		})
	}
}

func checkNoSecret(t *testing.T, what, text, s string) {
	t.Helper()
	for _, enc := range redact.Encodings(s) {
		if strings.Contains(text, enc) {
			t.Errorf("%s holds the secret %q (as %q)", what, s, enc)
		}
	}
}
