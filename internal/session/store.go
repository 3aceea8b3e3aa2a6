package session

// store keeps copies of the payloads of a queue of messages, oldest first,
// without allocating per message once it has warmed up.
//
// Payloads are copied back to back into chunks. The chunks in use form a
// queue in the order they were filled; the newest one is being filled. A
// chunk is reused once every message in it has been popped: the newest one
// in place, older ones as spares the next chunks are taken from (up to
// maxSpares of them, so that an acknowledgement that frees several chunks at
// once does not make the next ones allocations). New chunks start at
// minChunk bytes and double up to chunkSize, so that a store that holds a
// few small messages holds a small chunk. A message that does not fit in the
// room left in the newest chunk starts a new chunk if it is at most
// chunkSize/8 bytes long, so a full-size chunk wastes less than an eighth of
// itself at its end; a longer one gets a buffer of its own from a pool
// shared by every store (large.go), less than a quarter longer than itself,
// which goes back to the pool once the message is popped.
//
// The memory held is thus at most the bytes of the queued payloads, plus a
// quarter, plus 2 + maxSpares chunks (the partly popped oldest, the partly
// filled newest and the spares), plus the index of one entry per message.
// trim gives back the spares, and everything when nothing is queued.
type store struct {
	chunkSize int
	msgs      ring[entry] // the payloads, oldest first
	chunks    ring[chunk] // the chunks in use, oldest first
	next      int         // capacity of the next chunk allocated
	spares    [][]byte    // free chunks, of capacity next or more when kept; at most maxSpares
	pushed    uint64      // messages pushed so far
	popped    uint64      // messages popped so far
	bytes     int         // payload bytes queued
}

// entry is a queued payload: it aliases a chunk, or a buffer of its own
// (own) from largePools[pool].
type entry struct {
	b    []byte
	own  *[]byte
	pool int
}

// chunk is a buffer that payloads are copied into back to back.
type chunk struct {
	buf  []byte // the bytes used so far; capacity minChunk to chunkSize (or a message's length, if larger)
	last uint64 // the number (pushed count) of the last message copied in
}

// Chunk sizes: a quarter of the limit, within these bounds.
const (
	minChunk = 4 << 10
	maxChunk = 64 << 10
)

// maxSpares bounds the free chunks a store keeps: enough that
// acknowledgements lagging by a few chunks, as under load, do not make new
// chunks allocations.
const maxSpares = 4

// noBytes is the copy of every empty message: empty, not nil, like the
// others.
var noBytes = []byte{}

func newStore(limit int) store {
	return store{chunkSize: min(max(limit/4, minChunk), maxChunk), next: minChunk}
}

func (s *store) len() int { return s.msgs.len() }

// at returns the payload of the i-th queued message.
func (s *store) at(i int) []byte { return s.msgs.at(i).b }

// push queues a copy of msg.
func (s *store) push(msg []byte) {
	s.pushed++
	s.bytes += len(msg)
	s.msgs.push(s.copy(msg))
}

// copy copies msg into the storage and returns the copy, capped so that an
// append to it cannot overwrite its neighbours.
func (s *store) copy(msg []byte) entry {
	if len(msg) == 0 {
		return entry{b: noBytes}
	}
	var c *chunk
	if s.chunks.len() > 0 {
		c = s.chunks.back()
	}
	if c == nil || cap(c.buf)-len(c.buf) < len(msg) {
		if len(msg) > s.chunkSize/8 {
			own, pool := getLarge(len(msg))
			*own = append(*own, msg...)
			return entry{b: (*own)[:len(msg):len(msg)], own: own, pool: pool}
		}
		var buf []byte
		if k := len(s.spares); k > 0 {
			buf, s.spares[k-1] = s.spares[k-1], nil
			s.spares = s.spares[:k-1]
		}
		if cap(buf) < len(msg) {
			buf = make([]byte, 0, max(s.next, len(msg)))
			s.next = min(2*s.next, s.chunkSize)
		}
		s.chunks.push(chunk{buf: buf})
		c = s.chunks.back()
	}
	off := len(c.buf)
	c.buf = append(c.buf, msg...)
	c.last = s.pushed
	return entry{b: c.buf[off:len(c.buf):len(c.buf)]}
}

// pop drops the k oldest messages and recycles the chunks they emptied.
func (s *store) pop(k int) {
	for range k {
		e := s.msgs.front()
		s.bytes -= len(e.b)
		if e.own != nil {
			putLarge(e.own, e.pool)
		}
		s.msgs.pop()
	}
	s.popped += uint64(k)
	for s.chunks.len() > 0 && s.chunks.front().last <= s.popped {
		if s.chunks.len() == 1 {
			// The newest chunk: every message in it is gone, so it is
			// filled again from the start.
			c := s.chunks.front()
			c.buf = c.buf[:0]
			break
		}
		if buf := s.chunks.front().buf; len(s.spares) < maxSpares && cap(buf) >= s.next {
			s.spares = append(s.spares, buf[:0])
		}
		s.chunks.pop()
	}
}

// held returns the bytes of the chunks, the spares and the buffers of the
// messages stored apart.
func (s *store) held() int {
	n := 0
	for _, b := range s.spares {
		n += cap(b)
	}
	for i := range s.chunks.len() {
		n += cap(s.chunks.at(i).buf)
	}
	for i := range s.msgs.len() {
		if e := s.msgs.at(i); e.own != nil {
			n += cap(*e.own)
		}
	}
	return n
}

// trim drops the memory kept for reuse: the spare chunks and, when nothing
// is queued, every buffer (the next chunk is small again).
func (s *store) trim() {
	s.spares = nil
	if s.msgs.len() == 0 {
		s.msgs.reset()
		s.chunks.reset()
		s.next = minChunk
	}
}
