package session

// store keeps copies of the payloads of a queue of messages, oldest first,
// without allocating per message once it has warmed up.
//
// Payloads are copied back to back into chunks of chunkSize bytes. The chunks
// in use form a queue in the order they were filled; the newest one is being
// filled. A chunk is reused once every message in it has been popped: the
// newest one in place, an older one as the spare the next chunk is taken
// from. A message that does not fit in the room left in the newest chunk
// starts a new chunk if it is at most chunkSize/8 bytes long, so a chunk
// wastes less than an eighth of itself at its end; a longer one gets a
// buffer of its own from a pool shared by every store (large.go), less than
// a quarter longer than itself, which goes back to the pool once the
// message is popped.
//
// The memory held is thus at most the bytes of the queued payloads, plus a
// quarter, plus three chunks (the partly popped oldest, the partly filled
// newest and the spare), plus the index of one entry per message.
type store struct {
	chunkSize int
	msgs      ring[entry] // the payloads, oldest first
	chunks    ring[chunk] // the chunks in use, oldest first
	spare     []byte      // a free chunk (capacity chunkSize), or nil
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
	buf  []byte // the bytes used so far; capacity chunkSize
	last uint64 // the number (pushed count) of the last message copied in
}

// Chunk sizes: a quarter of the limit, within these bounds.
const (
	minChunk = 4 << 10
	maxChunk = 64 << 10
)

// noBytes is the copy of every empty message: empty, not nil, like the
// others.
var noBytes = []byte{}

func newStore(limit int) store {
	return store{chunkSize: min(max(limit/4, minChunk), maxChunk)}
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
		buf := s.spare
		s.spare = nil
		if buf == nil {
			buf = make([]byte, 0, s.chunkSize)
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
		if s.spare == nil {
			s.spare = s.chunks.front().buf[:0]
		}
		s.chunks.pop()
	}
}

// trim drops the memory kept for reuse: the spare chunk and, when nothing is
// queued, every buffer.
func (s *store) trim() {
	s.spare = nil
	if s.msgs.len() == 0 {
		s.msgs.reset()
		s.chunks.reset()
	}
}
