package network

import (
	"fmt"
	"sync"
	"time"

	"github.com/skipwire/skipwire/identity"
)

// calls are the Requests of a Network waiting for their reply, by call ID.
type calls struct {
	mu sync.Mutex
	m  map[uint64]*pendingCall
}

// pendingCall is one Request waiting.
type pendingCall struct {
	target  identity.Identifier // the node asked: only it may say it has no processor
	ch      Channel
	started time.Time
	result  chan callResult // buffered: the first answer wins, the others are dropped
}

type callResult struct {
	m   Message
	err error
}

// add registers a call to target on ch under a fresh random ID.
func (c *calls) add(target identity.Identifier, ch Channel) (uint64, *pendingCall) {
	pc := &pendingCall{target: target, ch: ch, started: time.Now(), result: make(chan callResult, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[uint64]*pendingCall)
	}
	for {
		id := newCallID()
		if _, taken := c.m[id]; !taken {
			c.m[id] = pc
			return id, pc
		}
	}
}

// remove forgets call id.
func (c *calls) remove(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// finish hands r to call id, if it waits, and reports whether it did.
func (c *calls) finish(id uint64, r callResult) bool {
	c.mu.Lock()
	pc := c.m[id]
	delete(c.m, id)
	c.mu.Unlock()
	if pc == nil {
		return false
	}
	pc.result <- r
	return true
}

// noProcessor fails call id with ErrNoProcessor if from is the node it asked,
// and reports whether it did.
func (c *calls) noProcessor(id uint64, from identity.Identifier, ch Channel) bool {
	c.mu.Lock()
	pc := c.m[id]
	if pc == nil || pc.target != from {
		c.mu.Unlock()
		return false
	}
	delete(c.m, id)
	c.mu.Unlock()
	pc.result <- callResult{err: fmt.Errorf("%s has no processor on %q: %w", from.Short(), ch, ErrNoProcessor)}
	return true
}

// failTarget fails every call that asked peer with err.
func (c *calls) failTarget(peer identity.Identifier, err error) {
	c.mu.Lock()
	var failed []*pendingCall
	for id, pc := range c.m {
		if pc.target == peer {
			failed = append(failed, pc)
			delete(c.m, id)
		}
	}
	c.mu.Unlock()
	for _, pc := range failed {
		pc.result <- callResult{err: err}
	}
}
