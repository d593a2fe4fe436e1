package notify

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// Channel pacing: Slack incoming webhooks accept about one message per
// second per channel, Teams workflow webhooks about four; beyond that they
// answer 429. The notifier stays under the limit instead of provoking it.
var channelRates = map[string]rate.Limit{
	KindSlack: 1,
	KindTeams: 4,
}

// pacedSender holds each send until its channel's rate allows it. One
// pacedSender is shared by all of a channel's concurrent sends.
type pacedSender struct {
	sender
	lim   *rate.Limiter
	clk   clock.Clock
	sleep func(context.Context, time.Duration) error
}

func pace(s sender, kind string, clk clock.Clock, sleep func(context.Context, time.Duration) error) sender {
	r, ok := channelRates[kind]
	if !ok {
		return s
	}
	if sleep == nil {
		sleep = clock.Sleep
	}
	return &pacedSender{sender: s, lim: rate.NewLimiter(r, 1), clk: clk, sleep: sleep}
}

func (p *pacedSender) send(ctx context.Context, n *notification) error {
	res := p.lim.ReserveN(p.clk.Now(), 1)
	if d := res.DelayFrom(p.clk.Now()); d > 0 {
		if err := p.sleep(ctx, d); err != nil {
			res.CancelAt(p.clk.Now())
			return err
		}
	}
	return p.sender.send(ctx, n)
}
