package testbed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
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

// WaitConverged waits until every member's table is the ideal one. The
// tables of nodes in child processes are those they reported; once those
// match, WaitConverged asks each such node for its table of the moment,
// and waits on if one has changed meanwhile.
func (tb *Testbed) WaitConverged(ctx context.Context) error {
	for {
		if err := cluster.WaitFor(ctx, tb.Converged); err != nil {
			bad, first := tb.Mismatches()
			return fmt.Errorf("testbed: %d tables not repaired: %w; %s", bad, err, first)
		}
		ok, err := tb.convergedNow(ctx)
		if err != nil || ok {
			return err
		}
	}
}

// convergedNow reports whether the tables the running nodes have at the
// moment, asked for, are the ideal ones.
func (tb *Testbed) convergedNow(ctx context.Context) (bool, error) {
	idx := tb.Running()
	members := make([]sg.Peer, len(idx))
	for k, i := range idx {
		members[k] = tb.Node(i).Self()
	}
	ideal := sg.Ideal(members)
	for _, i := range idx {
		m := tb.member(i)
		got, err := m.n.table(ctx)
		if err != nil {
			return false, fmt.Errorf("testbed: table of node %d: %w", i, err)
		}
		if !got.Equal(ideal[m.n.Self().ID]) {
			return false, nil
		}
	}
	return true, nil
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

// A Departure is a node that was killed or left, and when.
type Departure struct {
	ID identity.Identifier
	At time.Time
}

// A DepartureWatch measures how long the skip graph takes to notice
// departures: from each departure to the moment no running node's table
// names the node any more. Start it before the departures.
type DepartureWatch struct {
	tb   *Testbed
	mu   sync.Mutex
	deps []Departure
	seen []time.Duration // by departure; 0 while still named

	stop chan struct{}
	done chan struct{}
}

// WatchDepartures starts a DepartureWatch: it looks at the tables every
// few milliseconds until Wait returns.
func (tb *Testbed) WatchDepartures() *DepartureWatch {
	w := &DepartureWatch{tb: tb, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Add records a departure.
func (w *DepartureWatch) Add(d Departure) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deps = append(w.deps, d)
	w.seen = append(w.seen, 0)
}

func (w *DepartureWatch) loop() {
	defer close(w.done)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		w.mu.Lock()
		deps, seen := slices.Clone(w.deps), slices.Clone(w.seen)
		w.mu.Unlock()
		for k, d := range deps {
			if seen[k] == 0 && !w.tb.Named(d.ID) {
				w.mu.Lock()
				w.seen[k] = max(time.Since(d.At), time.Nanosecond)
				w.mu.Unlock()
			}
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// Wait waits until no running node's table names any departed node, stops
// the watch and returns, for each departure in the order added, how long
// its last mention took to go.
func (w *DepartureWatch) Wait(ctx context.Context) ([]time.Duration, error) {
	defer func() {
		close(w.stop)
		<-w.done
	}()
	err := cluster.WaitFor(ctx, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !slices.Contains(w.seen, 0)
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		return slices.Clone(w.seen), fmt.Errorf("testbed: departed nodes still in tables: %w", err)
	}
	return slices.Clone(w.seen), nil
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
func (tb *Testbed) Connections(ctx context.Context) (Connections, error) {
	v, err := tb.connViews(ctx)
	if err != nil {
		return Connections{}, err
	}
	var cs Connections
	for a := range v.idx {
		cs.PerNode = append(cs.PerNode, v.views[a].Count)
		cs.Neighbours = append(cs.Neighbours, len(tb.Node(v.idx[a]).Table().Neighbours()))
		for b := a + 1; b < len(v.idx); b++ {
			ab, ba := v.between(a, b), v.between(b, a)
			if n := ab.Conns; n > 0 {
				cs.Pairs++
				cs.MaxPerPair = max(cs.MaxPerPair, n)
				if n > 1 {
					cs.Multiple++
				}
			}
			if ab.Skipwire {
				cs.Streams++
				cs.MaxStreams = max(cs.MaxStreams, ab.Streams, ba.Streams)
			}
		}
	}
	return cs, nil
}

// views are the connections of the running nodes idx, as each sees them.
type views struct {
	idx   []int
	ids   []identity.Identifier
	views []connView
}

// between returns what the a-th running node sees of its connections to
// the b-th.
func (v views) between(a, b int) peerConns { return v.views[a].Peers[v.ids[b]] }

// connViews asks every running node for its connections.
func (tb *Testbed) connViews(ctx context.Context) (views, error) {
	v := views{idx: tb.Running()}
	for _, i := range v.idx {
		m := tb.member(i)
		cv, err := m.n.conns(ctx)
		if err != nil {
			return views{}, fmt.Errorf("testbed: connections of node %d: %w", i, err)
		}
		v.ids = append(v.ids, m.n.Self().ID)
		v.views = append(v.views, cv)
	}
	return v, nil
}

// WaitOnePerPair waits until no running pair has more than one libp2p
// connection (the duplicates of simultaneous dials are closed once
// settled) and every pair with a skipwire connection has one skipwire
// stream on each side, and returns the counts then. It looks every 100 ms:
// with hundreds of nodes a look takes a while.
func (tb *Testbed) WaitOnePerPair(ctx context.Context) (Connections, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		cs, err := tb.Connections(ctx)
		if err != nil {
			return cs, err
		}
		if cs.MaxPerPair <= 1 && cs.MaxStreams <= 1 {
			return cs, nil
		}
		select {
		case <-ctx.Done():
			return cs, fmt.Errorf("testbed: connections per pair: up to %d libp2p connections, %d skipwire streams (%s): %w",
				cs.MaxPerPair, cs.MaxStreams, tb.describePairs(), ctx.Err())
		case <-t.C:
		}
	}
}

// describePairs names up to 5 running pairs with more than one libp2p
// connection or skipwire stream.
func (tb *Testbed) describePairs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := tb.connViews(ctx)
	if err != nil {
		return err.Error()
	}
	var out []string
	for a := range v.idx {
		for b := a + 1; b < len(v.idx); b++ {
			ab, ba := v.between(a, b), v.between(b, a)
			if ab.Conns > 1 || ab.Streams > 1 || ba.Streams > 1 {
				out = append(out, fmt.Sprintf("nodes %d-%d: %d connections, %d and %d streams [%s | %s]", v.idx[a], v.idx[b], ab.Conns, ab.Streams, ba.Streams,
					strings.Join(ab.Ages, ", "), strings.Join(ba.Ages, ", ")))
				if len(out) == 5 {
					return strings.Join(out, "; ")
				}
			}
		}
	}
	return strings.Join(out, "; ")
}

// Levels returns the number of levels that hold lists of two or more
// nodes (the tallest table), and the mean height of the members' tables.
func (tb *Testbed) Levels() (levels int, mean float64) {
	idx := tb.Running()
	for _, i := range idx {
		h := tb.Node(i).Table().Height()
		levels = max(levels, h)
		mean += float64(h)
	}
	if len(idx) > 0 {
		mean /= float64(len(idx))
	}
	return levels, mean
}
