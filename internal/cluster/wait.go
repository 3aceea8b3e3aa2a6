package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// Identifier, both sides of each pair at the same instant, and returns the
// errors of the calls that failed. It runs 4 pairs per CPU (GOMAXPROCS) at a
// time: resolution and secure handshakes are CPU work, and hundreds at once
// on a busy machine exceed the ConnectTimeout.
func (c *Cluster) ConnectAll(ctx context.Context) error {
	run := c.RunningNodes()
	var mu sync.Mutex
	var errs []error
	connect := func(i, j int) {
		if _, err := c.Manager(i).Connect(ctx, c.ID(j)); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("cluster: node %d to node %d: %w", i, j, err))
			mu.Unlock()
		}
	}
	sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for a, i := range run {
		for _, j := range run[a+1:] {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				var pair sync.WaitGroup
				pair.Go(func() { connect(i, j) })
				pair.Go(func() { connect(j, i) })
				pair.Wait()
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
