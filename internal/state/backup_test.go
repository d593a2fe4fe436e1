package state

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// TestBackupWhileWriting takes backups while another goroutine commits:
// each commit adds one customer and one outbox event together, so a copy
// that saw half a commit, or parts of two, would hold different numbers
// of them. Every copy must open as a state file (Open checks every page
// and record) with equal counts.
func TestBackupWhileWriting(t *testing.T) {
	s := openTest(t)
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	commit := func(i int) error {
		raw := fmt.Sprintf(`{"id":"c%d","pad":"%s"}`, i, bytes.Repeat([]byte("x"), 512))
		return s.Commit(&Change{
			Puts:   []Put{{resource.Customers, fmt.Sprintf("c%d", i), Record{Hash: HashOf([]byte(raw)), Rev: 1, FirstSeen: now, Updated: now, Raw: []byte(raw)}}},
			Events: []events.Envelope{env(fmt.Sprintf("e%d", i))},
		})
	}
	for i := range 50 {
		if err := commit(i); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		i := 50
		for {
			select {
			case <-stop:
				werr <- nil
				return
			default:
			}
			if err := commit(i); err != nil {
				werr <- err
				return
			}
			i++
		}
	}()
	dir := t.TempDir()
	for n := range 10 {
		dest := filepath.Join(dir, fmt.Sprintf("backup-%d.db", n))
		size, err := WriteBackup(dest, s.Backup)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != size || fi.Mode().Perm() != 0o600 {
			t.Errorf("backup %d: size %d mode %v, Backup said %d bytes", n, fi.Size(), fi.Mode().Perm(), size)
		}
		b, err := Open(dest, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("backup %d does not open: %v", n, err)
		}
		c, err := b.Counts()
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if c.Records[resource.Customers] != c.Outbox || c.Outbox < 50 {
			t.Errorf("backup %d: %d customers but %d outbox events: not one commit's state", n, c.Records[resource.Customers], c.Outbox)
		}
	}
	close(stop)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 10 {
		t.Errorf("backup directory holds %d files, want the 10 copies and no temporary file", len(entries))
	}
}

// TestWriteBackupRefusesBadCopy: a stream that is not a state file (a
// truncated download from a running watcher) leaves nothing at dest.
func TestWriteBackupRefusesBadCopy(t *testing.T) {
	s := openTest(t)
	var full bytes.Buffer
	if _, err := s.Backup(&full); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "copy.db")
	_, err := WriteBackup(dest, func(w io.Writer) (int64, error) {
		n, err := w.Write(full.Bytes()[:full.Len()/2])
		return int64(n), err
	})
	if err == nil {
		t.Fatal("a truncated copy was accepted")
	}
	if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
		t.Errorf("dest exists after a failed backup: %v", serr)
	}
	entries, _ := os.ReadDir(filepath.Dir(dest))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
