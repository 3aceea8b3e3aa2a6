package session

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// held returns o.Held after checking that every message lies in a chunk,
// or in a buffer of its own.
func held(t *testing.T, o *Out) int {
	t.Helper()
	for i := range o.q.msgs.len() {
		if e := o.q.msgs.at(i); e.own != nil {
			require.False(t, o.inChunk(e.b))
		} else if len(e.b) > 0 {
			require.True(t, o.inChunk(e.b))
		}
	}
	return o.Held()
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
// payload, plus a quarter, plus 2 + maxSpares chunks.
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
			bound := o.PendingBytes() + o.PendingBytes()/4 + (2+maxSpares)*o.q.chunkSize
			require.LessOrEqual(t, held(t, o), bound, "limit %d, %d pending of %d bytes", limit, o.PendingCount(), o.PendingBytes())
		}
		require.NoError(t, o.Ack(o.Sent()))
		o.Trim()
		require.Zero(t, held(t, o), "Trim of an Out with nothing pending")
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
	// Acknowledgements in bursts, each freeing several chunks at once, as
	// when a loaded receiver's ACK comes late and covers more.
	o := NewOut(1 << 20)
	burst := func() {
		for range 3 * o.q.chunkSize / len(msg) {
			o.Add(msg)
		}
		_ = o.Ack(o.Sent())
	}
	for range 10 {
		burst()
	}
	require.Zero(t, testing.AllocsPerRun(10, burst), "acknowledgements of three chunks at a time")
}

// TestStoreStartsSmall: an Out holding a few small messages holds a small
// chunk, not a full one; chunks grow to full size when more is pending, and
// Trim of an Out with nothing pending starts small again.
func TestStoreStartsSmall(t *testing.T) {
	o := NewOut(4 << 20)
	require.Equal(t, maxChunk, o.q.chunkSize)
	o.Add(make([]byte, 100))
	require.Equal(t, minChunk, held(t, o))
	for range 10000 {
		if n := o.Add(make([]byte, 100)); n > 2000 {
			require.NoError(t, o.Ack(n-2000))
		}
	}
	require.Equal(t, maxChunk, o.q.next, "chunks grew to full size")
	require.NoError(t, o.Ack(o.Sent()))
	o.Trim()
	require.Zero(t, held(t, o))
	o.Add(make([]byte, 100))
	require.Equal(t, minChunk, held(t, o), "small again after Trim")
}

// TestLargeClasses checks the sizes of pooled buffers: each holds its
// message, is less than a quarter longer, and has a pool of its own size.
func TestLargeClasses(t *testing.T) {
	sizeOf := map[int]int{}
	for n := 1; n <= 1<<maxLargeBits+1; n += 1 + n/64 {
		i, size := largeClass(n)
		if n <= 1<<(minLargeBits-1) || n > 1<<maxLargeBits {
			require.Equal(t, -1, i, "n %d", n)
			continue
		}
		require.GreaterOrEqual(t, size, n)
		require.Less(t, size-n, n/4+1, "n %d, size %d", n, size)
		require.Less(t, i, len(largePools))
		if s, ok := sizeOf[i]; ok {
			require.Equal(t, s, size, "pool %d", i)
		}
		sizeOf[i] = size
	}
	for _, n := range []int{1<<(minLargeBits-1) + 1, 64 << 10, 1 << maxLargeBits} {
		i, size := largeClass(n)
		require.GreaterOrEqual(t, i, 0)
		require.GreaterOrEqual(t, size, n)
	}
}

// TestLargeReuse: once warmed up, committing and acknowledging 64 KiB
// messages allocates nothing, and the copies are intact.
func TestLargeReuse(t *testing.T) {
	msg := make([]byte, 64<<10)
	o := NewOut(4 << 20)
	step := func() {
		msg[0]++
		n := o.Add(msg)
		require.Equal(t, msg[0], o.q.at(o.q.len() - 1)[0])
		_ = o.Ack(n)
	}
	for range 100 {
		step()
	}
	require.Zero(t, testing.AllocsPerRun(1000, step))
}
