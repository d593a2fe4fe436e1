package watcher

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile feeds arbitrary YAML to the config file loader: it must
// either load or return a ConfigError, never panic.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"interval: 5m\nconcurrency: 3\n",
		"resources: [subscriptions, products]\ntarget_views: [Azure]\n",
		"cancellation_thresholds: 72h,24h\nmass_removal_share: 0.3\n",
		"- a\n- b\n",
		"interval: {a: 1}\n",
		"pc_url: https://api.partnercenter.microsoft.com\ncloud: china\n",
		"&a [*a]",
		"rate: 1\nrate: 2\n",
		"rate: 1\n---\nrate: 2\n",
		"rate: NaN\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Skip()
		}
		_, err := Load("run", []string{"--config", p}, func(string) string { return "" })
		if err != nil {
			if _, ok := err.(*ConfigError); !ok {
				t.Fatalf("Load returned %T %v, want a *ConfigError", err, err)
			}
		}
	})
}
