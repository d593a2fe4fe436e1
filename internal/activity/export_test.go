package activity

import "github.com/pcwatch/pcwatch/internal/state"

// WrapCommit replaces t's commit (the state file's Commit) with
// wrap(the current one): the tests' failing commit.
func WrapCommit(t *Tail, wrap func(commit func(*state.Change) error) func(*state.Change) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.commit = wrap(t.commit)
}
