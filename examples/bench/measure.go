package main

import (
	"context"
	"testing"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// cachedConnect times Connect to a peer m is already connected to, and
// counts its allocations.
func cachedConnect(ctx context.Context, m *p2pconn.Manager, to *benchkit.Node, iters int) (nsPerOp, allocs float64, err error) {
	connect := func() {
		if _, e := m.Connect(ctx, to.ID); e != nil && err == nil {
			err = e
		}
	}
	for range 1000 {
		connect()
	}
	start := time.Now()
	for range iters {
		connect()
	}
	nsPerOp = float64(time.Since(start).Nanoseconds()) / float64(iters)
	allocs = testing.AllocsPerRun(1000, connect)
	return nsPerOp, allocs, err
}

// idleVariant is one kind of idle connection the idle measurement opens.
type idleVariant struct {
	key     string
	c       contender
	readers bool // park a goroutine in recv on each end, as a receiving app does
}
