package webhook

import (
	"container/list"
	"sync"
	"time"
)

// replayCache remembers accepted callbacks (a hash of body and signature)
// for a window, at most max of them, oldest forgotten first. Safe for
// concurrent use.
type replayCache struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	order  *list.List // of replayItem, oldest at the front
	index  map[[32]byte]*list.Element
}

type replayItem struct {
	key [32]byte
	at  time.Time
}

func newReplayCache(max int, window time.Duration) *replayCache {
	return &replayCache{max: max, window: window, order: list.New(), index: map[[32]byte]*list.Element{}}
}

// seen reports whether key was added within the window before now.
func (c *replayCache) seen(key [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	_, ok := c.index[key]
	return ok
}

// add remembers key as accepted at now.
func (c *replayCache) add(key [32]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if e, ok := c.index[key]; ok {
		c.order.Remove(e)
	}
	c.index[key] = c.order.PushBack(replayItem{key: key, at: now})
	for c.order.Len() > c.max {
		e := c.order.Front()
		delete(c.index, e.Value.(replayItem).key)
		c.order.Remove(e)
	}
}

func (c *replayCache) expireLocked(now time.Time) {
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		it := e.Value.(replayItem)
		if now.Sub(it.at) < c.window {
			return
		}
		delete(c.index, it.key)
		c.order.Remove(e)
	}
}
