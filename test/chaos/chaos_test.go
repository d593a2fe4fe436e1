// The chaos suite: see doc.go for what it runs and what it checks.

package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/fault"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/oracle"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/stream"
)

var (
	flagProfile = flag.String("chaos.profile", "short", "chaos profile: short (CI) or long")
	flagSeed    = flag.Uint64("chaos.seed", 0, "seed of the schedule and the simulator (0: from the clock, printed)")
	flagKeep    = flag.Bool("chaos.keep", false, "keep the run directory (logs, state, NATS store) and print its path")
	flagTags    = flag.String("chaos.watcher-tags", "", "extra build tags of the watcher")
	flagFaults  = flag.String("chaos.faults", "", "deliberate bugs to arm in the watcher, comma-separated ("+strings.Join(fault.Bugs(), ", ")+
		"): it is built with -tags "+fault.Tag+" and the run must fail")
)

// watcherBuild returns the watcher's build tags and the fault plan armed
// in its environment ("" for none) from -chaos.watcher-tags and
// -chaos.faults.
func watcherBuild() (tags, faults string, err error) {
	var list []string
	for _, tag := range strings.Split(*flagTags, ",") {
		tag = strings.TrimSpace(tag)
		switch tag {
		case "":
			continue
		case "chaosbug_removals", "chaosbug_ack":
			bug := map[string]string{"chaosbug_removals": fault.PollerFailedListingAsEmpty, "chaosbug_ack": fault.RelayDeleteBeforeAck}[tag]
			return "", "", fmt.Errorf("-chaos.watcher-tags=%s: the deliberate bugs are fault points now; use -chaos.faults=%s", tag, bug)
		case fault.Tag:
			return "", "", fmt.Errorf("-chaos.watcher-tags=%s: name the faults to arm with -chaos.faults (%s), which adds the tag", tag, strings.Join(fault.Bugs(), ", "))
		}
		list = append(list, tag)
	}
	plan, err := fault.Parse(*flagFaults)
	if err != nil {
		return "", "", fmt.Errorf("-chaos.faults: %w", err)
	}
	for _, name := range plan.Names() {
		if !slices.Contains(fault.Bugs(), name) {
			return "", "", fmt.Errorf("-chaos.faults: %s is a crash point; the chaos suite arms deliberate bugs (%s)", name, strings.Join(fault.Bugs(), ", "))
		}
	}
	if names := plan.Names(); len(names) > 0 {
		list = append(list, fault.Tag)
		faults = strings.Join(names, ",")
	}
	return strings.Join(list, ","), faults, nil
}

const (
	speed       = 3600 // business seconds per wall second
	token       = "chaos-token"
	calendar    = "2026-03-02T08:00:00Z"
	hookChannel = "hook"
	brokenChan  = "broken"
	// groupChan receives every event grouped by customer.
	groupChan = "grouped"
	// minUpWall is how long a watcher must have run inside a threshold's
	// span for the threshold to be required (deadline-interval is 1s).
	minUpWall = 3 * time.Second
	// killSlack: a webhook the receiver handled up to this long after a
	// notifier kill may have been sent before it.
	killSlack = time.Second
)

// brokenTypes are routed to the channel whose receiver always refuses.
var brokenTypes = []string{"subscription.attention-needed", "managed-service.removed"}

// warningTypes are the deadline warnings: reminded on the hook channel,
// and muted for a while by a runtime silence (held, then sent).
var warningTypes = []string{"subscription.cancellation-window-closing", "subscription.refund-window-closing",
	"subscription.renewal-approaching", "subscription.trial-ending"}

var (
	cancellationThresholds = []time.Duration{72 * time.Hour, 24 * time.Hour, 4 * time.Hour}
	trialThresholds        = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour}
)

type harness struct {
	t      *testing.T
	bg     sync.WaitGroup // background steps (silenceWarnings)
	prof   profile
	seed   uint64
	rng    *rand.Rand
	dir    string
	bin    map[string]string
	clk    clock.Accelerated
	secret string
	// watcherTags are the watcher's build tags; faults the deliberate bugs
	// armed in it (PCWATCH_FAULTS), "" for none (-chaos.faults).
	watcherTags, faults string

	natsPort int
	natsURL  string
	nats     *component
	sim      *component
	notifier *component
	watcher  *component
	adm      admin
	rcv      *receiver
	initial  pcsim.State

	mu       sync.Mutex
	timeline []string
	want     map[*component]bool
	counts   map[string]int
	outages  []time.Duration // NATS down time, per restart
	nKills   []time.Time     // notifier kills (wall)
	problems []string
	// explicit mutations
	customers []string
	purchases []string // customer/subscription
	cancelled map[string]bool
	failing   []string // customers whose subscription listing was made to fail
	hostile   []*hostileWin
	freezeAt  time.Time
	started   time.Time
}

func (h *harness) logf(format string, a ...any) {
	line := fmt.Sprintf("%7.1fs ", time.Since(h.started).Seconds()) + fmt.Sprintf(format, a...)
	h.mu.Lock()
	h.timeline = append(h.timeline, line)
	h.mu.Unlock()
	if testing.Verbose() {
		h.t.Log(line)
	}
}

func (h *harness) count(k string, n int) {
	h.mu.Lock()
	h.counts[k] += n
	h.mu.Unlock()
}

func (h *harness) problem(format string, a ...any) {
	h.mu.Lock()
	h.problems = append(h.problems, fmt.Sprintf(format, a...))
	h.mu.Unlock()
}

// biz converts a wall instant to the shared business calendar.
func (h *harness) biz(w time.Time) time.Time {
	return h.clk.Start.Add(time.Duration(float64(w.Sub(h.clk.Epoch)) * h.clk.Speed)).UTC()
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos suite runs real processes for minutes; skipped with -short")
	}
	prof, ok := profiles[*flagProfile]
	if !ok {
		t.Fatalf("-chaos.profile %q: want short or long", *flagProfile)
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	tags, faults, err := watcherBuild()
	if err != nil {
		t.Fatal(err)
	}
	rerun := fmt.Sprintf("-chaos.profile=%s -chaos.seed=%d", prof.name, seed)
	if faults != "" {
		rerun += " -chaos.faults=" + faults
	}
	t.Logf("chaos profile %s, seed %d (rerun: go test ./test/chaos -run TestChaos %s -v)", prof.name, seed, rerun)
	h := newHarness(t, prof, seed)
	h.watcherTags, h.faults = tags, faults
	h.build()
	h.startAll()
	h.warmup()
	h.chaos()
	h.bg.Wait()
	h.hostilePhase()
	h.quiet()
	res := h.stopAndCollect()
	h.check(res)
}

func newHarness(t *testing.T, prof profile, seed uint64) *harness {
	dir, err := os.MkdirTemp("", "pcwatch-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "logs", "nats", "watcher"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(rng.IntN(256))
	}
	start, _ := time.Parse(time.RFC3339, calendar)
	h := &harness{t: t, prof: prof, seed: seed, rng: rng, dir: dir, bin: map[string]string{},
		clk:    clock.Accelerated{Start: start, Epoch: time.Now().UTC().Truncate(time.Millisecond), Speed: speed},
		secret: "whsec_" + base64.StdEncoding.EncodeToString(key), want: map[*component]bool{}, counts: map[string]int{},
		cancelled: map[string]bool{}, started: time.Now()}
	t.Cleanup(func() {
		for _, c := range []*component{h.watcher, h.notifier, h.sim, h.nats} {
			if c != nil {
				c.killAll()
			}
		}
		if h.rcv != nil {
			h.rcv.close()
		}
		h.mu.Lock()
		_ = os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(strings.Join(h.timeline, "\n")+"\n"), 0o600)
		h.mu.Unlock()
		if t.Failed() {
			h.printTails()
		}
		if *flagKeep || t.Failed() {
			t.Logf("run directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return h
}

func (h *harness) printTails() {
	var b strings.Builder
	b.WriteString("timeline:\n")
	h.mu.Lock()
	tl := h.timeline
	if len(tl) > 120 {
		tl = tl[len(tl)-120:]
	}
	for _, l := range tl {
		b.WriteString("  " + l + "\n")
	}
	h.mu.Unlock()
	for _, c := range []*component{h.nats, h.sim, h.notifier, h.watcher} {
		if c == nil {
			continue
		}
		if p := c.current(); p != nil {
			fmt.Fprintf(&b, "=== %s #%d\n%s", c.name, p.n, p.tail(25))
		}
	}
	h.t.Log(b.String())
}

// moduleRoot is the directory of go.mod above the test.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test")
		}
		dir = parent
	}
}

// goTool finds the go command (go test puts its own first on PATH).
func goTool(t *testing.T) string {
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the programs: %v", err)
	}
	return p
}

// build compiles the programs into the run directory.
func (h *harness) build() {
	t := h.t
	root := moduleRoot(t)
	bin := filepath.Join(h.dir, "bin")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	var env []string
	steps := [][]string{
		{"build", "-o", bin + string(filepath.Separator), "./cmd/notifier", "./cmd/pcsim"},
		{"build", "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2"},
		{"build", "-tags", h.watcherTags, "-o", filepath.Join(bin, "watcher"), "./cmd/watcher"},
	}
	for _, args := range steps {
		if _, err := runCmd(ctx, root, env, goTool(t), args...); err != nil {
			t.Fatalf("building the programs: %v", err)
		}
	}
	for _, n := range []string{"watcher", "notifier", "pcsim", "nats-server"} {
		h.bin[n] = filepath.Join(bin, n)
	}
	h.logf("built watcher (tags %q, faults armed %q), notifier, pcsim and nats-server in %s", h.watcherTags, h.faults, time.Since(start).Round(time.Millisecond))
}

var (
	reSimReady = regexp.MustCompile(`pcsim listening on (http://\S+)`)
)

// jsonReady matches a slog JSON line with msg and returns the string
// attribute attr (or "" when attr is empty).
func jsonReady(msg, attr string) func(string) (string, bool) {
	return func(line string) (string, bool) {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			return "", false
		}
		if attr == "" {
			return "", true
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			return "", false
		}
		v, _ := m[attr].(string)
		return v, v != ""
	}
}

func (h *harness) startAll() {
	t := h.t
	var err error
	// NATS.
	if h.natsPort, err = freePort(); err != nil {
		t.Fatal(err)
	}
	h.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", h.natsPort)
	conf := filepath.Join(h.dir, "nats.conf")
	confText := fmt.Sprintf("listen: 127.0.0.1:%d\nserver_name: chaos\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", h.natsPort, filepath.Join(h.dir, "nats"))
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	h.nats = &component{h: h, name: "nats-server", bin: h.bin["nats-server"], args: func() []string { return []string{"-c", conf} },
		ready: func(l string) (string, bool) { return "", strings.Contains(l, "Server is ready") }}
	h.startWait(h.nats, 30*time.Second)
	h.ensureStream()

	// The simulator.
	spec := h.clk.String()
	h.sim = &component{h: h, name: "pcsim", bin: h.bin["pcsim"], args: func() []string {
		return []string{"--listen", "127.0.0.1:0", "--seed", fmt.Sprint(h.seed), "--customers", fmt.Sprint(h.prof.customers),
			"--token", token, "--clock", spec, "--log-level", "warn"}
	}, ready: func(l string) (string, bool) {
		if m := reSimReady.FindStringSubmatch(l); m != nil {
			return m[1], true
		}
		return "", false
	}}
	h.adm = admin{url: h.startWait(h.sim, 30*time.Second)}

	// The receiver and the notifier.
	if h.rcv, err = newReceiver(h.secret); err != nil {
		t.Fatal(err)
	}
	ncfg := filepath.Join(h.dir, "notifier.yaml")
	if err := os.WriteFile(ncfg, []byte(h.notifierConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	h.notifier = &component{h: h, name: "notifier", bin: h.bin["notifier"], env: []string{"CHAOS_WEBHOOK_SECRET=" + h.secret},
		args: func() []string {
			return []string{"run", "--config", ncfg, "--nats-url", h.natsURL, "--listen", "127.0.0.1:0", "--log-format", "json", "--clock", h.clk.String()}
		}, ready: jsonReady("notifier ready", "")}
	h.startWait(h.notifier, 60*time.Second)

	// The ground truth before the watcher's first listing.
	if h.initial, err = h.adm.state(); err != nil {
		t.Fatal(err)
	}
	for _, c := range h.initial.Customers {
		h.customers = append(h.customers, c.ID)
	}
	subs := 0
	for _, c := range h.initial.Customers {
		subs += len(c.Subscriptions)
	}
	h.logf("simulator: %d customers, %d subscriptions at %s (mutation seq %d)", len(h.initial.Customers), subs, h.initial.At.Format(time.RFC3339), h.initial.Seq)

	// The watcher.
	wenv := []string{"PCWATCH_PC_TOKEN=" + token}
	if h.faults != "" {
		wenv = append(wenv, fault.EnvVar+"="+h.faults)
	}
	h.watcher = &component{h: h, name: "watcher", bin: h.bin["watcher"], env: wenv,
		args: func() []string {
			return []string{"run", "--pc-url", h.adm.url, "--data-dir", filepath.Join(h.dir, "watcher"), "--nats-url", h.natsURL,
				"--interval", "1s", "--deadline-interval", "1s", "--rate", "100000", "--concurrency", "8", "--retry-budget", "3s",
				"--audit-interval", "5s", "--hot-interval", "30s",
				"--resources", "subscriptions,managedservices", "--listen", "127.0.0.1:0", "--clock", spec,
				"--created-on-first-sighting", "--log-format", "json"}
		}, ready: jsonReady("watcher started", "listen")}
	h.startWait(h.watcher, 60*time.Second)
}

// startWait starts c's first instance and waits until it is ready.
func (h *harness) startWait(c *component, timeout time.Duration) string {
	p, err := c.start()
	if err != nil {
		h.t.Fatal(err)
	}
	h.setWant(c, true)
	v, err := p.waitReady(timeout)
	if err != nil {
		h.t.Fatal(err)
	}
	h.logf("%s #%d ready %s", c.name, p.n, v)
	return v
}

func (h *harness) setWant(c *component, on bool) {
	h.mu.Lock()
	h.want[c] = on
	h.mu.Unlock()
}

func (h *harness) wants(c *component) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.want[c]
}

// ensureStream creates PCWATCH_EVENTS as the watcher would, so that the
// notifier's consumers exist before the watcher publishes anything.
func (h *harness) ensureStream() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := func() error {
			nc, js, err := natsConn(h.natsURL)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = stream.Ensure(ctx, js, stream.Options{})
			return err
		}()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("creating %s: %v", stream.Name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (h *harness) notifierConfig() string {
	quote := func(l []string) string {
		q := make([]string, len(l))
		for i, t := range l {
			q[i] = fmt.Sprintf("%q", t)
		}
		return strings.Join(q, ", ")
	}
	return fmt.Sprintf(`# written by the chaos suite
channels:
  %s:
    kind: webhook
    url: %s/hook
    secret_env: CHAOS_WEBHOOK_SECRET
    timeout: 5s
  %s:
    kind: webhook
    url: %s/broken
    secret_env: CHAOS_WEBHOOK_SECRET
    timeout: 5s
  %s:
    kind: webhook
    url: %s/grouped
    secret_env: CHAOS_WEBHOOK_SECRET
    timeout: 5s
routes:
  - name: broken-on-purpose
    match:
      types: [%s]
    channels: [%s]
    continue: true
  - name: grouped-by-customer
    match:
      types: ["*"]
    channels: [%s]
    group_by: [customer]
    group_wait: 1h      # the calendar's: 1s of wall time
    group_interval: 2h
    continue: true
  - name: deadline-reminders
    match:
      types: [%s]
    channels: [%s]
    repeat_interval: 48h
  - name: everything
    match:
      types: ["*"]
    channels: [%s]
delivery:
  max_attempts: 1000
  ack_wait: 15s
  max_ack_pending: 64
  retry_initial: 200ms
  retry_max: 2s
  concurrency: 4
`, hookChannel, h.rcv.url, brokenChan, h.rcv.url, groupChan, h.rcv.url, quote(brokenTypes), brokenChan, groupChan, quote(warningTypes), hookChannel, hookChannel)
}

// routedHook and routedBroken mirror the routes of notifierConfig.
func routedHook(oracle.Event) bool { return true }

func routedBroken(e oracle.Event) bool { return slices.Contains(brokenTypes, e.Short()) }

func routedGrouped(oracle.Event) bool { return true }

// supervise restarts a component that should run and does not (an
// unexpected exit; the exit itself is judged at the end).
func (h *harness) supervise() {
	for _, c := range []*component{h.nats, h.sim, h.notifier, h.watcher} {
		if !h.wants(c) || c.running() {
			continue
		}
		p := c.current()
		var exitAt time.Time
		var exitErr error
		if p != nil {
			exitAt, exitErr = p.exit()
			if time.Since(exitAt) < time.Second {
				continue
			}
		}
		if c == h.sim {
			h.t.Fatalf("the simulator died: %v\n%s", exitErr, p.tail(20))
		}
		np, err := c.start()
		if err == errRunning {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		h.count("restart after an unexpected exit: "+c.name, 1)
		h.logf("%s exited unexpectedly (%v); started #%d", c.name, exitErr, np.n)
	}
}

// sleep waits d while supervising.
func (h *harness) sleep(d time.Duration) {
	end := time.Now().Add(d)
	for {
		h.supervise()
		left := time.Until(end)
		if left <= 0 {
			return
		}
		time.Sleep(min(left, 200*time.Millisecond))
	}
}

// waitFor polls cond until it holds or timeout passes, and fails the test
// then.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	if !h.waitOrNote(what, timeout, cond) {
		h.t.FailNow()
	}
}

// waitOrNote polls cond until it holds or timeout passes; a timeout is
// recorded as a problem (and logged) and false returned, so that the run
// still stops the programs and reports what the invariants say.
func (h *harness) waitOrNote(what string, timeout time.Duration, cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		h.supervise()
		ok, status := cond()
		if ok {
			h.logf("%s: %s", what, status)
			return true
		}
		if status != last && status != "" {
			last = status
		}
		if time.Now().After(deadline) {
			h.problem("timed out after %s waiting for %s; last status: %s", timeout, what, last)
			h.logf("timed out after %s waiting for %s; last status: %s", timeout, what, last)
			h.t.Logf("timed out after %s waiting for %s; last status: %s", timeout, what, last)
			return false
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// warmup waits for the baseline: a complete first cycle, everything
// published.
func (h *harness) warmup() {
	nc, js, err := natsConn(h.natsURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer nc.Close()
	h.waitFor("baseline", 3*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, ok, err := lastCycle(ctx, js)
		if err != nil || !ok || !c.Complete() {
			return false, fmt.Sprintf("last cycle %+v (%v)", c, err)
		}
		_, addr := h.watcher.current().ready()
		st, err := watcherState(addr)
		if err != nil || st.Outbox > 0 {
			return false, fmt.Sprintf("outbox %d (%v)", st.Outbox, err)
		}
		return true, fmt.Sprintf("cycle %d complete, outbox empty", c.Number)
	})
}

// timed is a step of the chaos phase at a wall instant.
type timed struct {
	at   time.Time
	name string
	f    func()
}

// chaos runs the schedule.
func (h *harness) chaos() {
	acts := makeSchedule(h.prof, h.rng)
	t0 := time.Now()
	var queue []timed
	push := func(at time.Time, name string, f func()) {
		queue = append(queue, timed{at, name, f})
		sort.SliceStable(queue, func(i, j int) bool { return queue[i].at.Before(queue[j].at) })
	}
	for _, a := range acts {
		a := a
		if a.kind != actMutateRandom {
			h.logf("scheduled: %s", a)
		}
		push(t0.Add(a.at), a.String(), func() { h.act(a, push) })
	}
	// A runtime silence of the deadline warnings for a while: they are held,
	// then sent when it ends; the delivery invariants must still hold.
	push(t0.Add(h.prof.chaos*3/10), "runtime silence of the deadline warnings for 20 calendar hours", h.silenceWarnings)
	h.logf("chaos phase: %d steps over %s", len(acts), h.prof.chaos)
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		h.sleep(time.Until(next.at))
		next.f()
	}
	h.logf("chaos phase over after %s", time.Since(t0).Round(time.Millisecond))
}

// act performs one scheduled action; push schedules its follow-up.
func (h *harness) act(a action, push func(time.Time, string, func())) {
	switch a.kind {
	case actMutateRandom:
		r, err := h.adm.random(a.n)
		if err != nil {
			h.t.Fatalf("random mutations: %v", err)
		}
		h.count("mutation requests", 1)
		h.count("mutations applied by the harness", len(r.Mutations))
	case actMutateExplicit:
		h.explicit(a.op)
	case actKillWatcher:
		h.killAndRestart(h.watcher, a.pause, push)
		h.count("watcher kills", 1)
	case actKillNotifier:
		at := h.killAndRestart(h.notifier, a.pause, push)
		h.mu.Lock()
		h.nKills = append(h.nKills, at)
		h.mu.Unlock()
		h.count("notifier kills", 1)
	case actKillNATS:
		at := h.killAndRestart(h.nats, a.pause, push)
		h.count("nats-server kills", 1)
		if a.pause > 3*time.Second {
			h.count("nats-server long outages (> poll cycle)", 1)
		}
		go func() {
			// Measure the outage: from the kill until the new instance is
			// ready.
			for {
				time.Sleep(100 * time.Millisecond)
				if p := h.nats.current(); p != nil && p.started.After(at) {
					if r, _ := p.ready(); !r.IsZero() {
						h.mu.Lock()
						h.outages = append(h.outages, r.Sub(at))
						h.mu.Unlock()
						return
					}
				}
			}
		}()
	case actFailListing:
		var pool []string
		for _, c := range h.initial.Customers {
			n := len(c.Subscriptions)
			if (a.op == "2-3 subscriptions") == (n >= 2 && n <= 3) && n >= 2 && slices.Contains(h.customers, c.ID) {
				pool = append(pool, c.ID)
			}
		}
		if len(pool) == 0 {
			return
		}
		c := pool[h.rng.IntN(len(pool))]
		if err := h.adm.inject(pcsim.Rule{PathPrefix: "/v1/customers/" + c + "/subscriptions", Status: 500, Times: a.n}); err != nil {
			h.t.Fatalf("inject: %v", err)
		}
		h.mu.Lock()
		h.failing = append(h.failing, c)
		h.mu.Unlock()
		h.count("Partner Center: subscription listing of one customer failing for cycles ("+a.op+")", 1)
		h.logf("subscription listing of customer %s (%s) fails the next %d requests", c, a.op, a.n)
	case actReceiverDown:
		h.rcv.setDown(true)
		h.count("webhook receiver outages", 1)
		h.logf("webhook receiver down (503, Retry-After 1) for %s", a.pause)
		push(time.Now().Add(a.pause), "receiver up", func() { h.rcv.setDown(false); h.logf("webhook receiver up") })
	case actFaults:
		if err := h.adm.faults(a.faults); err != nil {
			h.t.Fatalf("faults: %v", err)
		}
		h.count("Partner Center fault window: "+a.label, 1)
		h.logf("Partner Center fault on: %s", a.label)
		push(time.Now().Add(a.pause), "faults off", func() {
			if err := h.adm.faults(pcsim.Faults{}); err != nil {
				h.t.Fatalf("clearing faults: %v", err)
			}
			h.logf("Partner Center fault off: %s", a.label)
		})
	}
}

// killAndRestart kills c's current instance with SIGKILL and starts a new
// one after pause.
func (h *harness) killAndRestart(c *component, pause time.Duration, push func(time.Time, string, func())) time.Time {
	p := c.current()
	if p == nil || !p.running() {
		// Dead already: its own exit (the supervisor restarts it) or a
		// restart still pending.
		h.logf("%s not running at its scheduled kill; skipped", c.name)
		return time.Now()
	}
	h.setWant(c, false)
	at := p.kill9()
	h.logf("kill -9 %s #%d (restart in %s)", c.name, p.n, pause.Round(time.Millisecond))
	push(at.Add(pause), "restart "+c.name, func() {
		h.setWant(c, true)
		np, err := c.start()
		if err == errRunning {
			h.logf("%s #%d already running", c.name, np.n)
			return
		}
		if err != nil {
			h.t.Fatal(err)
		}
		h.logf("started %s #%d", c.name, np.n)
	})
	return at
}

// explicit performs one explicit mutation; refusals (the customer or the
// subscription went away, a window closed) are logged, not failures.
func (h *harness) explicit(op string) {
	pick := func(list []string) (string, int) {
		if len(list) == 0 {
			return "", -1
		}
		i := h.rng.IntN(len(list))
		return list[i], i
	}
	var req pcsim.MutateRequest
	switch op {
	case "addCustomer":
		req = pcsim.MutateRequest{Op: "addCustomer"}
	case "removeCustomer":
		c, i := pick(h.customers)
		if i < 0 {
			return
		}
		h.customers = slices.Delete(h.customers, i, i+1)
		req = pcsim.MutateRequest{Op: "removeCustomer", CustomerID: c}
	case "purchase", "purchaseTrial":
		c, i := pick(h.customers)
		if i < 0 {
			return
		}
		spec := &pcsim.PurchaseSpec{Quantity: 1 + h.rng.IntN(20)}
		if op == "purchaseTrial" {
			spec = &pcsim.PurchaseSpec{OfferID: "CFQ7TTC0LCHC:0002:CFQ7TTC0LF1R"}
		}
		req = pcsim.MutateRequest{Op: "purchase", CustomerID: c, Purchase: spec}
	case "cancelPurchase":
		var open []string
		for _, p := range h.purchases {
			if !h.cancelled[p] {
				open = append(open, p)
			}
		}
		p, i := pick(open)
		if i < 0 {
			return
		}
		h.cancelled[p] = true
		c, s, _ := strings.Cut(p, "/")
		req = pcsim.MutateRequest{Op: "cancel", CustomerID: c, SubscriptionID: s}
	}
	res, code, err := h.adm.mutate(req)
	switch {
	case err == nil:
		h.count("explicit "+op, 1)
		h.logf("mutate %s %s%s: %d mutation(s) %s", req.Op, req.CustomerID, req.SubscriptionID, len(res.Mutations), res.ID)
		switch op {
		case "addCustomer":
			h.customers = append(h.customers, res.ID)
		case "purchase", "purchaseTrial":
			h.purchases = append(h.purchases, req.CustomerID+"/"+res.ID)
		}
	case code == 404 || code == 409:
		h.count("explicit "+op+" refused by the simulator", 1)
		h.logf("mutate %s refused: %v", req.Op, err)
	default:
		h.t.Fatalf("mutate %s: %v", req.Op, err)
	}
}

// quiet ends the chaos: faults cleared, every program up, the calendar
// frozen, then the wait for everything to settle.
func (h *harness) quiet() {
	if err := h.adm.faults(pcsim.Faults{}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.adm.clearInjected(); err != nil {
		h.t.Fatal(err)
	}
	if err := h.adm.hostile(pcsim.Hostile{}); err != nil {
		h.t.Fatal(err)
	}
	h.rcv.setDown(false)
	h.waitAllReady()
	var err error
	if h.freezeAt, err = h.adm.freeze(); err != nil {
		h.t.Fatal(err)
	}
	h.logf("simulator frozen at %s", h.freezeAt.Format(time.RFC3339))
	nc, js, err := natsConn(h.natsURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer nc.Close()
	after := map[uint64]bool{}
	// A watcher that never settles (a stall under hostile input) is
	// reported with everything the invariants find, not by a bare timeout.
	h.waitOrNote("quiet: 3 complete cycles after the freeze, outbox empty, consumers idle", 5*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, ok, err := lastCycle(ctx, js)
		if err != nil {
			return false, err.Error()
		}
		if ok && c.Complete() && c.StartedAt.After(h.freezeAt) {
			after[c.Number] = true
		}
		if len(after) < 3 {
			return false, fmt.Sprintf("%d complete cycles after the freeze (last %+v)", len(after), c)
		}
		_, addr := h.watcher.current().ready()
		st, err := watcherState(addr)
		if err != nil || st.Outbox > 0 {
			return false, fmt.Sprintf("outbox %d (%v)", st.Outbox, err)
		}
		loads, err := consumerLoads(ctx, js, []string{hookChannel, brokenChan, groupChan})
		if err != nil {
			return false, err.Error()
		}
		for _, l := range loads {
			if !l.idle() {
				return false, l.String()
			}
		}
		return true, fmt.Sprintf("%d complete cycles after the freeze, outbox empty, %v", len(after), loads)
	})
}

// result is everything read at the end of the run.
type result struct {
	stream    []oracle.Event
	streamBad []string
	dlq       []oracle.DLQEntry
	final     pcsim.State
	log       []pcsim.Mutation
	stats     pcsim.Stats
	offOrigin pcsim.OffOriginStats
	dlqRaw    [][]byte
	// watcherState is the output of watcher state --format json.
	watcherState []byte
	outboxAfter  int
	loads        []consumerLoad
	duration     time.Duration
}

// stopAndCollect stops the programs in order, reading what the checks need
// while the right ones still run.
func (h *harness) stopAndCollect() *result {
	t := h.t
	res := &result{}
	h.setWant(h.watcher, false)
	if err := h.watcher.current().stop(30 * time.Second); err != nil {
		h.problem("stopping the watcher: %v", err)
	}
	h.logf("watcher stopped")
	out, err := runCmd(context.Background(), h.dir, nil, h.bin["watcher"], "state", "--data-dir", filepath.Join(h.dir, "watcher"), "--format", "json")
	if err != nil {
		t.Fatalf("watcher state: %v", err)
	}
	res.watcherState = out
	var st opsState
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("watcher state: %v: %s", err, out)
	}
	res.outboxAfter = st.Outbox
	nc, js, err := natsConn(h.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h.waitOrNote("consumers idle after the watcher stopped", 3*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		loads, err := consumerLoads(ctx, js, []string{hookChannel, brokenChan, groupChan})
		if err != nil {
			return false, err.Error()
		}
		for _, l := range loads {
			if !l.idle() {
				return false, l.String()
			}
		}
		if n, err := pendingAlerts(ctx, js); err != nil || n > 0 {
			return false, fmt.Sprintf("%d groups or held warnings not sent yet (%v)", n, err)
		}
		return true, fmt.Sprint(loads)
	})
	h.setWant(h.notifier, false)
	if err := h.notifier.current().stop(30 * time.Second); err != nil {
		h.problem("stopping the notifier: %v", err)
	}
	h.logf("notifier stopped")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if res.loads, err = consumerLoads(ctx, js, []string{hookChannel, brokenChan, groupChan}); err != nil {
		t.Fatal(err)
	}
	msgs, err := readAll(ctx, js, stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		e, err := oracle.Decode(m.Sequence, m.Data)
		if err != nil {
			res.streamBad = append(res.streamBad, err.Error())
			continue
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != e.ID {
			res.streamBad = append(res.streamBad, fmt.Sprintf("stream seq %d: Nats-Msg-Id %q is not the event id %s", m.Sequence, id, e.ID))
		}
		res.stream = append(res.stream, e)
	}
	dl, err := readAll(ctx, js, notify.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dl {
		var status int
		fmt.Sscan(m.Header.Get(notify.HeaderDLQStatus), &status)
		res.dlqRaw = append(res.dlqRaw, m.Data)
		res.dlq = append(res.dlq, oracle.DLQEntry{Seq: m.Sequence, EventID: m.Header.Get(notify.HeaderEventID),
			Channel: m.Header.Get(notify.HeaderDLQChannel), Reason: m.Header.Get(notify.HeaderDLQReason), Status: status})
	}
	if res.final, err = h.adm.state(); err != nil {
		t.Fatal(err)
	}
	if res.log, err = h.adm.mutations(h.initial.Seq); err != nil {
		t.Fatal(err)
	}
	if res.stats, err = h.adm.stats(); err != nil {
		t.Fatal(err)
	}
	if res.offOrigin, err = h.adm.offOrigin(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*component{h.sim, h.nats} {
		h.setWant(c, false)
		if err := c.current().stop(30 * time.Second); err != nil {
			h.problem("stopping %s: %v", c.name, err)
		}
	}
	res.duration = time.Since(h.started)
	h.logf("everything stopped; %d events, %d dead letters, %d mutations", len(res.stream), len(res.dlq), len(res.log))
	return res
}

// upSpans are the business-time spans during which a watcher ran.
func (h *harness) upSpans() []oracle.Span {
	var out []oracle.Span
	h.watcher.mu.Lock()
	procs := append([]*proc(nil), h.watcher.procs...)
	h.watcher.mu.Unlock()
	for _, p := range procs {
		r, _ := p.ready()
		end := p.end()
		if r.IsZero() || end.IsZero() {
			continue
		}
		out = append(out, oracle.Span{From: h.biz(r), To: h.biz(end)})
	}
	return out
}

// exits judges the exits nobody asked for.
func (h *harness) exits() {
	for _, c := range []*component{h.nats, h.sim, h.notifier, h.watcher} {
		for _, p := range c.unexpected() {
			data, _ := os.ReadFile(p.stderr)
			_, exitErr := p.exit()
			if c == h.watcher && strings.Contains(string(data), "is not usable") {
				if ee, ok := exitErr.(*exec.ExitError); ok && ee.ExitCode() == 2 {
					h.count("watcher refused to start against a faulty Partner Center (exit 2, documented)", 1)
					continue
				}
			}
			h.problem("%s #%d exited without being asked to (%v):\n%s", c.name, p.n, exitErr, p.tail(12))
		}
	}
}

func (h *harness) check(res *result) {
	var fails []string
	add := func(section string, problems []string) {
		for _, p := range problems {
			fails = append(fails, "["+section+"] "+p)
		}
	}
	h.exits()
	add("harness", h.problems)
	add("stream", res.streamBad)
	if res.outboxAfter != 0 {
		add("delivery", []string{fmt.Sprintf("the watcher's outbox still holds %d events after it stopped", res.outboxAfter)})
	}
	for _, l := range res.loads {
		if !l.idle() {
			add("delivery", []string{"consumer left work behind: " + l.String()})
		}
	}
	_, refused, brokenHits, rp := h.rcv.snapshot()
	add("receiver", rp)

	// 1 and 2: the model.
	m := oracle.NewModel()
	for _, e := range res.stream {
		add("model", m.Apply(e))
	}
	add("completeness", m.Compare(res.final))
	// 3.
	cycles := oracle.CyclesOf(res.stream)
	truth := oracle.Truth{Initial: h.initial, Log: res.log, Final: res.final}
	inv, invStats := oracle.CheckInventions(res.stream, truth, cycles)
	add("inventions", inv)
	sp, sightings := oracle.CheckSightings(res.stream, truth, cycles)
	add("completeness", sp)
	// 4.
	dp, dstats := oracle.CheckDeadlines(oracle.DeadlineInput{Events: res.stream, Truth: truth, Cycles: cycles, Up: h.upSpans(),
		End: h.freezeAt, MinUp: time.Duration(float64(minUpWall) * speed), Cancellation: cancellationThresholds, Trial: trialThresholds})
	add("deadlines", dp)
	// 5.
	receipts, _, _, _ := h.rcv.snapshot()
	h.mu.Lock()
	kills := append([]time.Time(nil), h.nKills...)
	h.mu.Unlock()
	delp, delStats := oracle.CheckDelivery(oracle.DeliveryInput{Stream: res.stream, Routed: routedHook, Receipts: receipts,
		NotifierKills: kills, KillSlack: killSlack, DLQ: res.dlq, DLQChannel: brokenChan, DLQRouted: routedBroken})
	add("delivery", delp)
	// The grouped channel: every event in exactly one grouped message (or
	// alone, released by the silence), each message once; the notices.
	grouped, groupIDs, notices, released := h.rcv.followUps()
	gp, gStats := oracle.CheckDelivery(oracle.DeliveryInput{Stream: res.stream, Routed: routedGrouped, Receipts: grouped,
		NotifierKills: kills, KillSlack: killSlack, DLQChannel: brokenChan, DLQRouted: func(oracle.Event) bool { return false }})
	for _, p := range gp {
		add("delivery", []string{groupChan + " channel: " + p})
	}
	add("delivery", checkOnce("grouped message", groupIDs, kills))
	add("delivery", checkNotices(notices, receipts, grouped, res.stream, kills))
	noticeKinds := map[string]int{}
	for _, n := range notices {
		noticeKinds[n.channel+" "+n.kind]++
	}
	// The change feed is in play: some changes were found by hinted
	// refreshes (they carry the activity log's actor) and held to the
	// same invariants as the sweep's.
	hinted := 0
	for _, e := range res.stream {
		if e.Data != nil && e.Data.Actor != nil {
			hinted++
		}
	}
	if hinted == 0 {
		add("change feed", []string{"no event carries data.actor: the activity-log tail (--audit-interval 5s) never triggered a refresh that found a change, so the invariants were not checked with hints on"})
	}
	// The hostile phase.
	hp, hsum := h.checkHostile(res)
	add("hostile", hp)

	// Summary.
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary: profile %s, seed %d, watcher tags %q, faults armed %q, duration %s\n", h.prof.name, h.seed, h.watcherTags, h.faults, res.duration.Round(time.Second))
	fmt.Fprintf(&b, "  events checked: %d in the stream (%s)\n", len(res.stream), oracle.TypeSummary(m.Types))
	cu, su, sv := m.Counts()
	fmt.Fprintf(&b, "  final state: %d customers, %d subscriptions, %d managed services (model and simulator compared); %d lifetimes spanning a complete cycle, each in the stream\n", cu, su, sv, sightings)
	fmt.Fprintf(&b, "  cycles completed: %d; mutations: %d (%s)\n", len(cycles), invStats.Mutations, opSummary(invStats.MutationsByOp))
	fmt.Fprintf(&b, "  change feed: %d events found by hinted refreshes (carrying data.actor)\n", hinted)
	fmt.Fprintf(&b, "  inventions: %d removals, %d creations, %d change revisions held against the log\n", invStats.Removals, invStats.Creations, invStats.ChangeRevisions)
	fmt.Fprintf(&b, "  deadlines: %d deadline events timed; %d windows reconstructed, %d shown by events; %d thresholds required exactly once; excluded: %s\n",
		dstats.Events, dstats.Windows, dstats.Seen, dstats.Required, opSummary(dstats.Excluded))
	for _, w := range dstats.NeverShown {
		fmt.Fprintf(&b, "    never shown by an event: %s\n", w)
	}
	h.mu.Lock()
	keys := make([]string, 0, len(h.counts))
	for k := range h.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("  injected (faults, kills, explicit mutations):\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "    %-70s %d\n", k, h.counts[k])
	}
	var outs []string
	for _, o := range h.outages {
		outs = append(outs, o.Round(100*time.Millisecond).String())
	}
	h.mu.Unlock()
	fmt.Fprintf(&b, "    nats-server outages (kill to ready): %s\n", strings.Join(outs, ", "))
	fmt.Fprintf(&b, "    simulator faults served: %s\n", opSummary64(res.stats.Faults))
	fmt.Fprintf(&b, "  events too large for NATS: %d ops.event-dropped notices, accounting for %d revisions missing from the stream\n", len(m.Dropped), m.Explained)
	for _, d := range m.Dropped {
		fmt.Fprintf(&b, "    dropped (documented): %s\n", d)
	}
	fmt.Fprintf(&b, "  delivery: %d events routed to %q, %d deliveries accepted, %d refused while the receiver was down; %d duplicates, each explained by a notifier kill; %d dead letters (%d refusals by %q)\n",
		delStats.Expected, hookChannel, delStats.Receipts, refused, delStats.Duplicates, delStats.DLQ, brokenHits, brokenChan)
	for _, e := range delStats.Explained {
		fmt.Fprintf(&b, "    at-least-once (documented): %s\n", e)
	}
	fmt.Fprintf(&b, "  grouped: %d events routed to %q arrived in %d grouped messages (%d duplicates, each explained by a notifier kill); notices: %v; %d warnings held by the runtime silence, then sent\n",
		gStats.Expected, groupChan, len(groupIDs), gStats.Duplicates, noticeKinds, released)
	h.mu.Lock()
	failing := append([]string(nil), h.failing...)
	h.mu.Unlock()
	pollFailed := 0
	for _, e := range res.stream {
		if e.Type == events.OpsCustomerPollFailed && slices.Contains(failing, e.Data.CustomerID) {
			pollFailed++
		}
	}
	fmt.Fprintf(&b, "  customers whose subscription listing was made to fail: %d; ops.customer-poll-failed events about them: %d\n", len(failing), pollFailed)
	b.WriteString("  hostile phase:\n")
	for _, l := range hsum {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	for _, l := range res.loads {
		fmt.Fprintf(&b, "  consumer %s\n", l)
	}
	summary := b.String()
	_ = os.WriteFile(filepath.Join(h.dir, "summary.txt"), []byte(summary+"\n"+strings.Join(fails, "\n")+"\n"), 0o600)

	h.t.Log(summary)
	if len(fails) > 0 {
		shown := fails
		if len(shown) > 60 {
			shown = shown[:60]
		}
		h.t.Errorf("%d invariant violations (first %d):\n%s", len(fails), len(shown), strings.Join(shown, "\n"))
	}
}

func opSummary(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ")
}

func opSummary64(m map[string]int64) string {
	c := map[string]int{}
	for k, v := range m {
		c[k] = int(v)
	}
	return opSummary(c)
}

// silenceWarnings adds a 20-second runtime silence of the deadline
// warnings with the notifier's own command, trying again while NATS is
// down.
func (h *harness) silenceWarnings() {
	// 20 hours of the calendar: 20s of wall time.
	args := []string{"silence", "add", "--duration", "20h", "--author", "chaos", "--comment", "chaos: warnings held", "--nats-url", h.natsURL, "--clock", h.clk.String()}
	for _, t := range warningTypes {
		args = append(args, "--type", t)
	}
	// In the background, so that the schedule goes on while NATS is down
	// (the harness waits for it before the checks).
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		giveUp := time.Now().Add(2 * time.Minute)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			out, err := runCmd(ctx, h.dir, nil, h.bin["notifier"], args...)
			cancel()
			if err == nil {
				h.logf("runtime silence: %s", strings.TrimSpace(string(out)))
				h.count("runtime silences added (20 calendar hours, deadline warnings)", 1)
				return
			}
			if time.Now().After(giveUp) {
				h.problem("notifier silence add (NATS unreachable for 2 minutes?): %v", err)
				return
			}
			h.logf("notifier silence add failed, trying again: %v", err)
			time.Sleep(time.Second)
		}
	}()
}

// pendingAlerts counts what the notifier still holds back: groups with
// events and warnings held by a silence.
func pendingAlerts(ctx context.Context, js jetstream.JetStream) (int, error) {
	kv, err := js.KeyValue(ctx, notify.AlertsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var rec struct {
			Kind    string            `json:"kind"`
			Members []json.RawMessage `json:"members"`
		}
		if json.Unmarshal(e.Value(), &rec) == nil && (rec.Kind == "held" || len(rec.Members) > 0) {
			n++
		}
	}
	return n, nil
}
