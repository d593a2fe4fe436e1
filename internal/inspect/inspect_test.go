package inspect

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// lockedDataDir is a data directory whose state file another "watcher"
// (this test) holds, so Source asks the operations server.
func lockedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return dir
}

func TestAskTheRunningWatcher(t *testing.T) {
	dir := lockedDataDir(t)
	const token = "ops-T0KEN"
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		warning string
		env     map[string]string
		listen  string // "" uses the server; "-" empties --listen
		want    string // in the error; "" for success
		locked  bool   // the error says the state file is locked (nothing was asked)
		warned  string
	}{
		{name: "answer with a warning", status: 200, body: `[{"customerId":"c1","kind":"renewal","closesAt":"2026-08-01T00:00:00Z","inSeconds":60}]`,
			warning: `299 pcwatch "1 damaged record"`, env: map[string]string{"PCWATCH_OPS_TOKEN": token}, warned: "from the running watcher: 299 pcwatch"},
		{name: "no token", status: 401, body: "missing bearer token", want: "answered 401 Unauthorized: set PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE"},
		{name: "server error", status: 500, body: "boom", env: map[string]string{"PCWATCH_OPS_TOKEN": token}, want: "/api/deadlines answered 500"},
		{name: "not JSON", status: 200, body: "<html>", env: map[string]string{"PCWATCH_OPS_TOKEN": token}, want: "the answer is not the view"},
		{name: "listen empty", listen: "-", want: "--listen is empty", locked: true},
		{name: "nobody listens", listen: "127.0.0.1:1", want: "did not answer", locked: true},
		{name: "unreadable token file", env: map[string]string{"PCWATCH_OPS_TOKEN_FILE": "/nonexistent/token"}, want: "PCWATCH_OPS_TOKEN_FILE", locked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/deadlines" {
					http.NotFound(w, r)
					return
				}
				if r.Header.Get("Authorization") != "Bearer "+token {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				if tc.warning != "" {
					w.Header().Set("Warning", tc.warning)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			cfg := watcher.Default()
			cfg.DataDir, cfg.Listen = dir, strings.TrimPrefix(srv.URL, "http://")
			switch tc.listen {
			case "-":
				cfg.Listen = ""
			case "":
			default:
				cfg.Listen = tc.listen
			}
			var warned []string
			src := Source{Config: cfg, Getenv: func(k string) string { return tc.env[k] }, Warn: func(m string) { warned = append(warned, m) },
				Clock: clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))}
			ds, err := src.Deadlines(context.Background())
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				if errors.Is(err, state.ErrLocked) != tc.locked {
					t.Errorf("error %v says the state file is locked: %v, want %v", err, !tc.locked, tc.locked)
				}
				if code := cli.ExitCode(err); code != cli.StatusFailure {
					t.Errorf("exit status %d, want 1 (a runtime failure)", code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].CustomerID != "c1" || ds[0].InSeconds != 60 {
				t.Errorf("deadlines %+v", ds)
			}
			if len(warned) != 1 || !strings.Contains(warned[0], tc.warned) {
				t.Errorf("warnings %q, want one with %q", warned, tc.warned)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
		code int
	}{{"table", Table, 0}, {"json", JSON, 0}, {"yaml", "", cli.StatusUsage}, {"", "", cli.StatusUsage}} {
		f, err := ParseFormat(tc.in)
		if f != tc.want || cli.ExitCode(err) != tc.code {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q and exit status %d", tc.in, f, err, tc.want, tc.code)
		}
	}
}

// FuzzAnswer feeds arbitrary answers of a running watcher to the decoder
// and the renderers: an answer either decodes into a view that renders, or
// is an error; never a panic.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`[{"customerId":"c1","customerName":"Contoso","subscriptionId":"s1","offer":"E3","kind":"renewal","closesAt":"2026-08-01T00:00:00Z","in":"31d 0h","inSeconds":2678400,"autoRenewEnabled":true}]`,
		`[{"kind":"refund","closesAt":"2026-07-02T00:00:00Z","quantity":5}]`,
		`null`, `[]`, `{}`, `[null]`, `[{"closesAt":"not a time"}]`,
		`{"cycle":3,"customers":2,"subscriptions":5,"pendingRemovals":0,"deadlineLedgerEntries":1,"outboxDepth":0,"perCustomer":[{"id":"c1","name":"Contoso","subscriptions":5}],"eventsTruncated":0,"eventsDropped":0}`,
		`{"cycle":-1}`, `{"perCustomer":[null]}`, `{"damagedRecords":2,"damagedRecordNames":["a","b"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ds []watcher.UpcomingDeadline
		if decodeAnswer(strings.NewReader(string(b)), &ds) == nil {
			for _, fm := range []Format{Table, JSON} {
				if err := WriteDeadlines(new(strings.Builder), ds, fm); err != nil {
					t.Fatalf("WriteDeadlines(%s): %v", fm, err)
				}
			}
		}
		var s watcher.StateSummary
		if decodeAnswer(strings.NewReader(string(b)), &s) == nil {
			for _, fm := range []Format{Table, JSON} {
				if err := WriteState(new(strings.Builder), &s, fm); err != nil {
					t.Fatalf("WriteState(%s): %v", fm, err)
				}
			}
		}
	})
}
