package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/oracle"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/stream"
)

var httpc = &http.Client{Timeout: 30 * time.Second}

// admin is a client of the simulator's admin API.
type admin struct{ url string }

func (a admin) do(method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.url+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (a admin) state() (pcsim.State, error) {
	var st pcsim.State
	_, err := a.do("GET", "/admin/state", nil, &st)
	return st, err
}

func (a admin) mutations(since uint64) ([]pcsim.Mutation, error) {
	var ms []pcsim.Mutation
	_, err := a.do("GET", "/admin/mutations?since="+strconv.FormatUint(since, 10), nil, &ms)
	return ms, err
}

func (a admin) random(n int) (pcsim.MutateResponse, error) {
	var r pcsim.MutateResponse
	_, err := a.do("POST", "/admin/random", map[string]int{"n": n}, &r)
	return r, err
}

func (a admin) mutate(req pcsim.MutateRequest) (pcsim.MutateResponse, int, error) {
	var r pcsim.MutateResponse
	code, err := a.do("POST", "/admin/mutate", req, &r)
	return r, code, err
}

func (a admin) faults(f pcsim.Faults) error {
	_, err := a.do("POST", "/admin/faults", f, nil)
	return err
}

func (a admin) hostile(h pcsim.Hostile) error {
	_, err := a.do("POST", "/admin/hostile", h, nil)
	return err
}

func (a admin) offOrigin() (pcsim.OffOriginStats, error) {
	var s pcsim.OffOriginStats
	_, err := a.do("GET", "/admin/offorigin", nil, &s)
	return s, err
}

func (a admin) resetOffOrigin() error {
	_, err := a.do("DELETE", "/admin/offorigin", nil, nil)
	return err
}

func (a admin) inject(r pcsim.Rule) error {
	_, err := a.do("POST", "/admin/inject", r, nil)
	return err
}

func (a admin) clearInjected() error {
	_, err := a.do("DELETE", "/admin/inject", nil, nil)
	return err
}

func (a admin) stats() (pcsim.Stats, error) {
	var s pcsim.Stats
	_, err := a.do("GET", "/admin/stats", nil, &s)
	return s, err
}

func (a admin) freeze() (time.Time, error) {
	var r struct {
		FrozenAt time.Time `json:"frozenAt"`
	}
	_, err := a.do("POST", "/admin/freeze", struct{}{}, &r)
	return r.FrozenAt, err
}

// freePort returns a TCP port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// natsConn connects once; nothing is retried in the background.
func natsConn(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name("pcwatch-chaos-harness"), nats.Timeout(2*time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// lastCycle returns the last ops.cycle-completed in the stream.
func lastCycle(ctx context.Context, js jetstream.JetStream) (oracle.Cycle, bool, error) {
	s, err := js.Stream(ctx, stream.Name)
	if err != nil {
		return oracle.Cycle{}, false, err
	}
	m, err := s.GetLastMsgForSubject(ctx, "pcwatch.ops.cycle-completed")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return oracle.Cycle{}, false, nil
	}
	if err != nil {
		return oracle.Cycle{}, false, err
	}
	e, err := oracle.Decode(m.Sequence, m.Data)
	if err != nil {
		return oracle.Cycle{}, false, err
	}
	cs := oracle.CyclesOf([]oracle.Event{e})
	if len(cs) != 1 {
		return oracle.Cycle{}, false, fmt.Errorf("stream seq %d: not a cycle summary", m.Sequence)
	}
	return cs[0], true, nil
}

// consumerLoad is what a notifier consumer still has to do.
type consumerLoad struct {
	Name          string
	NumPending    uint64
	NumAckPending int
	Redelivered   int
}

func (c consumerLoad) idle() bool { return c.NumPending == 0 && c.NumAckPending == 0 }

func (c consumerLoad) String() string {
	return fmt.Sprintf("%s: %d pending, %d unacknowledged, %d redelivered", c.Name, c.NumPending, c.NumAckPending, c.Redelivered)
}

func consumerLoads(ctx context.Context, js jetstream.JetStream, channels []string) ([]consumerLoad, error) {
	var out []consumerLoad
	for _, ch := range channels {
		c, err := js.Consumer(ctx, stream.Name, notify.ConsumerName(ch))
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", notify.ConsumerName(ch), err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", notify.ConsumerName(ch), err)
		}
		out = append(out, consumerLoad{Name: info.Name, NumPending: info.NumPending, NumAckPending: info.NumAckPending, Redelivered: info.NumRedelivered})
	}
	return out, nil
}

// readAll returns every message of a stream in order.
func readAll(ctx context.Context, js jetstream.JetStream, name string) ([]*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s seq %d: %w", name, seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// opsState is the part of the watcher's /api/state the harness reads.
type opsState struct {
	Cycle   uint64 `json:"cycle"`
	Outbox  int    `json:"outboxDepth"`
	Pending int    `json:"pendingRemovals"`
}

func watcherState(addr string) (opsState, error) {
	var st opsState
	resp, err := httpc.Get("http://" + addr + "/api/state")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("/api/state: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
