package benchkit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timer is the part of *testing.B the loads drive: ResetTimer just before
// the first timed operation, StopTimer right after the last one. A nil
// Timer is not called.
type Timer interface {
	ResetTimer()
	StopTimer()
}

// Syscalls counts the process's read and write system calls.
type Syscalls struct {
	Reads, Writes uint64
}

// ReadSyscalls returns the system calls the process has made so far (Linux:
// /proc/self/io), or zeros where that is not available.
func ReadSyscalls() Syscalls {
	var s Syscalls
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return s
	}
	counts := [2]*uint64{&s.Reads, &s.Writes}
	for line := range strings.Lines(string(data)) {
		for i, key := range []string{"syscr: ", "syscw: "} {
			if v, ok := strings.CutPrefix(line, key); ok {
				*counts[i], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return s
}

// SyscallRate is system calls per operation over a measurement.
type SyscallRate struct {
	Reads, Writes float64
	// Known is false where the counts were not available; the rates are
	// zero then.
	Known bool
}

// Since returns the system calls made from s0 until now, per op (zeros
// where they are not counted).
func (s0 Syscalls) Since(ops int) SyscallRate {
	s1 := ReadSyscalls()
	if s1.Writes == 0 {
		return SyscallRate{}
	}
	ops = max(1, ops)
	return SyscallRate{
		Reads:  float64(s1.Reads-s0.Reads) / float64(ops),
		Writes: float64(s1.Writes-s0.Writes) / float64(ops),
		Known:  true,
	}
}

// Reporter is the part of *testing.B that Report uses.
type Reporter interface {
	ReportMetric(n float64, unit string)
}

// Report reports r as rsys/op and wsys/op, if known: both ends of a
// connection together when both live in this process. A write system call
// carries one TLS record with one or more yamux frames, so wsys/op below 1
// on a sender means frames were coalesced.
func (r SyscallRate) Report(b Reporter) {
	if !r.Known {
		return
	}
	b.ReportMetric(r.Reads, "rsys/op")
	b.ReportMetric(r.Writes, "wsys/op")
}

// ThroughputResult is one throughput sample.
type ThroughputResult struct {
	// Elapsed runs from the first send until the last message is received.
	Elapsed time.Duration
	// Syscalls are the process's system calls per message, both ends.
	Syscalls SyscallRate
}

// Throughput sends count messages of size bytes from l.A to l.B with
// senders goroutines (count is split between them) and returns the time
// from the first send until l.B has received the last message. t, if not
// nil, is reset just before the first send and stopped once the last
// message is in. A send that fails closes l, so that the receiver stops.
func Throughput(l *Link, size, senders, count int, t Timer) (ThroughputResult, error) {
	got := make(chan error, 1)
	go func() { got <- receive(l.B, size, count) }()

	sys0 := ReadSyscalls()
	if t != nil {
		t.ResetTimer()
	}
	start := time.Now()
	if err := send(l.A, size, senders, count); err != nil {
		_ = l.Close() // unblocks the receiver
		return ThroughputResult{}, errors.Join(err, <-got)
	}
	err := <-got
	res := ThroughputResult{Elapsed: time.Since(start)}
	if t != nil {
		t.StopTimer()
	}
	res.Syscalls = sys0.Since(count)
	return res, err
}

// receive takes count messages of size bytes from e.
func receive(e Endpoint, size, count int) error {
	for i := range count {
		msg, err := e.Recv()
		if err != nil {
			return fmt.Errorf("receive %d of %d: %w", i, count, err)
		}
		if len(msg) != size {
			return fmt.Errorf("receive %d of %d: %d bytes, want %d", i, count, len(msg), size)
		}
	}
	return nil
}

// send sends count messages of size bytes on e from senders goroutines.
func send(e Endpoint, size, senders, count int) error {
	var wg sync.WaitGroup
	errs := make([]error, senders)
	for s := range senders {
		n := count / senders
		if s < count%senders {
			n++
		}
		wg.Go(func() {
			msg := make([]byte, size)
			for range n {
				if err := e.Send(msg); err != nil {
					errs[s] = fmt.Errorf("send: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RoundTripResult is the outcome of RoundTrips.
type RoundTripResult struct {
	// RTTs are the durations of the timed exchanges, in order.
	RTTs []time.Duration
	// Syscalls are the process's system calls per timed exchange, both ends.
	Syscalls SyscallRate
}

// RoundTrips makes warm+n exchanges of a size-byte request from l.A, which
// l.B echoes, and times the last n. t, if not nil, is reset before the
// first timed exchange and stopped after the last. It closes l at the end.
func RoundTrips(l *Link, size, warm, n int, t Timer) (RoundTripResult, error) {
	echoed := make(chan error, 1)
	go func() { echoed <- echo(l.B) }()
	msg := make([]byte, size)
	res := RoundTripResult{RTTs: make([]time.Duration, 0, n)}
	var sys0 Syscalls
	var err error
	for i := range warm + n {
		if i == warm {
			sys0 = ReadSyscalls()
			if t != nil {
				t.ResetTimer()
			}
		}
		start := time.Now()
		if err = l.A.Send(msg); err != nil {
			err = fmt.Errorf("request %d: %w", i, err)
			break
		}
		var got []byte
		if got, err = l.A.Recv(); err != nil {
			err = fmt.Errorf("reply %d: %w", i, err)
			break
		}
		if i >= warm {
			res.RTTs = append(res.RTTs, time.Since(start))
		}
		if len(got) != size {
			err = fmt.Errorf("reply %d: %d bytes, want %d", i, len(got), size)
			break
		}
	}
	if t != nil {
		t.StopTimer()
	}
	res.Syscalls = sys0.Since(n)
	err = errors.Join(err, l.Close())
	return res, errors.Join(err, <-echoed)
}

// echo sends every message e receives back, until a Recv fails (the link
// was closed); it returns the error of a Send that fails.
func echo(e Endpoint) error {
	for {
		msg, err := e.Recv()
		if err != nil {
			return nil
		}
		if err := e.Send(msg); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
	}
}
