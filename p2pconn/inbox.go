package p2pconn

import "sync"

// readAheadLimit is how many bytes of received messages a connection holds
// beyond ReceiveBuffer messages before it stops reading the stream: the
// largest stream flow-control window of libp2p's transports (yamux 16 MiB,
// QUIC 10 MiB). Everything a remote wrote before closing fits in its
// window, so reading that far ahead always reaches the close.
const readAheadLimit = 16 << 20

// inbox holds the messages the reader received and Next has not taken. The
// reader adds while it has room: fewer than max messages, or fewer than
// readAheadLimit bytes. Each message's bytes are reserved in the memory
// account of the stream it came on (rcmgr.go), which take releases.
type inbox struct {
	mu      sync.Mutex
	q       []inMsg
	head    int
	bytes   int
	max     int
	waiting bool // the reader waits for room
	err     error
	over    bool // the reader ended; err says why

	ready chan struct{} // signalled when a message is added
	room  chan struct{} // signalled when the reader waits and Next made room
	ended chan struct{} // closed when the reader ends

	// Set by deliver: messages go to handle instead of the queue, and
	// onEnd learns the end.
	handle func(msg []byte)
	onEnd  func(err error)
}

// inMsg is a received message and the account that covers its bytes (nil
// for none).
type inMsg struct {
	b   []byte
	mem *memAccount
}

func (b *inbox) init(max int) {
	b.max = max
	b.ready = make(chan struct{}, 1)
	b.room = make(chan struct{}, 1)
	b.ended = make(chan struct{})
}

func (b *inbox) hasRoomLocked() bool {
	return len(b.q)-b.head < b.max || b.bytes < readAheadLimit
}

// empty reports whether no message waits for Next.
func (b *inbox) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q) == b.head
}

// full reports whether ReceiveBuffer messages wait for Next: the reader
// reads on only to see the remote's close.
func (b *inbox) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q)-b.head >= b.max
}

// hasRoom reports whether the reader may add a message; if not, it marks the
// reader as waiting for room.
func (b *inbox) hasRoom() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := b.hasRoomLocked()
	b.waiting = !ok
	return ok
}

// push adds a message, whose bytes mem covers, and reports whether there
// is room for another, so the reader takes the lock once per message.
func (b *inbox) push(msg []byte, mem *memAccount) (room bool) {
	b.mu.Lock()
	if b.handle != nil {
		// Under the lock, so that once deliver(nil, nil) returns no
		// message goes to the handler any more. The handler takes the
		// message: its memory is released, as by take.
		b.handle(msg)
		b.mu.Unlock()
		if mem != nil {
			mem.release(len(msg))
		}
		return true
	}
	if b.head > 0 && len(b.q) == cap(b.q) {
		n := copy(b.q, b.q[b.head:])
		clear(b.q[n:])
		b.q, b.head = b.q[:n], 0
	}
	b.q = append(b.q, inMsg{b: msg, mem: mem})
	b.bytes += len(msg)
	room = b.hasRoomLocked()
	b.mu.Unlock()
	signal(b.ready)
	return room
}

// take returns the oldest message (ok), or, once the reader ended and every
// message was taken, the reason. It does not block. The message's memory
// is released.
func (b *inbox) take() (msg []byte, ok bool, err error) {
	b.mu.Lock()
	if b.head == len(b.q) {
		if b.over {
			err = b.err
		}
		b.mu.Unlock()
		return nil, false, err
	}
	m := b.q[b.head]
	b.q[b.head] = inMsg{}
	b.head++
	b.bytes -= len(m.b)
	if b.head == len(b.q) {
		b.q, b.head = b.q[:0], 0
	} else {
		signal(b.ready) // for another Next
	}
	if b.waiting && b.hasRoomLocked() {
		b.waiting = false
		signal(b.room)
	}
	b.mu.Unlock()
	if m.mem != nil {
		m.mem.release(len(m.b))
	}
	return m.b, true, nil
}

// end records that the reader stopped, and why; messages already received
// stay readable.
func (b *inbox) end(err error) {
	b.mu.Lock()
	if b.over {
		b.mu.Unlock()
		return
	}
	b.over, b.err = true, err
	close(b.ended)
	onEnd := b.onEnd
	b.mu.Unlock()
	if onEnd != nil {
		onEnd(err)
	}
}

// deliver hands the queued messages to handle, in order, and every later
// one as the reader adds it; onEnd is called once the reader ended (at once
// if it has). deliver(nil, nil) queues messages again, for Next.
func (b *inbox) deliver(handle func(msg []byte), onEnd func(err error)) {
	b.mu.Lock()
	b.handle, b.onEnd = handle, onEnd
	if handle != nil {
		for b.head < len(b.q) {
			m := b.q[b.head]
			b.q[b.head] = inMsg{}
			b.head++
			b.bytes -= len(m.b)
			handle(m.b)
			if m.mem != nil {
				m.mem.release(len(m.b))
			}
		}
		b.q, b.head = b.q[:0], 0
		if b.waiting {
			b.waiting = false
			signal(b.room)
		}
	}
	over, err := b.over, b.err
	b.mu.Unlock()
	if over && onEnd != nil {
		onEnd(err)
	}
}

// signal wakes the waiter of a one-slot channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
