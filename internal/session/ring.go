package session

// ring is a FIFO queue of T on a circular buffer whose length is a power of
// two. It grows by doubling and never shrinks (reset drops it), so a queue
// that holds about the same number of items allocates nothing.
type ring[T any] struct {
	buf  []T
	head int // index of the oldest item
	n    int // items held
}

// minRing is the length of a ring's first buffer.
const minRing = 16

func (r *ring[T]) len() int { return r.n }

// push appends v at the back.
func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// at returns the i-th item from the front; 0 <= i < r.len().
func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

// front returns the oldest item; the ring is not empty.
func (r *ring[T]) front() *T { return &r.buf[r.head] }

// back returns the newest item; the ring is not empty.
func (r *ring[T]) back() *T { return r.at(r.n - 1) }

// pop removes the oldest item, clearing its slot so that nothing it points
// to stays reachable; the ring is not empty.
func (r *ring[T]) pop() {
	var zero T
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
}

// reset empties the ring and drops its buffer.
func (r *ring[T]) reset() { *r = ring[T]{} }

func (r *ring[T]) grow() {
	buf := make([]T, max(minRing, 2*len(r.buf)))
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}
