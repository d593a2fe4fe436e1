//go:build !unix

package state

import (
	"os"
	"time"
)

// lockFile leaves the locking to bbolt where file locks do not stack on
// one handle (Windows): Open then checks the file before holding the lock,
// and a concurrent writer shows as ErrLocked when bbolt times out.
func lockFile(*os.File, bool, time.Duration) error { return nil }
