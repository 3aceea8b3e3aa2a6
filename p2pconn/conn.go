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
	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/identity"
)

// conn is the libp2p Connection: one settled skipwire stream.
//
// Writers take wlock, a one-slot semaphore, so a Send waiting for another can
// give up when its ctx ends; small messages of concurrent senders go out
// together (send.go). One reader goroutine moves frames from the stream
// to the inbox; it is the only one that reads the stream, and it also
// notices a remote close or a loss while nobody calls Next.
//
// The stream is released (Close) by the last of its two halves to finish:
// the reader, at the end of the stream, and the writer, after the final
// half-close. A loss resets it at once.
type conn struct {
	m       *Manager
	id      identity.Identifier
	s       network.Stream
	addr    string
	inbound bool
	born    time.Time
	sendMax int       // the smaller of both sides' MaxMessageSize
	caps    uint64    // the capabilities both sides announced
	ack     *ackState // acknowledgements (capAck), nil without them
	// replaced: a newer opening from the remote superseded the stream
	// before it settled; it only delivers what it carries.
	replaced bool

	wlock     chan struct{}
	debt      []byte     // committed bytes a cut write left; guarded by wlock
	debtReqs  []*sendReq // queued Sends whose frames are in the debt; guarded by wlock
	flushing  bool       // a flusher is scheduled; guarded by wlock
	qmu       sync.Mutex
	queue     []*sendReq // small messages waiting for the wlock holder; guarded by qmu
	spare     []*sendReq // the other queue buffer; guarded by wlock
	contended atomic.Bool
	watch     ctxWatch

	in       inbox
	received atomic.Uint64 // bytes read, for the health check
	inFrame  atomic.Bool   // the reader is inside a frame
	halves   atomic.Int32  // stream halves not finished yet (reader, writer)
	reset    atomic.Bool   // the stream was reset: nothing more to read

	lastUsed atomic.Int64  // when a Send last committed a message or one arrived (Unix ns)
	closeWhy atomic.Uint32 // the CLOSE reason this side sends before its half-close, 0 for none
	heardWhy atomic.Uint32 // the CLOSE reason the remote sent, 0 if none
	ended    atomic.Bool   // this side ended the connection (Close, idle closing, eviction)

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

// newConn makes the connection of a settled stream: remote is the remote's
// HELLO or ACCEPT, localCaps the capabilities this side announced.
func newConn(m *Manager, id identity.Identifier, s network.Stream, inbound bool, remote handshake, localCaps uint64) *conn {
	sendMax := m.cfg.MaxMessageSize
	if remote.maxSize < uint64(sendMax) {
		sendMax = int(remote.maxSize)
	}
	caps := remote.caps & localCaps
	c := &conn{
		m:        m,
		id:       id,
		s:        s,
		addr:     s.Conn().RemoteMultiaddr().String(),
		inbound:  inbound,
		born:     time.Now(),
		sendMax:  sendMax,
		caps:     caps,
		wlock:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		closing:  make(chan struct{}),
		lastSeen: time.Now(),
	}
	c.lastUsed.Store(c.born.UnixNano())
	c.in.init(m.cfg.ReceiveBuffer)
	if caps&capAck != 0 {
		c.ack = newAckState(m.cfg.ResendBuffer, remote.resend)
	}
	c.halves.Store(2)
	return c
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
	if c.ack != nil {
		c.ack.stop()
		// A connection that ends from the remote's side, or is lost, says
		// which messages the remote never acknowledged; every message sent
		// so far is covered (a local close delivers them all).
		p := c.ack.report()
		if ce, ok := err.(*closeError); ok && !ce.local && !ce.delivers && len(p) > 0 {
			err = &NotDeliveredError{Peer: c.id, Messages: p, Cause: err}
		}
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
	c.reset.Store(true)
	if c.die(&closeError{peer: c.id, reason: reason, lost: true, cause: cause}) {
		_ = c.s.Reset()
	}
}

// supersede ends a connection the remote no longer has (it opened a new one
// from the same process): Sends fail at once, but the reader goes on
// delivering what the remote sent on it before, until the remote's close or
// CloseTimeout.
func (c *conn) supersede() {
	if !c.die(&closeError{peer: c.id, reason: "remote opened a new connection", lost: true}) {
		return
	}
	_ = c.s.SetReadDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	c.m.goroutine(func() { _ = c.finishWrite() })
}

// restarted ends a connection to a process that restarted (a HELLO from a
// new incarnation of the peer arrived on libp2p connection via): Sends fail
// at once and the libp2p connection to the old process is closed.
func (c *conn) restarted(via network.Conn) {
	c.fail("remote restarted", nil)
	if old := c.s.Conn(); old != via {
		_ = old.Close()
	}
}

// Next implements Connection.
func (c *conn) Next(ctx context.Context) ([]byte, error) {
	if c.m.metrics != nil {
		defer c.m.metrics.waited(time.Now())
	}
	for {
		select {
		case <-c.closing:
			return nil, c.closedErr()
		default:
		}
		if msg, ok, err := c.in.take(); ok || err != nil {
			return msg, err
		}
		select {
		case <-c.in.ready:
		case <-c.in.ended:
		case <-ctx.Done():
			return nil, fmt.Errorf("next from %s: %w", c.id.Short(), ctx.Err())
		case <-c.closing:
			return nil, c.closedErr()
		}
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

// readLoop moves frames from the stream to the inbox until the stream ends,
// then records how it ended. While the connection lives, it reads only when
// the inbox has room (which pushes back on the sender through the stream's
// flow control), but the inbox makes room for a stream window's worth of
// bytes beyond ReceiveBuffer messages, so that a remote close, which follows
// everything the remote wrote, is seen even by a receiver that reads nothing.
// Once the connection is dead it reads to the end of the stream without
// waiting: nothing received is lost, and what arrives is bounded by what the
// remote had sent. After a local Close it discards what it reads until the
// remote's half-close, so the remote never sees its writes fail while it is
// still sending.
func (c *conn) readLoop() {
	fr := frameReader{r: countingReader{c.s, &c.received}, max: c.m.cfg.MaxMessageSize, buffered: true, inFrame: &c.inFrame, ctrl: c.caps&(capClose|capAck) != 0}
	defer fr.close()
	room := true
	for {
		if !room && !c.waitRoom() {
			_ = c.s.Reset()
			c.in.end(c.Err())
			return
		}
		msg, ctrl, err := fr.next()
		if err != nil {
			c.readEnded(err)
			return
		}
		if ctrl {
			c.control(msg)
			continue
		}
		c.used()
		c.m.metrics.received(len(msg))
		select {
		case <-c.closing:
			room = true
		default:
			room = c.in.push(msg)
			if c.ack != nil && c.ack.received(c, len(msg)) {
				c.ackSoon()
			}
		}
	}
}

// waitRoom waits until the inbox has room for one more frame, the
// connection dies or it is closed locally (frames are then discarded, so
// there is always room). It returns false if the stream was reset: there is
// nothing more to read.
func (c *conn) waitRoom() bool {
	done := c.done
	for !c.in.hasRoom() {
		select {
		case <-c.in.room:
		case <-c.closing:
			return true
		case <-done:
			done = nil
		}
		if done == nil {
			return !c.reset.Load()
		}
	}
	return true
}

func (c *conn) readEnded(err error) {
	select {
	case <-c.closing:
		// Local close: the remote acknowledged with its half-close, or the
		// close deadline passed.
		c.in.end(c.Err())
		c.releaseHalf()
		return
	default:
	}
	switch {
	case err == io.EOF:
		why := byte(c.heardWhy.Load())
		eof := &closeError{peer: c.id, reason: closeReason(why), left: why == closeLeft,
			delivers: why == closeIdle || why == closeEvicted}
		if c.die(eof) {
			log.Debugw("connection closed by remote", "peer", c.id, "addr", c.addr, "reason", eof.reason)
		}
		// Next ends with how the stream ended (cleanly, also for a
		// replaced connection), or with why this side retired it.
		if c.ended.Load() {
			c.in.end(c.Err())
		} else {
			c.in.end(eof)
		}
		_ = c.finishWrite()
		c.releaseHalf()
		return
	case errors.Is(err, errFraming):
		log.Warnw("closing connection: bad frame from remote", "peer", c.id, "addr", c.addr, "err", err)
		c.m.metrics.frameError("frame")
		c.fail("read", err)
	default:
		c.fail("read", err)
	}
	c.in.end(c.Err())
}

// releaseHalf records that one half of the stream is finished; the second
// releases the stream.
func (c *conn) releaseHalf() {
	if c.halves.Add(-1) == 0 {
		_ = c.s.Close()
	}
}

// finishWrite ends the write half once: it waits up to CloseTimeout for a
// write in progress, then cuts it (its committed rest stays in the debt),
// writes the debt and half-closes. Writing the debt may take as long as the
// remote takes to read it: a drain goroutine does it then, giving up (and
// resetting) only when the remote reads nothing for KeepaliveInterval +
// KeepaliveTimeout. It returns why the half-close failed when it was done
// at once (no debt), else nil; only the first call does anything.
func (c *conn) finishWrite() (err error) {
	c.writeOnce.Do(func() {
		t := time.NewTimer(c.m.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case c.wlock <- struct{}{}:
		case <-t.C:
			log.Debugw("close: a Send is still in progress, cutting it", "peer", c.id)
			c.watch.abort(c.s)
			c.wlock <- struct{}{}
		}
		if len(c.debt) == 0 {
			err = c.closeWrite(nil)
			return
		}
		c.m.goroutine(c.drain)
	})
	return err
}

// drain writes the debt, holding wlock, then half-closes. It gives up when
// the remote reads nothing for KeepaliveInterval + KeepaliveTimeout, or
// CloseTimeout after the manager began to close.
func (c *conn) drain() {
	stall := c.m.cfg.KeepaliveInterval + c.m.cfg.KeepaliveTimeout
	var final atomic.Bool
	stop := context.AfterFunc(c.m.ctx, func() {
		final.Store(true)
		_ = c.s.SetWriteDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	})
	defer stop()
	rest := c.debt
	var err error
	for len(rest) > 0 {
		if !final.Load() {
			_ = c.s.SetWriteDeadline(time.Now().Add(stall))
		}
		var n int
		n, err = c.s.Write(rest)
		rest = rest[n:]
		if err == nil || n == 0 || !isTimeout(err) || final.Load() {
			break
		}
	}
	c.debt = nil
	if err != nil {
		log.Debugw("close: the remote did not read what was sent", "peer", c.id, "err", err)
	}
	_ = c.closeWrite(err)
}

// closeWrite half-closes the stream after the debt was written (or resets it
// if that failed), tells the Sends waiting for the debt, and releases the
// writer's half. The caller holds wlock, which closeWrite releases. It
// returns a write error, if any, as a loss.
func (c *conn) closeWrite(err error) error {
	if err == nil {
		_ = c.s.SetWriteDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
		if why := byte(c.closeWhy.Load()); why != 0 && c.caps&capClose != 0 {
			_, err = c.s.Write(appendControl(nil, ctrlClose, why))
		}
		if err == nil {
			err = c.s.CloseWrite()
		}
	}
	var failed error
	if err != nil {
		c.reset.Store(true)
		_ = c.s.Reset()
		failed = &closeError{peer: c.id, reason: "close", lost: true, cause: err}
		err = c.Err()
	}
	c.notify(c.debtReqs, err)
	c.debtReqs = nil
	c.unlock()
	if c.ended.Load() {
		// Our half-close is out: give the remote CloseTimeout to answer
		// with its own.
		_ = c.s.SetReadDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	}
	c.releaseHalf()
	return failed
}

// Close implements Connection: mark it closed, take it out of the pool, flush
// and half-close, then let the reader drain until the remote's half-close or
// CloseTimeout. The stream is released when both are done.
func (c *conn) Close() (err error) {
	c.closeOnce.Do(func() {
		why := closeApp
		if c.m.ctx.Err() != nil {
			why = closeLeft // the manager is closing: this node leaves
		}
		c.closeWhy.CompareAndSwap(0, uint32(why))
		c.ended.Store(true)
		close(c.closing)
		if c.die(errLocalClose(c.id)) {
			log.Debugw("connection closed", "peer", c.id, "addr", c.addr)
		}
		err = c.finishWrite()
	})
	return err
}

// used records that the connection carried a message now, for idle
// closing and eviction.
func (c *conn) used() { c.lastUsed.Store(time.Now().UnixNano()) }

// control handles a control frame from the remote. Types this version does
// not know are ignored (PROTOCOL.md, "Control frames").
func (c *conn) control(msg []byte) {
	if len(msg) > 0 && msg[0] == ctrlAck && c.ack != nil {
		n, _, err := varint.FromUvarint(msg[1:])
		if err == nil {
			err = c.ack.acked(n)
		}
		if err != nil {
			c.m.metrics.frameError("frame")
			c.fail("read", fmt.Errorf("%w: ACK: %w", errFraming, err))
		}
		return
	}
	if len(msg) == 0 || msg[0] != ctrlClose {
		return
	}
	why := closeApp
	if len(msg) > 1 && msg[1] != 0 {
		why = msg[1]
	}
	c.heardWhy.Store(uint32(why))
}

// retire closes the connection for the manager's policy (idle closing,
// eviction; why says which) if no Send is in progress, and reports whether it
// did. Unlike Close it keeps delivering: the remote's messages that arrive
// until its half-close, which answers ours, stay readable with Next, so
// nothing either side committed is lost. idle also requires that no message
// waits for Next.
func (c *conn) retire(why byte, idle bool) bool {
	select {
	case c.wlock <- struct{}{}:
	default:
		return false // a Send is writing
	}
	c.qmu.Lock()
	quiet := len(c.queue) == 0 && len(c.debt) == 0 && !c.flushing && (!idle || c.in.empty())
	c.qmu.Unlock()
	ok := false
	if quiet {
		c.closeWhy.Store(uint32(why))
		c.ended.Store(true)
		reason := "closed locally: idle"
		if why == closeEvicted {
			reason = "closed locally: evicted to make room"
		}
		ok = c.die(&closeError{peer: c.id, reason: reason, local: true})
	}
	c.unlock()
	if ok {
		log.Debugw("connection retired", "peer", c.id, "addr", c.addr, "why", why)
		c.m.goroutine(func() { _ = c.finishWrite() })
	}
	return ok
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
