package chaos

import (
	"strings"
	"testing"
)

// TestWatcherBuild: what -chaos.faults and -chaos.watcher-tags make of
// the watcher's build, and the flags it refuses (a chaos run with a bug
// silently not armed would pass and prove nothing).
func TestWatcherBuild(t *testing.T) {
	tests := []struct {
		tags, faults         string
		wantTags, wantFaults string
		wantErr              string
	}{
		{"", "", "", "", ""},
		{"netgo", "", "netgo", "", ""},
		{"", "relay.delete-before-ack", "pcwatch_faults", "relay.delete-before-ack", ""},
		{"netgo", "relay.delete-before-ack,poller.failed-listing-as-empty", "netgo,pcwatch_faults",
			"poller.failed-listing-as-empty,relay.delete-before-ack", ""},
		{"chaosbug_ack", "", "", "", "use -chaos.faults=relay.delete-before-ack"},
		{"chaosbug_removals", "", "", "", "use -chaos.faults=poller.failed-listing-as-empty"},
		{"pcwatch_faults", "", "", "", "name the faults to arm with -chaos.faults"},
		{"", "relay.ack-late", "", "", "is not a fault point"},
		{"", "state.commit.after", "", "", "is a crash point"},
	}
	saveTags, saveFaults := *flagTags, *flagFaults
	t.Cleanup(func() { *flagTags, *flagFaults = saveTags, saveFaults })
	for _, tt := range tests {
		*flagTags, *flagFaults = tt.tags, tt.faults
		tags, faults, err := watcherBuild()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("tags %q faults %q: %v, want an error saying %q", tt.tags, tt.faults, err, tt.wantErr)
			}
			continue
		}
		if err != nil || tags != tt.wantTags || faults != tt.wantFaults {
			t.Errorf("tags %q faults %q: (%q, %q, %v), want (%q, %q)", tt.tags, tt.faults, tags, faults, err, tt.wantTags, tt.wantFaults)
		}
	}
}
