package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skipwire/skipwire/identity"
)

// conn is the libp2p Connection: one settled skipwire stream.
//
// Writers take wlock, a one-slot semaphore, so a Send waiting for another can
// give up when its ctx ends; small messages of concurrent senders go out
// together (send.go). One reader goroutine moves frames from the stream
// to the frames channel; it is the only one that reads the stream, and it also
// notices a remote close or a loss while nobody calls Next.
type conn struct {
	m       *Manager
	id      identity.Identifier
	s       network.Stream
	addr    string
	inbound bool
	born    time.Time
	sendMax int // the smaller of both sides' MaxMessageSize

	wlock     chan struct{}
	debt      []byte // the rest of a batch whose write a ctx cut short; guarded by wlock
	qmu       sync.Mutex
	queue     []*sendReq // small messages waiting for the wlock holder; guarded by qmu
	spare     []*sendReq // the other queue buffer; guarded by wlock
	contended atomic.Bool
	watch     ctxWatch

	frames   chan []byte   // closed by the reader when it stops, after readErr is set
	room     chan struct{} // signalled by Next when it takes a frame
	readErr  error
	received atomic.Uint64 // bytes read, for the health check
	inFrame  atomic.Bool   // the reader is inside a frame

	dead      atomic.Bool
	mu        sync.Mutex
	err       error         // why it died; guarded by mu
	done      chan struct{} // closed when it dies
	closing   chan struct{} // closed by a local Close
	closeOnce sync.Once
	writeOnce sync.Once // the final half-close

	// Health-check state, owned by the manager's health loop.
	seen     uint64    // received at the last check
	lastSeen time.Time // when received last changed
	pinging  atomic.Bool
}

var _ Connection = (*conn)(nil)

func newConn(m *Manager, id identity.Identifier, s network.Stream, inbound bool, remoteMax uint64) *conn {
	sendMax := m.cfg.MaxMessageSize
	if remoteMax < uint64(sendMax) {
		sendMax = int(remoteMax)
	}
	return &conn{
		m:        m,
		id:       id,
		s:        s,
		addr:     s.Conn().RemoteMultiaddr().String(),
		inbound:  inbound,
		born:     time.Now(),
		sendMax:  sendMax,
		wlock:    make(chan struct{}, 1),
		frames:   make(chan []byte, m.cfg.ReceiveBuffer),
		room:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		closing:  make(chan struct{}),
		lastSeen: time.Now(),
	}
}

// RemoteAddr implements Connection.
func (c *conn) RemoteAddr() string {
	if c.dead.Load() {
		return ""
	}
	return c.addr
}

// RemoteID implements Connection.
func (c *conn) RemoteID() identity.Identifier { return c.id }

// IsAlive implements Connection.
func (c *conn) IsAlive() bool { return !c.dead.Load() }

// Done implements Connection.
func (c *conn) Done() <-chan struct{} { return c.done }

// Err implements Connection.
func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// String describes the connection for logs.
func (c *conn) String() string {
	dir := "outbound"
	if c.inbound {
		dir = "inbound"
	}
	return fmt.Sprintf("%s connection to %s at %s", dir, c.id.Short(), c.addr)
}

// die records why the connection ended, once, and takes it out of the pool.
// It reports whether this call was the one that killed it.
func (c *conn) die(err error) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.err = err
	c.dead.Store(true)
	close(c.done)
	c.mu.Unlock()
	c.watch.close()
	c.m.metrics.connDown(c.inbound, err)
	c.m.connDied(c, err)
	c.m.publish(Event{Kind: EventDisconnected, Peer: c.id, Inbound: c.inbound, Conn: c, Err: err})
	return true
}

// fail ends the connection as lost and resets the stream.
func (c *conn) fail(reason string, cause error) {
	if c.die(&closeError{peer: c.id, reason: reason, lost: true, cause: cause}) {
		_ = c.s.Reset()
	}
}

// Next implements Connection.
func (c *conn) Next(ctx context.Context) ([]byte, error) {
	if c.m.metrics != nil {
		defer c.m.metrics.waited(time.Now())
	}
	select {
	case <-c.closing:
		return nil, c.closedErr()
	default:
	}
	select {
	case msg, ok := <-c.frames:
		return c.received1(msg, ok)
	default:
	}
	select {
	case msg, ok := <-c.frames:
		return c.received1(msg, ok)
	case <-ctx.Done():
		return nil, fmt.Errorf("next from %s: %w", c.id.Short(), ctx.Err())
	case <-c.closing:
		return nil, c.closedErr()
	}
}

// closedErr is Next's error after a local Close: why the connection died,
// which Close may not have recorded yet.
func (c *conn) closedErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return errLocalClose(c.id)
}

func (c *conn) received1(msg []byte, ok bool) ([]byte, error) {
	if !ok {
		return nil, c.readErr
	}
	select {
	case c.room <- struct{}{}:
	default:
	}
	return msg, nil
}

// readLoop moves frames from the stream to the frames channel until the
// stream ends, then records how it ended. It reads a frame only when the
// channel has room for it, so it never holds a frame it cannot hand over:
// when the connection dies meanwhile, it stops at once and loses nothing
// already received. After a local Close it keeps reading and discarding
// until the remote's half-close or the close deadline, so the remote never
// sees its writes fail while it is still sending.
func (c *conn) readLoop() {
	fr := frameReader{r: countingReader{c.s, &c.received}, max: c.m.cfg.MaxMessageSize, buffered: true, inFrame: &c.inFrame}
	defer fr.close()
	for {
		if !c.waitRoom() {
			c.readErr = c.Err()
			close(c.frames)
			return
		}
		msg, err := fr.next()
		if err != nil {
			c.readEnded(err)
			return
		}
		c.m.metrics.received(len(msg))
		select {
		case <-c.closing:
		default:
			c.frames <- msg // never blocks: waitRoom saw room, and only this goroutine sends
		}
	}
}

// waitRoom waits until the frames channel has room for one more frame, or
// the connection is closed locally (frames are then discarded, so there is
// always room). It returns false if the connection died of another cause
// first: the stream is gone, there is nothing more to read.
func (c *conn) waitRoom() bool {
	for len(c.frames) == cap(c.frames) {
		select {
		case <-c.room:
		case <-c.closing:
			return true
		case <-c.done:
			select {
			case <-c.closing:
				return true
			default:
				return false
			}
		}
	}
	return true
}

func (c *conn) readEnded(err error) {
	defer close(c.frames)
	select {
	case <-c.closing:
		// Local close: the remote acknowledged with its half-close, or the
		// close deadline passed. Our half-close is out, so release the read
		// side only: a reset could make the remote drop frames it has not
		// read yet.
		c.readErr = c.Err()
		_ = c.s.Close()
		return
	default:
	}
	switch {
	case err == io.EOF:
		c.readErr = &closeError{peer: c.id, reason: "closed by remote"}
		if c.die(c.readErr) {
			log.Debugw("connection closed by remote", "peer", c.id, "addr", c.addr)
		}
		c.finishWrite()
		_ = c.s.Close()
		return
	case errors.Is(err, errFraming):
		log.Warnw("closing connection: bad frame from remote", "peer", c.id, "addr", c.addr, "err", err)
		c.m.metrics.frameError("frame")
		c.fail("read", err)
	default:
		c.fail("read", err)
	}
	c.readErr = c.Err()
}

// finishWrite half-closes the stream once: it waits up to CloseTimeout for a
// Send in progress, writes any debt and sends the half-close. If the Send does
// not finish in time, the stream is reset.
func (c *conn) finishWrite() {
	c.writeOnce.Do(func() {
		timeout := c.m.cfg.CloseTimeout
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case c.wlock <- struct{}{}:
		case <-t.C:
			log.Debugw("close: a Send is still in progress, resetting", "peer", c.id)
			_ = c.s.Reset()
			return
		}
		_ = c.s.SetWriteDeadline(time.Now().Add(timeout))
		if len(c.debt) > 0 {
			if _, err := c.s.Write(c.debt); err != nil {
				_ = c.s.Reset()
				return
			}
			c.debt = nil
		}
		_ = c.s.CloseWrite()
	})
}

// Close implements Connection: mark it closed, take it out of the pool, flush
// and half-close, then let the reader drain until the remote's half-close or
// CloseTimeout (it owns the final stream release).
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		if c.die(errLocalClose(c.id)) {
			log.Debugw("connection closed", "peer", c.id, "addr", c.addr)
		}
		c.finishWrite()
		_ = c.s.SetReadDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	})
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (cr countingReader) Read(b []byte) (int, error) {
	n, err := cr.r.Read(b)
	cr.n.Add(uint64(n))
	return n, err
}
