package benchkit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// MemStats is the process's live memory after two garbage collections.
type MemStats struct {
	Heap       uint64 // live heap bytes (HeapAlloc)
	Stack      uint64 // goroutine stack bytes (StackInuse)
	Goroutines int
}

// ReadMem runs the garbage collector twice and returns the live memory.
func ReadMem() MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemStats{Heap: ms.HeapAlloc, Stack: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
}

// Settle waits until the goroutine count has been stable for 100 ms
// (identify, the connection manager and the handshakes' helpers
// finishing), at most limit.
func Settle(limit time.Duration) {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(limit); same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}

// Quiesce settles (at most settle, see Settle), then waits until the live
// heap is at most target, or, when target is 0, until it has stopped
// shrinking by more than tolerance for 1.5 s; at most wait either way.
// libp2p lets go of a closed connection's state (yamux session, TLS state)
// up to a few seconds after the close, so a snapshot taken at once would
// count that garbage in the next measurement's baseline.
func Quiesce(target, tolerance uint64, settle, wait time.Duration) MemStats {
	Settle(settle)
	s := ReadMem()
	low, lowAt := s.Heap, time.Now()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if target > 0 && s.Heap <= target || target == 0 && time.Since(lowAt) >= 1500*time.Millisecond {
			break
		}
		time.Sleep(250 * time.Millisecond)
		s = ReadMem()
		if s.Heap+tolerance < low {
			low, lowAt = s.Heap, time.Now()
		}
	}
	return s
}

// Idle measures what idle connections cost: it opens one link from Center
// to each of Peers, compares the live memory before and after, and closes
// them again.
type Idle struct {
	// Center opens a link to each of Peers.
	Center *Node
	Peers  []*Node
	// Open opens each link.
	Open Opener
	// Readers parks a goroutine in Recv on each end, as a receiving
	// application does. False: no reader.
	Readers bool
	// Workers is how many links are opened, and closed, at a time.
	Workers int
	// Settle bounds each wait for the goroutine count to hold still (see
	// Settle).
	Settle time.Duration
	// Wait bounds the wait for the heap to come down to the target before
	// the baseline is taken (see Quiesce).
	Wait time.Duration
}

// IdleResult is the cost of one idle connection, both ends together (both
// live in this process); kernel socket buffers are not counted.
type IdleResult struct {
	Bytes      float64 // live heap + goroutine stacks
	Heap       float64
	Stack      float64
	Goroutines float64
	// Took is the wall time to open all the links, Workers at a time.
	Took time.Duration
}

// Measure takes the baseline once the heap is down to target (0: once it
// stops shrinking; see Quiesce), opens the links, measures and closes them.
// It returns the target for the next measurement: this baseline plus a
// tolerance of 1 KiB per link (at least 256 KiB).
func (m Idle) Measure(ctx context.Context, target uint64) (IdleResult, uint64, error) {
	n := len(m.Peers)
	tolerance := max(uint64(n)<<10, 256<<10)
	before := Quiesce(target, tolerance, m.Settle, m.Wait)
	links := make([]*Link, n)
	errs := make([]error, n)
	start := time.Now()
	Parallel(n, m.Workers, func(i int) { links[i], _, errs[i] = m.Open(ctx, m.Center, m.Peers[i]) })
	took := time.Since(start)
	var readers sync.WaitGroup
	if m.Readers {
		startReaders(&readers, links)
	}
	err := errors.Join(errs...)
	var res IdleResult
	if err == nil {
		Settle(m.Settle)
		after := ReadMem()
		res = IdleResult{
			Heap:       (float64(after.Heap) - float64(before.Heap)) / float64(n),
			Stack:      (float64(after.Stack) - float64(before.Stack)) / float64(n),
			Goroutines: float64(after.Goroutines-before.Goroutines) / float64(n),
			Took:       took,
		}
		res.Bytes = res.Heap + res.Stack
	}
	closeErrs := make([]error, n)
	Parallel(n, m.Workers, func(i int) {
		if links[i] != nil {
			closeErrs[i] = links[i].Close()
		}
	})
	readers.Wait()
	return res, before.Heap + tolerance, errors.Join(err, errors.Join(closeErrs...))
}

// startReaders parks a goroutine in Recv on each end of each link until the
// link closes.
func startReaders(wg *sync.WaitGroup, links []*Link) {
	for _, l := range links {
		if l == nil {
			continue
		}
		for _, e := range []Endpoint{l.A, l.B} {
			wg.Go(func() {
				for {
					if _, err := e.Recv(); err != nil {
						return
					}
				}
			})
		}
	}
}
