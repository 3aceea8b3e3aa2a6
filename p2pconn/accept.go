package p2pconn

import (
	"context"
	"sync"
)

// acceptQueue holds inbound connections until Accept takes them, dead ones
// included, so their buffered messages are not lost. It never blocks a
// producer: when it holds max entries, the oldest dead one is dropped (or the
// oldest one if all are alive).
type acceptQueue struct {
	mu    sync.Mutex
	q     []*conn
	ready chan struct{} // closed and replaced when an entry arrives
}

func (a *acceptQueue) init() { a.ready = make(chan struct{}) }

func (a *acceptQueue) push(c *conn, max int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.q) >= max {
		drop := 0
		for i, old := range a.q {
			if old.dead.Load() {
				drop = i
				break
			}
		}
		log.Debugw("accept queue full: dropping an unaccepted connection", "peer", a.q[drop].id, "alive", a.q[drop].IsAlive())
		a.q = append(a.q[:drop], a.q[drop+1:]...)
	}
	a.q = append(a.q, c)
	close(a.ready)
	a.ready = make(chan struct{})
}

// pop returns the oldest entry, blocking until there is one, ctx ends or stop
// is closed.
func (a *acceptQueue) pop(ctx context.Context, stop <-chan struct{}) (*conn, error) {
	for {
		select {
		case <-stop:
			return nil, context.Canceled
		default:
		}
		a.mu.Lock()
		if len(a.q) > 0 {
			c := a.q[0]
			a.q[0] = nil
			a.q = a.q[1:]
			a.mu.Unlock()
			return c, nil
		}
		ready := a.ready
		a.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stop:
			return nil, context.Canceled
		}
	}
}
