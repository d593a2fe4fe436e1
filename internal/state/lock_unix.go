//go:build unix

package state

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes the file's advisory lock (exclusive for writing, shared
// for reading) as bbolt would, retrying until timeout, so that Open checks
// the file while nobody writes it. bbolt, handed the same descriptor, then
// takes the same lock again at once (flock locks belong to the open file).
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return errLockTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
