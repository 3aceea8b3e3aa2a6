package session

import (
	"math/bits"
	"sync"
)

// Buffers for long messages, shared by every store of the process.
//
// A message too long for a store's chunks gets a buffer of its own. Taking
// it from a pool, and giving it back once the message is acknowledged,
// spares a stream of large messages an allocation (zeroed, then collected)
// per message: the copy is all that is left. Buffers come in four sizes per
// power of two, so a buffer is less than a quarter longer than the message
// it holds.

// Bounds of pooled buffer sizes: shorter messages fit in chunks, longer ones
// are rare enough to be allocated (and collected) one by one.
const (
	minLargeBits = 12 // 4 KiB
	maxLargeBits = 24 // 16 MiB
)

// largePools holds one pool per buffer size: index 4*(k-minLargeBits)+j for
// sizes 2^(k-1) + (j+1)*2^(k-3), j = 0..3, that is up to 2^k.
var largePools [4 * (maxLargeBits - minLargeBits + 1)]sync.Pool

// largeClass returns the pool index and the buffer size for a message of n
// bytes, or -1 when n is outside the pooled sizes.
func largeClass(n int) (int, int) {
	if n <= 1<<(minLargeBits-1) || n > 1<<maxLargeBits {
		return -1, n
	}
	k := bits.Len(uint(n - 1)) // 2^(k-1) < n <= 2^k
	step := 1 << (k - 3)
	j := (n - 1 - 1<<(k-1)) / step // 0..3
	return 4*(k-minLargeBits) + j, 1<<(k-1) + (j+1)*step
}

// getLarge returns a buffer of length 0 and capacity at least n, and the
// pool index to give it back to (-1: none).
func getLarge(n int) (*[]byte, int) {
	i, size := largeClass(n)
	if i >= 0 {
		if p, ok := largePools[i].Get().(*[]byte); ok {
			return p, i
		}
	}
	b := make([]byte, 0, size)
	return &b, i
}

// putLarge gives back a buffer getLarge returned with index i.
func putLarge(p *[]byte, i int) {
	if i < 0 {
		return
	}
	*p = (*p)[:0]
	largePools[i].Put(p)
}
