package state

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole file to w: bbolt's
// Tx.WriteTo inside one read transaction, so it sees one commit and never
// a commit half written, while writers go on (bbolt readers do not block
// writers). It returns the bytes written. The copy is a complete state
// file: restore it by putting it in place of FileName while no watcher
// runs.
func (s *Store) Backup(w io.Writer) (n int64, err error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.faultGuard(&err)
	err = s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// WriteBackup stores a copy from fill (Backup, or a running watcher's
// stream of it) at dest without ever leaving a partial file there: it
// writes dest's directory's temporary file (mode 0600), syncs it, checks
// the copy by opening it as a state file (every page and record, as a
// watcher's start does), and renames it over dest. A copy that does not
// check is removed and its error returned.
func WriteBackup(dest string, fill func(io.Writer) (int64, error)) (int64, error) {
	dir := filepath.Dir(dest)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".*.tmp")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	n, err := fill(f)
	if err != nil {
		return n, fmt.Errorf("backup: writing %s: %w", dest, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	chk, err := Open(tmp, Options{ReadOnly: true})
	if err != nil {
		return n, fmt.Errorf("backup: the copy does not check (nothing written to %s): %w", dest, err)
	}
	chk.Close()
	if err := os.Rename(tmp, dest); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}
