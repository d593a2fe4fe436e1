package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one run of a program: started by the harness, with its stdout
// and stderr in files of its own.
type proc struct {
	comp    *component
	n       int // instance number, 1, 2, ...
	cmd     *exec.Cmd
	stdout  string
	stderr  string
	started time.Time

	mu       sync.Mutex
	readyAt  time.Time // when its ready line appeared (zero until then)
	readyVal string    // what the ready matcher extracted (an address)
	exitAt   time.Time
	exitErr  error
	expected bool      // the harness killed or stopped it
	killedAt time.Time // when the harness sent SIGKILL
	done     chan struct{}
}

// component is one of the programs the harness runs (nats-server, pcsim,
// notifier, watcher), restarted as often as the schedule says.
type component struct {
	h    *harness
	name string
	bin  string
	// args returns the arguments of a new instance.
	args func() []string
	env  []string
	// ready finds the line of stdout or stderr that says the instance is
	// ready and returns what it carries (an address), or false.
	ready func(line string) (string, bool)

	mu    sync.Mutex
	procs []*proc
}

func (c *component) current() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.procs) == 0 {
		return nil
	}
	return c.procs[len(c.procs)-1]
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// running reports whether the current instance runs.
func (c *component) running() bool {
	p := c.current()
	return p != nil && p.running()
}

// errRunning says an instance is running already: the harness never runs
// two of one program (two watchers would fight over the state file).
var errRunning = errors.New("an instance is running already")

// start runs a new instance; it does not wait for it to be ready.
func (c *component) start() (*proc, error) {
	c.mu.Lock()
	if n := len(c.procs); n > 0 && c.procs[n-1].running() {
		c.mu.Unlock()
		return c.procs[n-1], errRunning
	}
	n := len(c.procs) + 1
	c.mu.Unlock()
	dir := filepath.Join(c.h.dir, "logs")
	p := &proc{comp: c, n: n, done: make(chan struct{}),
		stdout: filepath.Join(dir, fmt.Sprintf("%s.%02d.stdout", c.name, n)),
		stderr: filepath.Join(dir, fmt.Sprintf("%s.%02d.stderr", c.name, n))}
	out, err := os.Create(p.stdout)
	if err != nil {
		return nil, err
	}
	errf, err := os.Create(p.stderr)
	if err != nil {
		out.Close()
		return nil, err
	}
	p.cmd = exec.Command(c.bin, c.args()...)
	p.cmd.Env = append(cleanEnv(), c.env...)
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	p.cmd.Dir = c.h.dir
	// Own process group: a Ctrl-C of go test does not reach it; the
	// harness stops it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		errf.Close()
		return nil, fmt.Errorf("starting %s: %w", c.name, err)
	}
	p.started = time.Now()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	go func() {
		err := p.cmd.Wait()
		out.Close()
		errf.Close()
		p.mu.Lock()
		p.exitAt, p.exitErr = time.Now(), err
		expected := p.expected
		p.mu.Unlock()
		close(p.done)
		if !expected {
			c.h.logf("%s #%d exited on its own: %v", c.name, p.n, err)
		}
	}()
	if c.ready != nil {
		go p.watchReady()
	}
	return p, nil
}

// watchReady scans the instance's output for its ready line.
func (p *proc) watchReady() {
	offsets := map[string]int64{}
	for {
		for _, f := range []string{p.stdout, p.stderr} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			b = b[offsets[f]:]
			i := bytes.LastIndexByte(b, '\n')
			if i < 0 {
				continue
			}
			chunk := b[:i+1]
			offsets[f] += int64(i + 1)
			sc := bufio.NewScanner(bytes.NewReader(chunk))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if v, ok := p.comp.ready(sc.Text()); ok {
					p.mu.Lock()
					p.readyAt, p.readyVal = time.Now(), v
					p.mu.Unlock()
					return
				}
			}
		}
		select {
		case <-p.done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exit returns when and how the instance exited (zero while it runs).
func (p *proc) exit() (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitAt, p.exitErr
}

// end is when the instance stopped working: its kill, else its exit.
func (p *proc) end() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.killedAt.IsZero() {
		return p.killedAt
	}
	return p.exitAt
}

// cleanEnv is the environment without PCWATCH_* settings of whoever runs
// the test, which would change how the programs behave.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PCWATCH_") {
			out = append(out, kv)
		}
	}
	return out
}

// ready returns when the instance became ready and what its ready line
// carried.
func (p *proc) ready() (time.Time, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyAt, p.readyVal
}

// waitReady waits until the instance is ready, exits, or timeout passes.
func (p *proc) waitReady(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if at, v := p.ready(); !at.IsZero() {
			return v, nil
		}
		if !p.running() {
			_, err := p.exit()
			return "", fmt.Errorf("%s #%d exited before it was ready: %v\n%s", p.comp.name, p.n, err, p.tail(15))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s #%d not ready after %s\n%s", p.comp.name, p.n, timeout, p.tail(15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the instance with SIGKILL and waits for it to be gone.
func (p *proc) kill9() time.Time {
	at := time.Now()
	p.mu.Lock()
	p.expected, p.killedAt = true, at
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return at
}

// stop sends SIGTERM and waits up to grace, then kills it.
func (p *proc) stop(grace time.Duration) error {
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		var ee *exec.ExitError
		if p.exitErr != nil && !errors.As(p.exitErr, &ee) {
			return p.exitErr
		}
		if p.exitErr != nil {
			return fmt.Errorf("%s #%d exited with %v after SIGTERM", p.comp.name, p.n, p.exitErr)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s #%d did not stop within %s of SIGTERM; killed", p.comp.name, p.n, grace)
	}
}

// tail returns the last n lines of the instance's stderr and stdout.
func (p *proc) tail(n int) string {
	var b strings.Builder
	for _, f := range []string{p.stderr, p.stdout} {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n", filepath.Base(f), len(lines))
		for _, l := range lines {
			if len(l) > 600 {
				l = l[:600] + "..."
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// unexpected lists instances that exited without the harness asking them
// to, with their exit status and the tail of their output.
func (c *component) unexpected() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, p := range c.procs {
		p.mu.Lock()
		if !p.running() && !p.expected {
			out = append(out, p)
		}
		p.mu.Unlock()
	}
	return out
}

// killAll kills every instance still running (test cleanup).
func (c *component) killAll() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		if p.running() {
			p.kill9()
		}
	}
}

// runCmd runs a program to completion (go build, watcher state).
func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes(), nil
}
