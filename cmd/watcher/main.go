// Command watcher polls Partner Center, diffs snapshots, computes NCE
// deadlines and publishes CloudEvents onto NATS JetStream.
//
//	watcher run [flags]        the service (see -h for every flag and PCWATCH_* variable)
//	watcher demo               the zero-config tour: simulator + embedded NATS + live events
//	watcher deadlines          upcoming deadlines from the state file, soonest first
//	watcher state              what the state file knows
//
// Exit status: 0 success; 1 runtime failure (with --once: some customers
// could not be polled); 2 bad configuration or a start-up problem
// (Partner Center unreachable, credentials refused, state file locked).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/demo"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal exits at once. The state file stays consistent:
		// every commit is one bbolt transaction.
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "watcher: second signal, exiting now")
		os.Exit(130)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: watcher <command> [flags]

commands:
  run         poll Partner Center and publish events (watcher run -h lists every flag)
  demo        the zero-config tour: simulator, embedded NATS, live events
  deadlines   upcoming deadlines from the state file, soonest first
  state       what the state file knows (customers, last polls, outbox)
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, getenv, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "deadlines":
		return cmdDeadlines(rest, getenv, stdout, stderr)
	case "state":
		return cmdState(rest, getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "watcher: unknown command %q\n%s", cmd, usage)
	return 2
}

func exitCode(err error, stderr io.Writer) int {
	var ce *watcher.ConfigError
	var se *watcher.StartupError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce), errors.As(err, &se):
		fmt.Fprintf(stderr, "watcher: %v\n", err)
		return 2
	case errors.Is(err, watcher.ErrPartial):
		fmt.Fprintf(stderr, "watcher: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "watcher: %v\n", err)
	return 1
}

func cmdRun(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := watcher.Load("run", args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "usage: watcher run [flags]\n\nflags (each also a PCWATCH_* variable and a config-file key; flags win over env, env over file):\n  --config\tYAML config file (env PCWATCH_CONFIG)\n%s", watcher.Usage())
		return 0
	}
	if err != nil {
		return exitCode(err, stderr)
	}
	return exitCode(watcher.Run(ctx, watcher.Options{Config: cfg, Getenv: getenv, Stderr: stderr,
		Logger: watcher.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)}), stderr)
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watcher demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demo.Options
	fs.IntVar(&o.Customers, "customers", 40, "simulated customers")
	fs.Float64Var(&o.Speed, "speed", 3600, "simulated seconds per wall second")
	fs.DurationVar(&o.Interval, "interval", 3*time.Second, "poll interval")
	fs.StringVar(&o.DataDir, "data-dir", "", "keep state here (default: a temporary directory removed at exit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.Out = stdout
	return exitCode(demo.Run(ctx, o), stderr)
}

// inspectFlags are shared by the read-only commands.
func inspectFlags(name string, args []string, getenv func(string) string, stderr io.Writer) (dataDir, listen, format string, ok bool) {
	fs := flag.NewFlagSet("watcher "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("PCWATCH_DATA_DIR")
	if def == "" {
		def = "./data"
	}
	defListen := getenv("PCWATCH_LISTEN")
	if defListen == "" {
		defListen = "127.0.0.1:9464"
	}
	fs.StringVar(&dataDir, "data-dir", def, "data directory of the watcher (env PCWATCH_DATA_DIR)")
	fs.StringVar(&listen, "listen", defListen, "operations address of a running watcher, asked when the state file is locked (env PCWATCH_LISTEN)")
	fs.StringVar(&format, "format", "table", "table or json")
	if err := fs.Parse(args); err != nil {
		return "", "", "", false
	}
	if format != "table" && format != "json" {
		fmt.Fprintf(stderr, "watcher %s: --format %q: want table or json\n", name, format)
		return "", "", "", false
	}
	return dataDir, listen, format, true
}

// withState opens the state file read-only, or, when a running watcher
// holds it, fetches the same view from that watcher's operations server,
// with the operations token (PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE)
// when one is set.
func withState(name, dataDir, listen, apiPath string, local func(*state.Store) (any, error), into any, getenv func(string) string, stderr io.Writer) bool {
	st, err := state.Open(filepath.Join(dataDir, state.FileName), state.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	if err == nil {
		defer st.Close()
		v, err := local(st)
		var damaged *state.DamagedError
		if errors.As(err, &damaged) {
			fmt.Fprintf(stderr, "watcher %s: warning: %v\n", name, err) // what could be read follows
		} else if err != nil {
			fmt.Fprintf(stderr, "watcher %s: %v\n", name, err)
			return false
		}
		b, _ := json.Marshal(v)
		return json.Unmarshal(b, into) == nil
	}
	if !errors.Is(err, state.ErrLocked) {
		fmt.Fprintf(stderr, "watcher %s: %v\n", name, err)
		return false
	}
	token, terr := opsguard.TokenFromEnv(getenv)
	if terr != nil {
		fmt.Fprintf(stderr, "watcher %s: %v; %v\n", name, err, terr)
		return false
	}
	req, herr := http.NewRequest("GET", "http://"+listen+apiPath, nil)
	if herr != nil {
		fmt.Fprintf(stderr, "watcher %s: %v; and --listen %q is not an address: %v\n", name, err, listen, herr)
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, herr := hc.Do(req)
	if herr != nil {
		fmt.Fprintf(stderr, "watcher %s: %v; and the running watcher's operations server at %s did not answer (%v)\n", name, err, listen, herr)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		fmt.Fprintf(stderr, "watcher %s: %s%s answered %s: set %s or %s to the running watcher's operations token\n", name, listen, apiPath, resp.Status, opsguard.TokenEnv, opsguard.TokenFileEnv)
		return false
	}
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "watcher %s: %s%s answered %s\n", name, listen, apiPath, resp.Status)
		return false
	}
	if w := resp.Header.Get("Warning"); w != "" {
		fmt.Fprintf(stderr, "watcher %s: warning from the running watcher: %s\n", name, w)
	}
	return json.NewDecoder(resp.Body).Decode(into) == nil
}

func cmdDeadlines(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	dataDir, listen, format, ok := inspectFlags("deadlines", args, getenv, stderr)
	if !ok {
		return 2
	}
	clk, err := clock.Parse(getenv("PCWATCH_CLOCK"))
	if err != nil {
		fmt.Fprintf(stderr, "watcher deadlines: PCWATCH_CLOCK: %v\n", err)
		return 2
	}
	var ds []watcher.UpcomingDeadline
	if !withState("deadlines", dataDir, listen, "/api/deadlines", func(st *state.Store) (any, error) {
		return watcher.Upcoming(st, deadline.DefaultConfig(), clk.Now())
	}, &ds, getenv, stderr) {
		return 1
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(ds)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOSES AT (UTC)\tIN\tKIND\tCUSTOMER\tSUBSCRIPTION\tOFFER\tNOTE")
	for _, d := range ds {
		note := ""
		if d.Quantity > 0 {
			note = fmt.Sprintf("%d seats", d.Quantity)
		}
		if d.AutoRenew != nil {
			note = map[bool]string{true: "will renew", false: "will expire"}[*d.AutoRenew]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ClosesAt.UTC().Format("2006-01-02 15:04"), d.In, d.Rule,
			firstNonEmpty(d.CustomerName, d.CustomerID), d.SubscriptionID, d.Offer, note)
	}
	tw.Flush()
	if len(ds) == 0 {
		fmt.Fprintln(stdout, "(no upcoming deadlines)")
	}
	return 0
}

func cmdState(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	dataDir, listen, format, ok := inspectFlags("state", args, getenv, stderr)
	if !ok {
		return 2
	}
	var s watcher.StateSummary
	if !withState("state", dataDir, listen, "/api/state", func(st *state.Store) (any, error) { return watcher.Inspect(st) }, &s, getenv, stderr) {
		return 1
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
		return 0
	}
	var counts []string
	for _, k := range resource.All() {
		counts = append(counts, fmt.Sprintf("%s: %d", k.Plural(), s.Records[k]))
	}
	fmt.Fprintf(stdout, "cycles run: %d\n%s\npending removals: %d   deadline ledger: %d   outbox depth: %d\n",
		s.Cycle, strings.Join(counts, "   "), s.Pending, s.LedgerEntries, s.Outbox)
	fmt.Fprintf(stdout, "events too large for NATS: %d published shrunk (data.truncated), %d replaced by ops.event-dropped\n\n",
		s.EventsTruncated, s.EventsDropped)
	if s.DamagedCount > 0 {
		fmt.Fprintf(stdout, "DAMAGED RECORDS: %d (skipped; stop the watcher and restore a backup, or move the state file aside to rebuild from a fresh baseline):\n", s.DamagedCount)
		for _, r := range s.DamagedRecords {
			fmt.Fprintf(stdout, "  %s\n", r)
		}
		fmt.Fprintln(stdout)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tNAME\tSUBSCRIPTIONS\tLAST SUCCESSFUL POLL\tFAILING")
	for _, c := range s.PerCustomer {
		last := "never"
		if c.LastSuccess != nil {
			last = c.LastSuccess.UTC().Format("2006-01-02 15:04:05")
		}
		failing := ""
		if c.ConsecutiveFails > 0 {
			failing = fmt.Sprintf("%d in a row: %s", c.ConsecutiveFails, strings.TrimSpace(c.LastError))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.ID, c.Name, c.Subscriptions, last, failing)
	}
	tw.Flush()
	return 0
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
