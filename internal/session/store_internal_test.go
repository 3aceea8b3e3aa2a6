package session

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// held returns the bytes of payload storage o holds: its chunks, its spare
// and the messages stored apart.
func held(o *Out) int {
	n := cap(o.q.spare)
	for i := range o.q.chunks.len() {
		n += cap(o.q.chunks.at(i).buf)
	}
	for i := range o.q.msgs.len() {
		if m := o.q.at(i); len(m) > 0 && !o.inChunk(m) {
			n += cap(m)
		}
	}
	return n
}

// inChunk reports whether m lies in one of o's chunks.
func (o *Out) inChunk(m []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	for i := range o.q.chunks.len() {
		c := o.q.chunks.at(i).buf
		b := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
		if p >= b && p < b+uintptr(cap(c)) {
			return true
		}
	}
	return false
}

// TestStoreMemoryBound adds and acknowledges random messages within the
// limit and checks that the storage never holds more than the pending
// payload, plus an eighth, plus three chunks.
func TestStoreMemoryBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, limit := range []int{1 << 10, 64 << 10, 1 << 20} {
		o := NewOut(limit)
		for range 20000 {
			var n int
			switch k := rng.IntN(10); {
			case k < 6:
				n = rng.IntN(300)
			case k < 9:
				n = rng.IntN(o.q.chunkSize / 4)
			default:
				n = rng.IntN(2 * o.q.chunkSize)
			}
			for !o.Room(n) {
				require.NoError(t, o.Ack(o.Acked()+1+uint64(rng.IntN(o.PendingCount()))))
			}
			o.Add(make([]byte, n))
			bound := o.PendingBytes() + o.PendingBytes()/7 + 3*o.q.chunkSize
			require.LessOrEqual(t, held(o), bound, "limit %d, %d pending of %d bytes", limit, o.PendingCount(), o.PendingBytes())
		}
		require.NoError(t, o.Ack(o.Sent()))
		o.Trim()
		require.Zero(t, held(o), "Trim of an Out with nothing pending")
	}
}

// TestSteadyStateAllocs: once warmed up, committing and acknowledging small
// messages allocates nothing, whether the acknowledgements follow at once
// or lag many messages behind.
func TestSteadyStateAllocs(t *testing.T) {
	msg := make([]byte, 200)
	for _, lag := range []int{0, 1, 100, 1000} {
		o := NewOut(1 << 20)
		step := func() {
			n := o.Add(msg)
			if n > uint64(lag) {
				_ = o.Ack(n - uint64(lag))
			}
		}
		for range 10000 {
			step()
		}
		require.Zero(t, testing.AllocsPerRun(10000, step), "lag %d", lag)
	}
}
