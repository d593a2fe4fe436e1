package natsembed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Identity file names inside the credentials directory.
const (
	// CredentialsDirName is the credentials directory under the watcher's
	// data directory: <data-dir>/nats-auth.
	CredentialsDirName = "nats-auth"
	// WatcherSeedFile is the watcher's NKey user seed.
	WatcherSeedFile = "watcher.nk"
	// NotifierSeedFile is the notifier's NKey user seed: the file to give
	// the notifier (PCWATCH_NATS_NKEY or --nats-nkey) and tools such as
	// `nats --nkey`.
	NotifierSeedFile = "notifier.nk"
)

// The streams and subjects the permissions name. They mirror
// stream.Name/stream.Subjects and the notifier's dead-letter stream and
// deliveries and claims buckets (notify.DLQStream, notify.DLQSubjectPrefix,
// notify.DeliveriesBucket, notify.ClaimsBucket); a test keeps them equal. natsembed cannot import
// notify: notify's tests start this server.
const (
	eventsStream     = "PCWATCH_EVENTS"
	dlqStream        = "PCWATCH_DLQ"
	dlqSubjects      = "pcwatch.dlq.>"
	deliveriesBucket = "PCWATCH_DELIVERIES"
	deliveriesStream = "KV_" + deliveriesBucket
	claimsBucket     = "PCWATCH_CLAIMS"
	claimsStream     = "KV_" + claimsBucket
	alertsBucket     = "PCWATCH_ALERTS"
	alertsStream     = "KV_" + alertsBucket
	silencesBucket   = "PCWATCH_SILENCES"
	silencesStream   = "KV_" + silencesBucket
	// querySubject is deadlinequery.Subject: the notifier's digests ask
	// the watcher for its open deadlines there.
	querySubject = "pcwatch.query.deadlines"
	// inboxes are where requests are answered (nats.go's default inbox
	// prefix): the watcher may publish there to answer deadline queries;
	// it refuses to answer any other reply subject.
	inboxes = "_INBOX.>"
)

// EventSubjects are the subjects only the watcher identity may publish on.
var EventSubjects = []string{"pcwatch.events.>", "pcwatch.ops.>"}

// DefaultNotifierSubjects are the subjects the notifier identity may
// publish on for its nats channels when Options.NotifierSubjects is empty:
// those of deploy/notifier.demo.yaml and deploy/notifier.example.yaml.
var DefaultNotifierSubjects = []string{"alerts.>", "workflows.>"}

// Errors of the credentials files.
var (
	// ErrLoosePermissions: a credentials file or directory can be read by
	// other users.
	ErrLoosePermissions = errors.New("readable by other users")
	// ErrBadSeed: a credentials file holds no NKey user seed.
	ErrBadSeed = errors.New("not an NKey user seed")
)

// CredentialsError is a credentials file or directory that cannot be used:
// the path, what is wrong, and the fix.
type CredentialsError struct {
	Path string
	Err  error
	Fix  string
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("embedded NATS credentials %s: %v; %s", e.Path, e.Err, e.Fix)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

const regenerate = "or delete it and restart the watcher to generate new credentials (then restart the notifier with the new " + NotifierSeedFile + ")"

// Credentials are the two NKey identities of the embedded server, each a
// seed file of mode 0600 in a directory of mode 0700.
//
// The watcher identity may publish events (pcwatch.events.>,
// pcwatch.ops.>), manage PCWATCH_EVENTS and create the notifier's
// dead-letter stream and deliveries bucket, read PCWATCH_EVENTS, and answer
// requests (publish on _INBOX.>: the deadline queries). The
// notifier identity may consume PCWATCH_EVENTS, write its dead-letter
// stream and deliveries bucket, ask the watcher for its open deadlines
// (publish on pcwatch.query.deadlines), and publish on Options.NotifierSubjects; it
// may not publish events, nor create or reconfigure streams, nor create
// consumers on any other stream than PCWATCH_EVENTS (a stream's republish
// option, or a push consumer's deliver subject, would otherwise let it copy
// messages of its own into the event stream).
type Credentials struct {
	Dir          string // the credentials directory
	WatcherSeed  string // path of the watcher's seed file
	NotifierSeed string // path of the notifier's seed file

	watcherPub, notifierPub string
}

// LoadCredentials reads the two seed files in dir, creating the directory
// (0700) and any missing file (0600) first. Existing files are reused, so a
// restart keeps the credentials; to rotate them, delete a file (or the
// directory) and start again. A file or directory that other users may
// read, or a file that does not hold an NKey user seed, is a
// *CredentialsError naming it and the fix; nothing is overwritten.
//
// Callers hold the data directory's lock (the watcher holds the state
// file's): two processes creating the same missing file at once would
// still not overwrite each other (the file is linked into place only if
// absent), but one of them would then read the other's.
func LoadCredentials(dir string) (*Credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &CredentialsError{Path: dir, Err: err, Fix: "check that the data directory is writable"}
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, &CredentialsError{Path: dir, Err: err, Fix: "check that the data directory is readable"}
	}
	if !st.IsDir() {
		return nil, &CredentialsError{Path: dir, Err: errors.New("not a directory"), Fix: "move it aside"}
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return nil, &CredentialsError{Path: dir, Err: fmt.Errorf("%w (mode %#o)", ErrLoosePermissions, m), Fix: "run chmod 700 " + dir}
	}
	c := &Credentials{Dir: dir, WatcherSeed: filepath.Join(dir, WatcherSeedFile), NotifierSeed: filepath.Join(dir, NotifierSeedFile)}
	if c.watcherPub, err = loadOrCreateSeed(c.WatcherSeed, "watcher"); err != nil {
		return nil, err
	}
	if c.notifierPub, err = loadOrCreateSeed(c.NotifierSeed, "notifier"); err != nil {
		return nil, err
	}
	if c.watcherPub == c.notifierPub {
		return nil, &CredentialsError{Path: c.NotifierSeed, Err: errors.New("the same seed as " + WatcherSeedFile), Fix: "delete " + c.NotifierSeed + " and restart the watcher to generate a new one"}
	}
	return c, nil
}

// loadOrCreateSeed returns the public key of the user seed in path,
// creating the file first if it does not exist.
func loadOrCreateSeed(path, who string) (string, error) {
	pub, err := readSeed(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSeed(path, who); err != nil {
			return "", err
		}
		pub, err = readSeed(path)
	}
	return pub, err
}

func readSeed(path string) (string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", &CredentialsError{Path: path, Err: err, Fix: "make it readable by the watcher's user, " + regenerate}
	}
	if !st.Mode().IsRegular() {
		return "", &CredentialsError{Path: path, Err: errors.New("not a regular file"), Fix: "move it aside, " + regenerate}
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return "", &CredentialsError{Path: path, Err: fmt.Errorf("%w (mode %#o)", ErrLoosePermissions, m), Fix: "run chmod 600 " + path + ", " + regenerate}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &CredentialsError{Path: path, Err: err, Fix: "make it readable by the watcher's user, " + regenerate}
	}
	defer wipe(b)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", &CredentialsError{Path: path, Err: fmt.Errorf("%w (%v)", ErrBadSeed, err), Fix: regenerate}
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", &CredentialsError{Path: path, Err: fmt.Errorf("%w (an NKey seed, but not of a user)", ErrBadSeed), Fix: regenerate}
	}
	return pub, nil
}

// createSeed writes a new user seed to path: into a temporary file of mode
// 0600 that is synced and then linked into place only if path is still
// absent, so an existing file is never replaced.
func createSeed(path, who string) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return &CredentialsError{Path: path, Err: err, Fix: "check the system's random number source"}
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return &CredentialsError{Path: path, Err: err, Fix: "check the system's random number source"}
	}
	defer wipe(seed)
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return &CredentialsError{Path: path, Err: err, Fix: "check that " + dir + " is writable"}
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	content := "# pcwatch embedded NATS server: the " + who + "'s NKey user seed. Keep it secret.\n" + string(seed) + "\n"
	_, werr := f.WriteString(content)
	if werr == nil {
		werr = f.Chmod(0o600)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return &CredentialsError{Path: path, Err: werr, Fix: "check that " + dir + " is writable and has free space"}
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return &CredentialsError{Path: path, Err: err, Fix: "check that " + dir + " is writable"}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// CheckNotifierSubjects refuses subjects that would give the notifier
// identity more than its nats channels need: wildcards in the first token,
// and pcwatch's, JetStream's and the inboxes' subject spaces.
func CheckNotifierSubjects(subjects []string) error {
	for _, s := range subjects {
		first, _, _ := strings.Cut(s, ".")
		switch {
		case !server.IsValidSubject(s):
			return fmt.Errorf("embedded NATS: notifier subject %q is not a NATS subject (e.g. alerts.>)", s)
		case first == "*" || first == ">":
			return fmt.Errorf("embedded NATS: notifier subject %q starts with a wildcard: it would include pcwatch's own and JetStream's subjects; name a prefix, e.g. alerts.>", s)
		case strings.HasPrefix(first, "$") || first == "_INBOX" || first == "pcwatch":
			return fmt.Errorf("embedded NATS: notifier subject %q is reserved (pcwatch.>, $JS, $KV, $SYS and _INBOX are not for nats channels)", s)
		}
	}
	return nil
}

// users returns the server's two NKey users and their permissions.
func (c *Credentials) users(notifierSubjects []string) []*server.NkeyUser {
	w, n := Permissions(notifierSubjects)
	return []*server.NkeyUser{{Nkey: c.watcherPub, Permissions: w}, {Nkey: c.notifierPub, Permissions: n}}
}

// Permissions are the watcher's and the notifier's permissions on the
// embedded server (the README's Security table), for a server of one's
// own too: deploy/nats/nats.conf grants the same (TestNATSConfMatchesEmbedded).
func Permissions(notifierSubjects []string) (watcher, notifier *server.Permissions) {
	api := func(subjects ...string) []string {
		out := make([]string, len(subjects))
		for i, s := range subjects {
			out[i] = "$JS.API." + s
		}
		return out
	}
	// Reading PCWATCH_EVENTS through pull consumers and direct gets.
	readEvents := api(
		"STREAM.MSG.GET."+eventsStream, "DIRECT.GET."+eventsStream, "DIRECT.GET."+eventsStream+".>",
		"CONSUMER.CREATE."+eventsStream, "CONSUMER.CREATE."+eventsStream+".>", "CONSUMER.DURABLE.CREATE."+eventsStream+".>",
		"CONSUMER.INFO."+eventsStream+".>", "CONSUMER.MSG.NEXT."+eventsStream+".>", "CONSUMER.DELETE."+eventsStream+".>",
	)
	watcherPub := append(append([]string{}, EventSubjects...), api("INFO")...)
	for _, s := range []string{eventsStream, dlqStream, deliveriesStream, claimsStream, alertsStream, silencesStream} {
		watcherPub = append(watcherPub, api("STREAM.INFO."+s, "STREAM.CREATE."+s, "STREAM.UPDATE."+s)...)
	}
	watcherPub = append(watcherPub, readEvents...)
	watcherPub = append(watcherPub, "$JS.ACK."+eventsStream+".>", inboxes)

	notifierPub := []string{dlqSubjects, querySubject, "$JS.ACK." + eventsStream + ".>"}
	notifierPub = append(notifierPub, api("INFO", "STREAM.INFO."+eventsStream, "STREAM.INFO."+dlqStream,
		"STREAM.MSG.GET."+dlqStream, "STREAM.MSG.DELETE."+dlqStream)...)
	for _, b := range []struct{ bucket, stream string }{
		{deliveriesBucket, deliveriesStream}, {claimsBucket, claimsStream}, {alertsBucket, alertsStream}, {silencesBucket, silencesStream},
	} {
		// Writes, gets and walks of the bucket, without consumers.
		notifierPub = append(notifierPub, "$KV."+b.bucket+".>")
		notifierPub = append(notifierPub, api("STREAM.INFO."+b.stream, "STREAM.MSG.GET."+b.stream, "DIRECT.GET."+b.stream, "DIRECT.GET."+b.stream+".>")...)
	}
	notifierPub = append(notifierPub, readEvents...)
	notifierPub = append(notifierPub, notifierSubjects...)
	return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: watcherPub},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}, &server.Permissions{
			// The deny list repeats what the allow list already leaves out:
			// the events must never become publishable by a later edit.
			Publish:   &server.SubjectPermission{Allow: notifierPub, Deny: EventSubjects},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.>"}},
		}
}
