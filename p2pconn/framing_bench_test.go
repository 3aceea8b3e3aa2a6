package p2pconn

import (
	"fmt"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// loopReader serves the same bytes over and over and counts Read calls.
type loopReader struct {
	b     []byte
	off   int
	reads int
}

func (r *loopReader) Read(p []byte) (int, error) {
	r.reads++
	if r.off == len(r.b) {
		r.off = 0
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// BenchmarkFrameReader measures frameReader.next alone, on an in-memory
// reader: the varint header read a byte at a time, the length check, the
// allocation and the payload read. reads/op is how many Read calls one frame
// takes (on a yamux stream each one takes the stream's locks).
func BenchmarkFrameReader(b *testing.B) {
	for _, size := range []int{128, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var hdr [maxHeaderSize]byte
			frame := append(hdr[:putHeader(hdr[:], size)], make([]byte, size)...)
			r := &loopReader{b: frame}
			fr := frameReader{r: r, max: DefaultMaxMessageSize}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				msg, _, err := fr.next()
				if err != nil || len(msg) != size {
					b.Fatalf("next: %d bytes, %v", len(msg), err)
				}
			}
			b.ReportMetric(float64(r.reads)/float64(b.N), "reads/op")
		})
	}
}

// BenchmarkPutHeader measures writing a frame header.
func BenchmarkPutHeader(b *testing.B) {
	for _, size := range []int{128, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var hdr [maxHeaderSize]byte
			n := 0
			for b.Loop() {
				n += putHeader(hdr[:], size)
			}
			if n == 0 {
				b.Fatal(io.ErrNoProgress)
			}
		})
	}
}

// accountMemory is the reader's frameMemory without a connection: it
// reserves in a memAccount as readerMemory does, minus the waiting.
type accountMemory struct{ a *memAccount }

func (m accountMemory) reserve(n int) error {
	if m.a.cover(n) {
		return nil
	}
	return m.a.reserve(n, network.ReservationPriorityAlways)
}

func (m accountMemory) release(n int) { m.a.release(n) }

// BenchmarkFrameReaderAccounted is BenchmarkFrameReader with each message's
// memory reserved in a scope of a real resource manager (its metrics on,
// as libp2p.New sets it up) and released as Next would take it, for sizes
// up to a few frameChunks: the frames a connection reads.
func BenchmarkFrameReaderAccounted(b *testing.B) {
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.DefaultLimits.AutoScale()))
	if err != nil {
		b.Fatal(err)
	}
	defer rm.Close()
	for _, size := range []int{128, 4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var span network.ResourceScopeSpan
			if err := rm.ViewSystem(func(s network.ResourceScope) (err error) {
				span, err = s.BeginSpan()
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer span.Done()
			var a memAccount
			a.init(span)
			var hdr [maxHeaderSize]byte
			frame := append(hdr[:putHeader(hdr[:], size)], make([]byte, size)...)
			r := &loopReader{b: frame}
			fr := frameReader{r: r, max: DefaultMaxMessageSize, mem: accountMemory{&a}}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				msg, _, err := fr.next()
				if err != nil || len(msg) != size {
					b.Fatalf("next: %d bytes, %v", len(msg), err)
				}
				a.release(len(msg))
			}
			b.ReportMetric(float64(r.reads)/float64(b.N), "reads/op")
		})
	}
}
