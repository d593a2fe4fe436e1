package natsconn

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// The connection settings, one table for both programs: the watcher and
// the notifier register the same flags, read the same environment
// variables, print the same usage text (Usage) and the README documents
// them once (MarkdownReference).
//
// Settings with a flag are paths and addresses: a flag given on the
// command line wins over the environment variable, which wins over the
// program's own default (the base Options). Credentials are secrets and
// have no flag, so they never show in a process listing or a shell
// history: they come from the environment, or from the file named by the
// variable with _FILE appended (Kubernetes secrets, systemd credentials).

// setting is one connection setting.
type setting struct {
	flag  string // flag name; "" for a credential
	env   string
	arg   string // what the value is, for the usage text
	usage string
	field func(*Options) *string
}

var settings = []setting{
	{"nats-url", "PCWATCH_NATS_URL", "URL", "NATS server URL: nats://host:4222, tls://host:4222 (TLS), ws:// or wss://; several, comma-separated, for a cluster",
		func(o *Options) *string { return &o.URL }},
	{"nats-nkey", "PCWATCH_NATS_NKEY", "FILE", "NKey user seed file (the notifier on the watcher's embedded server: <data-dir>/nats-auth/notifier.nk)",
		func(o *Options) *string { return &o.NKeySeedFile }},
	{"nats-creds", "PCWATCH_NATS_CREDS", "FILE", "JWT user credentials file (.creds: a user JWT and its NKey seed)",
		func(o *Options) *string { return &o.CredsFile }},
	{"nats-tls-ca", "PCWATCH_NATS_TLS_CA", "FILE", "PEM CA certificates the server's certificate must chain to (default the system's roots)",
		func(o *Options) *string { return &o.TLSCAFile }},
	{"nats-tls-cert", "PCWATCH_NATS_TLS_CERT", "FILE", "PEM client certificate, for servers that verify clients (with --nats-tls-key)",
		func(o *Options) *string { return &o.TLSCertFile }},
	{"nats-tls-key", "PCWATCH_NATS_TLS_KEY", "FILE", "PEM private key of --nats-tls-cert",
		func(o *Options) *string { return &o.TLSKeyFile }},
}

var credentials = []setting{
	{"", "PCWATCH_NATS_USER", "", "user name, with PCWATCH_NATS_PASSWORD",
		func(o *Options) *string { return &o.User }},
	{"", "PCWATCH_NATS_PASSWORD", "", "password of PCWATCH_NATS_USER",
		func(o *Options) *string { return &o.Password }},
	{"", "PCWATCH_NATS_TOKEN", "", "authentication token",
		func(o *Options) *string { return &o.Token }},
}

// fileSuffix names the variable holding the path of a credential's file.
const fileSuffix = "_FILE"

// maxCredentialFile bounds a credential file read: it holds one value.
const maxCredentialFile = 64 << 10

// ErrBadCredential is a credential that cannot be read from the
// environment: both the variable and its _FILE set, or a file that is
// missing, empty or too large. The error names the variable and the fix.
var ErrBadCredential = errors.New("unusable NATS credential")

// Flags are the connection flags registered on one flag set.
type Flags struct {
	fs   *flag.FlagSet
	vals []*string // parallel to settings
}

// AddFlags registers the connection flags (--nats-url, --nats-nkey,
// --nats-creds, --nats-tls-ca, --nats-tls-cert, --nats-tls-key) on fs.
// Read them after fs.Parse with Options, or Settings.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	for _, s := range settings {
		f.vals = append(f.vals, fs.String(s.flag, "", fmt.Sprintf("%s (env %s)", s.usage, s.env)))
	}
	return f
}

// Settings returns base with every setting that has a flag applied: the
// flag when it was given on the command line (even empty), else its
// environment variable when set, else base's value. base holds the
// program's defaults (and, for the watcher, its config file's values).
// Credentials are left as base has them (see Credentials).
func (f *Flags) Settings(getenv func(string) string, base Options) Options {
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	for i, s := range settings {
		p := s.field(&base)
		switch {
		case given[s.flag]:
			*p = strings.TrimSpace(*f.vals[i])
		case getenv(s.env) != "":
			*p = strings.TrimSpace(getenv(s.env))
		}
	}
	return base
}

// Options is Settings followed by Credentials: the complete options of a
// program whose only sources are its flags and the environment.
func (f *Flags) Options(getenv func(string) string, base Options) (Options, error) {
	return Credentials(getenv, f.Settings(getenv, base))
}

// Credentials returns o with the user, password and token read from
// PCWATCH_NATS_USER, PCWATCH_NATS_PASSWORD and PCWATCH_NATS_TOKEN, or from
// the files named by PCWATCH_NATS_USER_FILE, ..._PASSWORD_FILE and
// ..._TOKEN_FILE (surrounding white space trimmed). A credential the
// environment does not set keeps o's value. Both a variable and its _FILE
// set, or a file that is missing, empty or larger than 64 KiB, is an
// ErrBadCredential naming the variable; the error never holds the value.
func Credentials(getenv func(string) string, o Options) (Options, error) {
	for _, c := range credentials {
		v, err := readCredential(getenv, c.env)
		if err != nil {
			return o, err
		}
		if v != "" {
			*c.field(&o) = v
		}
	}
	return o, nil
}

func readCredential(getenv func(string) string, name string) (string, error) {
	val, path := getenv(name), getenv(name+fileSuffix)
	switch {
	case val != "" && path != "":
		return "", fmt.Errorf("%w: both %s and %s%s are set; keep one", ErrBadCredential, name, name, fileSuffix)
	case val != "":
		return strings.TrimSpace(val), nil
	case path == "":
		return "", nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s%s: %v (fix the path, or unset %s%s)", ErrBadCredential, name, fileSuffix, err, name, fileSuffix)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxCredentialFile+1))
	if err != nil {
		return "", fmt.Errorf("%w: %s%s: %v (fix the file, or unset %s%s)", ErrBadCredential, name, fileSuffix, err, name, fileSuffix)
	}
	if len(b) > maxCredentialFile {
		return "", fmt.Errorf("%w: %s%s: %s is larger than %d KiB: not a credential file?", ErrBadCredential, name, fileSuffix, path, maxCredentialFile>>10)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%w: %s%s: %s is empty", ErrBadCredential, name, fileSuffix, path)
	}
	return v, nil
}

// Set sets the setting whose flag is name (e.g. "nats-url") to v: the
// watcher's config file names settings that way (nats_url). It reports
// false for any other name; credentials have none, so a config file can
// never hold one.
func (o *Options) Set(name, v string) bool {
	for _, s := range settings {
		if s.flag == name {
			*s.field(o) = strings.TrimSpace(v)
			return true
		}
	}
	return false
}

// FlagNames lists the connection settings' flag names, in Usage's order.
func FlagNames() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.flag
	}
	return out
}

// Usage is the connection settings' help text, the same in both programs.
func Usage() string {
	var b strings.Builder
	b.WriteString("NATS connection (flags win over the environment; credentials only from the environment, or <VARIABLE>_FILE naming a file):\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "  --%s %s\t%s\n    \tenv %s\n", s.flag, s.arg, s.usage, s.env)
	}
	for _, c := range credentials {
		fmt.Fprintf(&b, "  %s\t%s\n    \tor %s%s\n", c.env, c.usage, c.env, fileSuffix)
	}
	return b.String()
}

// CredentialsHint names every way to give credentials, for the messages
// that say a server refused them.
func CredentialsHint() string {
	return "--nats-nkey or PCWATCH_NATS_NKEY, --nats-creds or PCWATCH_NATS_CREDS, PCWATCH_NATS_USER and PCWATCH_NATS_PASSWORD, PCWATCH_NATS_TOKEN (credentials also as <VARIABLE>_FILE), or a client certificate: --nats-tls-cert and --nats-tls-key"
}

// MarkdownReference renders the settings as the README's table.
func MarkdownReference() string {
	var b strings.Builder
	b.WriteString("| Flag | Environment | Meaning |\n|---|---|---|\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s |\n", s.flag, s.env, markdown(s.usage))
	}
	for _, c := range credentials {
		fmt.Fprintf(&b, "| | `%s` or `%s%s` | %s |\n", c.env, c.env, fileSuffix, markdown(c.usage))
	}
	return b.String()
}

// markdown quotes the flags, variables, URLs and paths of a usage text as
// code, so that Markdown shows them as written (<data-dir> is no HTML tag).
func markdown(usage string) string {
	words := strings.Fields(usage)
	for i, w := range words {
		core := strings.TrimRight(w, ",;:)")
		if strings.HasPrefix(core, "--") || strings.HasPrefix(core, "PCWATCH_") || strings.Contains(core, "://") || strings.Contains(core, "<") {
			words[i] = "`" + core + "`" + w[len(core):]
		}
	}
	return strings.Join(words, " ")
}
