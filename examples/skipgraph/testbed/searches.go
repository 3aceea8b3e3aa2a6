package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
)

// Searches tallies searches and checks each answer against the sorted key
// list of the members. It is safe for concurrent use.
type Searches struct {
	mu sync.Mutex
	// Correct, Wrong and Failed count the searches by outcome: the expected
	// node, another node, or an error (no answer in time, no route).
	Correct, Wrong, Failed int
	Hops                   []int
	Latencies              []time.Duration
	// Examples describes the first wrong or failed searches.
	Examples []string
}

// Total returns how many searches were counted.
func (s *Searches) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Correct + s.Wrong + s.Failed
}

// Snapshot returns a copy of s.
func (s *Searches) Snapshot() Searches {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Searches{Correct: s.Correct, Wrong: s.Wrong, Failed: s.Failed,
		Hops: slices.Clone(s.Hops), Latencies: slices.Clone(s.Latencies), Examples: slices.Clone(s.Examples)}
}

func (s *Searches) example(format string, args ...any) {
	if len(s.Examples) < 5 {
		s.Examples = append(s.Examples, fmt.Sprintf(format, args...))
	}
}

// Search runs one search for a random target from a random running node
// and counts it in s (see SearchFrom).
func (tb *Testbed) Search(ctx context.Context, s *Searches) {
	run := tb.Running()
	if len(run) == 0 {
		return
	}
	tb.SearchFrom(ctx, run[rand.N(len(run))], s)
}

// SearchFrom runs one search for a random target from node i and counts it
// in s. The answer is correct if it is the expected one (sg.Expected) among
// the members when the search started or when it ended, with or without
// the nodes joining at that moment: these differ only while nodes join,
// leave or fail. A search whose origin stopped meanwhile is not counted.
func (tb *Testbed) SearchFrom(ctx context.Context, i int, s *Searches) {
	// Targets a little beyond the key space too, and below every key now
	// and then: the smallest key answers those.
	target := sg.Key(rand.Uint64N(tb.opts.KeySpace + tb.opts.KeySpace/50))
	want := tb.expected(target)
	r, err := tb.Node(i).Search(ctx, target)
	want = append(want, tb.expected(target)...)
	if !slices.Contains(tb.Running(), i) || ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.Failed++
		s.example("from node %d for %d: %v", i, target, err)
	case !slices.Contains(want, r.Node):
		s.Wrong++
		s.example("from node %d for %d: answer %s, want %s", i, target, r.Node, want[len(want)-1])
	default:
		s.Correct++
		s.Hops = append(s.Hops, r.Hops)
		s.Latencies = append(s.Latencies, r.Latency)
	}
}

// expected returns the answers a search for target may give now: among
// the members, and among the members and the nodes joining (the last one
// is the strict answer).
func (tb *Testbed) expected(target sg.Key) []sg.Peer {
	members, joining := tb.membersAndJoining()
	withJoining, _ := sg.Expected(append(members, joining...), target)
	strict, _ := sg.Expected(members, target)
	return []sg.Peer{withJoining, strict}
}

// RunSearches runs count searches, parallel at a time, and calls progress
// (if not nil) after each.
func (tb *Testbed) RunSearches(ctx context.Context, count, parallel int, progress func(done int)) *Searches {
	s := new(Searches)
	next := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range max(parallel, 1) {
		wg.Go(func() {
			for range next {
				tb.Search(ctx, s)
				if progress != nil {
					mu.Lock()
					done++
					progress(done)
					mu.Unlock()
				}
			}
		})
	}
	for range count {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return s
}

// StartSearches runs searches on workers goroutines, each pausing pause
// between two, until the returned function is called: it lets the searches
// under way finish (none is given up, so that no answer arrives to a
// search nobody waits for), and returns the tally.
func (tb *Testbed) StartSearches(workers int, pause time.Duration) (stop func() *Searches) {
	s := new(Searches)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				tb.Search(context.Background(), s)
				select {
				case <-done:
					return
				case <-time.After(pause):
				}
			}
		})
	}
	return func() *Searches {
		close(done)
		wg.Wait()
		return s
	}
}
