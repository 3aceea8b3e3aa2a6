package testkit

import (
	"runtime"
	"sync"
)

// Parallel returns how many CPU-heavy operations (dials with their secure
// handshakes, DHT lookups) a test should run at once: 4 per CPU Go may use
// (GOMAXPROCS). Past that they only queue for the CPU, each taking longer,
// until, on a machine busy with other work, they exceed their timeouts.
func Parallel() int {
	return 4 * runtime.GOMAXPROCS(0)
}

// ForEach calls f(i) for every i in [0, n), at most limit calls at a time
// (at least one), and returns once every call has returned.
func ForEach(n, limit int, f func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
