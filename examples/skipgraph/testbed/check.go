package testbed

import (
	"context"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
)

// pollInterval is how often the waits below look at the tables.
const pollInterval = 2 * time.Millisecond

// Mismatches returns how many members' tables differ from the ones the
// sorted keys and membership vectors give (sg.Ideal), and describes the
// first.
func (tb *Testbed) Mismatches() (int, string) {
	idx := tb.Running()
	members := make([]sg.Peer, len(idx))
	for k, i := range idx {
		members[k] = tb.Node(i).Self()
	}
	ideal := sg.Ideal(members)
	bad, first := 0, ""
	for _, i := range idx {
		n := tb.Node(i)
		got, want := n.Table(), ideal[n.Self().ID]
		if !got.Equal(want) {
			if bad == 0 {
				first = fmt.Sprintf("node %d has\n%swhere the sorted keys give\n%s", i, got, want)
			}
			bad++
		}
	}
	return bad, first
}

// Converged reports whether every member's table is the ideal one.
func (tb *Testbed) Converged() bool {
	bad, _ := tb.Mismatches()
	return bad == 0
}

// WaitConverged waits until every member's table is the ideal one.
func (tb *Testbed) WaitConverged(ctx context.Context) error {
	if err := cluster.WaitFor(ctx, tb.Converged); err != nil {
		bad, first := tb.Mismatches()
		return fmt.Errorf("testbed: %d tables not repaired: %w; %s", bad, err, first)
	}
	return nil
}

// Named reports whether some running node's table names id.
func (tb *Testbed) Named(id identity.Identifier) bool {
	for _, i := range tb.Running() {
		if tb.Node(i).Table().Has(id) {
			return true
		}
	}
	return false
}

// Departures waits until no running node's table names any of ids, and
// returns for each how long after since its last mention went.
func (tb *Testbed) Departures(ctx context.Context, since time.Time, ids []identity.Identifier) ([]time.Duration, error) {
	out := make([]time.Duration, len(ids))
	left := len(ids)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		for k, id := range ids {
			if out[k] == 0 && !tb.Named(id) {
				out[k] = time.Since(since)
				left--
			}
		}
		if left == 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("testbed: %d departed nodes still in tables: %w", left, ctx.Err())
		case <-t.C:
		}
	}
}

// Connections describes the connections of the running nodes.
type Connections struct {
	// PerNode: skipwire connections (ConnectionCount) of each running node.
	PerNode []int
	// Neighbours: distinct table neighbours of each running node, all
	// protected.
	Neighbours []int
	// Pairs: running node pairs with a libp2p connection; MaxPerPair the most
	// libp2p connections one such pair has; Multiple how many pairs have
	// more than one.
	Pairs, MaxPerPair, Multiple int
	// Streams: pairs with a skipwire connection; MaxStreams the most skipwire
	// streams one such pair has, over both sides.
	Streams, MaxStreams int
}

// Connections counts the connections of the running nodes.
func (tb *Testbed) Connections() Connections {
	var cs Connections
	idx := tb.Running()
	for _, i := range idx {
		cs.PerNode = append(cs.PerNode, tb.c.Manager(i).ConnectionCount())
		cs.Neighbours = append(cs.Neighbours, len(tb.Node(i).Table().Neighbours()))
	}
	for a, i := range idx {
		for _, j := range idx[a+1:] {
			if n := tb.c.ConnsBetween(i, j); n > 0 {
				cs.Pairs++
				cs.MaxPerPair = max(cs.MaxPerPair, n)
				if n > 1 {
					cs.Multiple++
				}
			}
			if _, ok := tb.c.Manager(i).GetConnection(tb.c.ID(j)); ok {
				cs.Streams++
				cs.MaxStreams = max(cs.MaxStreams, tb.c.StreamsBetween(i, j), tb.c.StreamsBetween(j, i))
			}
		}
	}
	return cs
}

// WaitOnePerPair waits until no running pair has more than one libp2p
// connection (the duplicates of simultaneous dials are closed once
// settled) and every pair with a skipwire connection has one skipwire
// stream on each side, and returns the counts then.
func (tb *Testbed) WaitOnePerPair(ctx context.Context) (Connections, error) {
	var cs Connections
	err := cluster.WaitFor(ctx, func() bool {
		cs = tb.Connections()
		return cs.MaxPerPair <= 1 && cs.MaxStreams <= 1
	})
	if err != nil {
		return cs, fmt.Errorf("testbed: connections per pair: up to %d libp2p connections, %d skipwire streams: %w", cs.MaxPerPair, cs.MaxStreams, err)
	}
	return cs, nil
}
