package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PollInterval is how often WaitFor checks its condition.
const PollInterval = 5 * time.Millisecond

// WaitFor calls cond every PollInterval until it returns true, and returns
// nil then, or an error wrapping ctx.Err() once ctx ends. cond runs on the
// caller's goroutine; it should not block.
func WaitFor(ctx context.Context, cond func() bool) error {
	if cond() {
		return nil
	}
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if cond() {
				return nil
			}
			return fmt.Errorf("cluster: condition still false: %w", ctx.Err())
		case <-t.C:
			if cond() {
				return nil
			}
		}
	}
}

// Settled reports whether every two running nodes share exactly one libp2p
// connection, and every running node's manager holds one skipwire connection
// to each other running node. (StreamsBetween checks the streams.)
func (c *Cluster) Settled() bool {
	run := c.RunningNodes()
	for _, i := range run {
		if c.Manager(i).ConnectionCount() != len(run)-1 {
			return false
		}
		for _, j := range run {
			if i != j && c.ConnsBetween(i, j) != 1 {
				return false
			}
		}
	}
	return true
}

// ConnectAll has every running node Connect to every other running node by
// Identifier, all at once (so each pair connects from both sides
// simultaneously), and returns the errors of the calls that failed.
func (c *Cluster) ConnectAll(ctx context.Context) error {
	run := c.RunningNodes()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, i := range run {
		m := c.Manager(i)
		for _, j := range run {
			if i == j {
				continue
			}
			id := c.ID(j)
			wg.Go(func() {
				if _, err := m.Connect(ctx, id); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("cluster: node %d to node %d: %w", i, j, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
