package poller

import "context"

// HotPass runs one pass of RunHot (tests).
func (p *Poller) HotPass(ctx context.Context, o HotOptions) error { return p.hotPass(ctx, o) }
