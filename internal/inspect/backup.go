package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// BackupResult says what `watcher backup` wrote.
type BackupResult struct {
	Path  string // the copy
	Bytes int64
	// From is where the copy came from: the state file's path (no
	// watcher running), or the running watcher's /api/backup.
	From      string
	Customers int
	Outbox    int
}

// Backup writes a consistent copy of the state file at dest (a file, or
// an existing directory that gets pcwatch-<UTC time>.db). With no watcher
// running it opens the file read-only and copies it in one read
// transaction; while a watcher holds the file's lock it streams the
// running watcher's /api/backup (the same copy, taken by that process)
// from --listen with the operations token. Either way the copy is written
// to a temporary file, synced, checked by opening it as a watcher would
// (every page and record), and only then renamed to dest.
func (s Source) Backup(ctx context.Context, dest string, now time.Time) (BackupResult, error) {
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		dest = filepath.Join(dest, "pcwatch-"+now.UTC().Format("20060102T150405Z")+".db")
	}
	src := filepath.Join(s.Config.DataDir, state.FileName)
	if same(src, dest) {
		return BackupResult{}, fmt.Errorf("backup: %s is the state file itself; name another file", dest)
	}
	res := BackupResult{Path: dest}
	st, err := state.Open(src, state.Options{ReadOnly: true, LockTimeout: lockWait})
	switch {
	case err == nil:
		res.From = src
		res.Bytes, err = state.WriteBackup(dest, st.Backup)
		st.Close()
	case errors.Is(err, state.ErrLocked):
		hc := s.HTTPClient
		if hc == nil {
			// No overall timeout: a large file takes what it takes.
			hc = &http.Client{}
		}
		var resp *http.Response
		if resp, err = s.get(ctx, hc, err, "/api/backup"); err != nil {
			return res, err
		}
		defer resp.Body.Close()
		res.From = "http://" + s.Config.Listen + "/api/backup"
		res.Bytes, err = state.WriteBackup(dest, func(w io.Writer) (int64, error) { return io.Copy(w, resp.Body) })
	}
	if err != nil {
		return res, err
	}
	cp, err := state.Open(dest, state.Options{ReadOnly: true})
	if err != nil {
		return res, err
	}
	defer cp.Close()
	c, err := cp.Counts()
	res.Customers, res.Outbox = c.Records[resource.Customers], c.Outbox
	return res, err
}

// same says whether a and b name the same file.
func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(fa, fb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}
