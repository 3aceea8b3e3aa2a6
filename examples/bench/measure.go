package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skipwire/skipwire/p2pconn"
)

// throughputResult is one throughput sample.
type throughputResult struct {
	elapsed time.Duration // from the first send until the last message is received
	writes  float64       // write system calls per message, both ends; 0 where unknown
}

// throughput sends count messages of size bytes from l.a to l.b with senders
// goroutines (count is split between them) and returns the time from the
// first send until l.b has received the last message.
func throughput(l *link, size, senders, count int) (throughputResult, error) {
	got := make(chan error, 1)
	go func() {
		for i := range count {
			msg, err := l.b.recv()
			if err != nil {
				got <- fmt.Errorf("receive %d of %d: %w", i, count, err)
				return
			}
			if len(msg) != size {
				got <- fmt.Errorf("receive %d of %d: %d bytes, want %d", i, count, len(msg), size)
				return
			}
		}
		got <- nil
	}()

	sys0 := syscalls()
	start := time.Now()
	var wg sync.WaitGroup
	sendErrs := make([]error, senders)
	for s := range senders {
		n := count / senders
		if s < count%senders {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, size)
			for range n {
				if err := l.a.send(msg); err != nil {
					sendErrs[s] = fmt.Errorf("send: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(sendErrs...); err != nil {
		_ = l.close() // unblocks the receiver
		return throughputResult{}, errors.Join(err, <-got)
	}
	err := <-got
	res := throughputResult{elapsed: time.Since(start)}
	if sys1 := syscalls(); sys1[1] > 0 {
		res.writes = float64(sys1[1]-sys0[1]) / float64(count)
	}
	return res, err
}

// syscalls returns the read and write system calls the process has made
// (Linux: /proc/self/io), or zeros where that is unknown.
func syscalls() (counts [2]uint64) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return counts
	}
	for line := range strings.Lines(string(data)) {
		for i, key := range []string{"syscr: ", "syscw: "} {
			if v, ok := strings.CutPrefix(line, key); ok {
				counts[i], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return counts
}

// roundTrips makes warm+n request/echo exchanges of size bytes and returns
// the durations of the last n.
func roundTrips(l *link, size, warm, n int) ([]time.Duration, error) {
	echoed := make(chan error, 1)
	go func() {
		for {
			msg, err := l.b.recv()
			if err != nil {
				echoed <- nil // the link was closed
				return
			}
			if err := l.b.send(msg); err != nil {
				echoed <- fmt.Errorf("echo: %w", err)
				return
			}
		}
	}()
	msg := make([]byte, size)
	rtts := make([]time.Duration, 0, n)
	var err error
	for i := range warm + n {
		start := time.Now()
		if err = l.a.send(msg); err != nil {
			err = fmt.Errorf("request %d: %w", i, err)
			break
		}
		var got []byte
		if got, err = l.a.recv(); err != nil {
			err = fmt.Errorf("reply %d: %w", i, err)
			break
		}
		if i >= warm {
			rtts = append(rtts, time.Since(start))
		}
		if len(got) != size {
			err = fmt.Errorf("reply %d: %d bytes, want %d", i, len(got), size)
			break
		}
	}
	err = errors.Join(err, l.close())
	return rtts, errors.Join(err, <-echoed)
}

// cachedConnect times Connect to a peer m is already connected to, and
// counts its allocations.
func cachedConnect(ctx context.Context, m *p2pconn.Manager, to *node, iters int) (nsPerOp, allocs float64, err error) {
	connect := func() {
		if _, e := m.Connect(ctx, to.id); e != nil && err == nil {
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

// memSnapshot is the process's live memory after two garbage collections.
type memSnapshot struct {
	heap       uint64 // live heap bytes
	stack      uint64 // goroutine stack bytes
	goroutines int
}

func snapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// settle waits until the goroutine count stops changing (identify, the
// connection manager and the handshakes' helpers finishing), at most 3 s.
func settle() {
	last, same := runtime.NumGoroutine(), 0
	deadline := time.Now().Add(3 * time.Second)
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}

// idleResult is the cost of one idle connection, both ends together.
type idleResult struct {
	bytes      float64 // live heap + goroutine stacks
	heap       float64
	stack      float64
	goroutines float64
}

// idleVariant is one kind of idle connection the idle measurement opens.
type idleVariant struct {
	key     string
	c       contender
	readers bool // park a goroutine in recv on each end, as a receiving app does
}

// quiesce waits until the live heap is at most target, or, when target is 0,
// until it has stopped shrinking for 1.5 s; at most d either way. libp2p
// lets go of a closed connection's state (yamux session, TLS state) up to a
// few seconds after the close, so a snapshot taken at once would count that
// garbage in the baseline of the next measurement.
func quiesce(target, tolerance uint64, d time.Duration) memSnapshot {
	settle()
	s := snapshot()
	low, lowAt := s.heap, time.Now()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if target > 0 && s.heap <= target || target == 0 && time.Since(lowAt) >= 1500*time.Millisecond {
			break
		}
		time.Sleep(250 * time.Millisecond)
		s = snapshot()
		if s.heap+tolerance < low {
			low, lowAt = s.heap, time.Now()
		}
	}
	return s
}

// idleConns opens a link from center to each peer with v, measures the
// memory they hold, and closes them again. The baseline is taken once the
// heap is down to target, waiting at most wait (see quiesce); it returns the
// target for the next call: this baseline plus a tolerance.
func idleConns(ctx context.Context, center *node, peers []*node, v idleVariant, target uint64, wait time.Duration) (idleResult, uint64, error) {
	tolerance := max(uint64(len(peers))<<10, 256<<10)
	before := quiesce(target, tolerance, wait)
	links := make([]*link, len(peers))
	errs := make([]error, len(peers))
	parallel(len(peers), 8, func(i int) {
		links[i], _, errs[i] = v.c.open(ctx, center, peers[i])
	})
	var readers sync.WaitGroup
	if v.readers {
		for _, l := range links {
			if l == nil {
				continue
			}
			for _, e := range []endpoint{l.a, l.b} {
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						if _, err := e.recv(); err != nil {
							return
						}
					}
				}()
			}
		}
	}
	err := errors.Join(errs...)
	var res idleResult
	if err == nil {
		settle()
		after := snapshot()
		n := float64(len(peers))
		res = idleResult{
			heap:       (float64(after.heap) - float64(before.heap)) / n,
			stack:      (float64(after.stack) - float64(before.stack)) / n,
			goroutines: float64(after.goroutines-before.goroutines) / n,
		}
		res.bytes = res.heap + res.stack
	}
	closeErrs := make([]error, len(links))
	parallel(len(links), 8, func(i int) {
		if links[i] != nil {
			closeErrs[i] = links[i].close()
		}
	})
	readers.Wait()
	return res, before.heap + tolerance, errors.Join(err, errors.Join(closeErrs...))
}

// Summaries of samples.

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the p-th percentile (0 < p <= 100) by the nearest-rank method.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(rank, len(s)-1))]
}
