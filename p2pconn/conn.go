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
// half-close. A loss resets it at once. A connection whose session resumes
// (resume.go) runs on one stream after another; between two it has none.
type conn struct {
	m       *Manager
	id      identity.Identifier
	w       atomic.Pointer[wire] // the stream, nil while the session resumes
	addr    string               // the first stream's remote address, for logs
	inbound bool
	born    time.Time
	sendMax int       // the smaller of both sides' MaxMessageSize
	caps    uint64    // the capabilities both sides announced
	ack     *ackState // acknowledgements (capAck), nil without them
	// session is the session id both sides agreed on (0: none), remoteInc
	// the remote's incarnation: a HELLO resumes the session only with both.
	session   uint64
	remoteInc uint64
	susp      *suspension // the resumption in progress; guarded by mu
	// replaced: a newer opening from the remote superseded the stream
	// before it settled; it only delivers what it carries.
	replaced bool

	wlock     chan struct{}
	debt      []byte     // committed bytes a cut write left; guarded by wlock
	debtReqs  []*sendReq // queued Sends whose frames are in the debt; guarded by wlock
	flushing  bool       // a flusher is scheduled; guarded by wlock
	qmu       sync.Mutex
	queue     []*sendReq   // small messages waiting for the wlock holder; guarded by qmu
	spare     []*sendReq   // the other queue buffer; guarded by wlock
	contended atomic.Bool  // a Send queued since the last write began
	senders   atomic.Int32 // Sends between the acknowledgement reserve and their result
	watch     ctxWatch

	in       inbox
	received atomic.Uint64 // bytes read, for the health check
	inFrame  atomic.Bool   // the reader is inside a frame
	limits   readLimits    // MessageRate, and what was logged (ratelimit.go)
	// memLogged: a refused memory reservation was logged (rcmgr.go).
	memLogged atomic.Bool

	lastUsed atomic.Int64  // when a Send last committed a message or one arrived (monoTime)
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

var (
	_ Connection = (*conn)(nil)
	_ Deliverer  = (*conn)(nil)
)

// wire is one stream a connection runs on.
type wire struct {
	s      network.Stream
	addr   string
	born   time.Time
	halves atomic.Int32 // stream halves not finished yet (reader, writer)
	reset  atomic.Bool  // the stream was reset: nothing more to read
	// gone is closed when the connection leaves the stream for another
	// (its session resumes); readerDone when the stream's reader returned.
	gone       chan struct{}
	goneOnce   sync.Once
	readerDone chan struct{}

	// A stream over a circuit relay: what skipwire may write on it (the
	// relay's data limit per direction, less a margin; 0: no limit) and
	// until when (the relay's duration limit, less a margin; zero: none).
	// written counts the bytes written; guarded by conn.wlock.
	budget   uint64
	deadline time.Time
	written  uint64
	limits   string // the relay's limits, for errors

	// mem reserves the memory of the messages read from the stream in
	// its resource-manager scope (rcmgr.go).
	mem memAccount
}

func newWire(s network.Stream) *wire {
	w := &wire{s: s, addr: s.Conn().RemoteMultiaddr().String(), born: time.Now(),
		gone: make(chan struct{}), readerDone: make(chan struct{})}
	w.halves.Store(2)
	w.mem.init(s.Scope())
	w.relayLimits()
	return w
}

// leave abandons the stream: it is reset, and its reader stops without
// ending the connection.
func (w *wire) leave() {
	w.goneOnce.Do(func() {
		close(w.gone)
		w.reset.Store(true)
		_ = w.s.Reset()
	})
}

// left reports whether leave was called.
func (w *wire) left() bool {
	select {
	case <-w.gone:
		return true
	default:
		return false
	}
}

// releaseHalf records that one half of the stream is finished; the second
// releases the stream.
func (w *wire) releaseHalf() {
	if w.halves.Add(-1) == 0 {
		_ = w.s.Close()
	}
}

// wire returns the stream the connection runs on, nil while its session
// resumes.
func (c *conn) wire() *wire { return c.w.Load() }

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
	c.lastUsed.Store(monoTime(c.born))
	c.in.init(m.cfg.ReceiveBuffer)
	c.limits.init(m.cfg)
	c.w.Store(newWire(s))
	if caps&capAck != 0 {
		c.ack = newAckState(m.cfg.ResendBuffer, remote.resend, &m.wg)
		// An ACCEPT names the session; an acceptor sets it from its own.
		c.session, c.remoteInc = remote.session, remote.inc
	}
	return c
}

// RemoteAddr implements Connection.
func (c *conn) RemoteAddr() string {
	if c.dead.Load() {
		return ""
	}
	if w := c.wire(); w != nil {
		return w.addr
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
	susp := c.susp
	c.susp = nil
	c.mu.Unlock()
	if susp != nil {
		// No reader runs while the session resumes: Next ends here.
		c.in.end(err)
	}
	c.watch.close()
	c.m.metrics.connDown(c.inbound, err)
	c.m.connDied(c, err)
	c.m.publish(Event{Kind: EventDisconnected, Peer: c.id, Inbound: c.inbound, Conn: c, Err: err})
	return true
}

// fail ends the connection as lost and resets the stream, without resuming.
func (c *conn) fail(reason string, cause error) {
	w := c.wire()
	if w != nil {
		w.reset.Store(true)
	}
	if c.die(&closeError{peer: c.id, reason: reason, lost: true, cause: cause}) && w != nil {
		_ = w.s.Reset()
	}
}

// lose handles the loss of the stream: the session resumes if it can
// (resume.go), else the connection ends as lost.
func (c *conn) lose(reason string, cause error) {
	if !c.suspend(reason, cause) {
		c.fail(reason, cause)
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
	if w := c.wire(); w != nil {
		_ = w.s.SetReadDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	}
	c.m.goroutine(func() { _ = c.finishWrite() })
}

// restarted ends a connection to a process that restarted (a HELLO from a
// new incarnation of the peer arrived on libp2p connection via): Sends fail
// at once and the libp2p connection to the old process is closed.
func (c *conn) restarted(via network.Conn) {
	w := c.wire()
	c.fail("remote restarted", nil)
	if w != nil {
		if old := w.s.Conn(); old != via {
			_ = old.Close()
		}
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

// Deliver implements Deliverer.
func (c *conn) Deliver(handle func(msg []byte), ended func(err error)) {
	if (handle == nil) != (ended == nil) {
		panic("p2pconn: Deliver: handle and ended must be both nil or both set")
	}
	c.in.deliver(handle, ended)
}

// closedErr is Next's error after a local Close: why the connection died,
// which Close may not have recorded yet.
func (c *conn) closedErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return errLocalClose(c.id)
}

// readLoop moves frames from stream w to the inbox until the stream ends,
// then records how it ended. While the connection lives, it reads only when
// the inbox has room (which pushes back on the sender through the stream's
// flow control), but the inbox makes room for a stream window's worth of
// bytes beyond ReceiveBuffer messages, so that a remote close, which follows
// everything the remote wrote, is seen even by a receiver that reads nothing.
// Once the connection is dead it reads to the end of the stream without
// waiting: nothing received is lost, and what arrives is bounded by what the
// remote had sent. After a local Close it discards what it reads until the
// remote's half-close, so the remote never sees its writes fail while it is
// still sending. When the connection leaves w for another stream, it
// returns without ending anything. It also stops reading while the resource
// manager refuses memory for a frame (rcmgr.go) and while the remote sends
// faster than MessageRate (ratelimit.go).
func (c *conn) readLoop(w *wire) {
	defer close(w.readerDone)
	fr := frameReader{r: countingReader{w.s, &c.received}, max: c.m.cfg.MaxMessageSize, buffered: true, inFrame: &c.inFrame, ctrl: c.caps&(capClose|capAck) != 0,
		mem: readerMemory{c, w}}
	defer fr.close()
	room := true
	for {
		if !room && !c.waitRoom(w) {
			if w.left() {
				return
			}
			_ = w.s.Reset()
			c.in.end(c.Err())
			return
		}
		msg, ctrl, err := fr.next()
		if w.left() {
			// What this stream carried after the session moved on is
			// resent on the next one.
			c.inFrame.Store(false)
			return
		}
		if err != nil {
			c.readEnded(w, err)
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
			w.mem.release(len(msg))
		default:
			// Counted before it is queued: whoever takes it from the
			// queue and answers sends the acknowledgement with the answer.
			due := c.ack != nil && c.ack.received(c, len(msg))
			room = c.in.push(msg, &w.mem)
			if due {
				c.ackSoon()
			}
			c.pace(w)
		}
	}
}

// waitRoom waits until the inbox has room for one more frame, the
// connection dies or it is closed locally (frames are then discarded, so
// there is always room). It returns false if the stream was reset or left:
// there is nothing more to read.
func (c *conn) waitRoom(w *wire) bool {
	done := c.done
	for !c.in.hasRoom() {
		select {
		case <-c.in.room:
		case <-c.closing:
			return true
		case <-w.gone:
			return false
		case <-done:
			done = nil
		}
		if done == nil {
			return !w.reset.Load()
		}
	}
	return true
}

func (c *conn) readEnded(w *wire, err error) {
	select {
	case <-c.closing:
		// Local close: the remote acknowledged with its half-close, or the
		// close deadline passed.
		c.in.end(c.Err())
		w.releaseHalf()
		return
	default:
	}
	if err == io.EOF && c.caps&capClose != 0 && c.heardWhy.Load() == 0 || errors.Is(err, io.ErrUnexpectedEOF) {
		// The stream ended without the remote's CLOSE, or inside a
		// frame: the remote did not end the connection, its libp2p
		// connection went away under it.
		if c.suspend("read", err) {
			return
		}
	}
	switch {
	case err == io.EOF:
		why := byte(c.heardWhy.Load())
		eof := &closeError{peer: c.id, reason: closeReason(why), left: why == closeLeft,
			delivers: why == closeIdle || why == closeEvicted}
		if c.die(eof) {
			log.Debugw("connection closed by remote", "peer", c.id, "addr", w.addr, "reason", eof.reason)
		}
		// Next ends with how the stream ended (cleanly, also for a
		// replaced connection), or with why this side retired it.
		if c.ended.Load() {
			c.in.end(c.Err())
		} else {
			c.in.end(eof)
		}
		_ = c.finishWrite()
		w.releaseHalf()
		return
	case errors.Is(err, errNoMemory):
		log.Warnw("closing connection: no memory for a message", "peer", c.id, "addr", w.addr, "err", err)
		c.fail("read", err)
	case errors.Is(err, errFraming):
		log.Warnw("closing connection: bad frame from remote", "peer", c.id, "addr", w.addr, "err", err)
		c.m.metrics.frameError("frame")
		c.fail("read", err)
	default:
		if c.suspend("read", err) {
			return // the session resumes; Next goes on
		}
		c.fail("read", err)
	}
	c.in.end(c.Err())
}

// finishWrite ends the write half once: it waits up to CloseTimeout for a
// write in progress, then cuts it (its committed rest stays in the debt),
// writes the debt and half-closes. Writing the debt may take as long as the
// remote takes to read it: a drain goroutine does it then, giving up (and
// resetting) only when the remote reads nothing for KeepaliveInterval +
// KeepaliveTimeout. It returns why the half-close failed when it was done
// at once (no debt), else nil; only the first call does anything. A
// connection without a stream (its session was resuming) has nothing to
// finish.
func (c *conn) finishWrite() (err error) {
	c.writeOnce.Do(func() {
		t := time.NewTimer(c.m.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case c.wlock <- struct{}{}:
		case <-t.C:
			log.Debugw("close: a Send is still in progress, cutting it", "peer", c.id)
			if w := c.wire(); w != nil {
				c.watch.abort(w.s)
			}
			c.wlock <- struct{}{}
		}
		w := c.wire()
		if w == nil {
			c.notify(c.debtReqs, c.Err())
			c.debt, c.debtReqs = nil, nil
			c.unlock()
			return
		}
		if len(c.debt) == 0 {
			err = c.closeWrite(w, nil)
			return
		}
		c.m.goroutine(func() { c.drain(w) })
	})
	return err
}

// drain writes the debt, holding wlock, then half-closes. It gives up when
// the remote reads nothing for KeepaliveInterval + KeepaliveTimeout, or
// CloseTimeout after the manager began to close.
func (c *conn) drain(w *wire) {
	stall := c.m.cfg.KeepaliveInterval + c.m.cfg.KeepaliveTimeout
	var final atomic.Bool
	stop := context.AfterFunc(c.m.ctx, func() {
		final.Store(true)
		_ = w.s.SetWriteDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	})
	defer stop()
	rest := c.debt
	var err error
	for len(rest) > 0 {
		if !final.Load() {
			_ = w.s.SetWriteDeadline(time.Now().Add(stall))
		}
		var n int
		n, err = w.s.Write(rest)
		rest = rest[n:]
		if err == nil || n == 0 || !isTimeout(err) || final.Load() {
			break
		}
	}
	c.debt = nil
	if err != nil {
		log.Debugw("close: the remote did not read what was sent", "peer", c.id, "err", err)
	}
	_ = c.closeWrite(w, err)
}

// closeWrite half-closes stream w after the debt was written (or resets it
// if that failed), tells the Sends waiting for the debt, and releases the
// writer's half. The caller holds wlock, which closeWrite releases. It
// returns a write error, if any, as a loss.
func (c *conn) closeWrite(w *wire, err error) error {
	if err == nil {
		_ = w.s.SetWriteDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
		if why := byte(c.closeWhy.Load()); why != 0 && c.caps&capClose != 0 {
			_, err = w.s.Write(appendControl(nil, ctrlClose, why))
		}
		if err == nil {
			err = w.s.CloseWrite()
		}
	}
	var failed error
	if err != nil {
		w.reset.Store(true)
		_ = w.s.Reset()
		failed = &closeError{peer: c.id, reason: "close", lost: true, cause: err}
		err = c.Err()
	}
	c.notify(c.debtReqs, err)
	c.debtReqs = nil
	c.unlock()
	if c.ended.Load() {
		// Our half-close is out: give the remote CloseTimeout to answer
		// with its own.
		_ = w.s.SetReadDeadline(time.Now().Add(c.m.cfg.CloseTimeout))
	}
	w.releaseHalf()
	return failed
}

// Close implements Connection: mark it closed, take it out of the pool, flush
// and half-close, then let the reader drain until the remote's half-close or
// CloseTimeout. The stream is released when both are done. A connection
// whose session is resuming has no stream to close: it ends at once, and
// Close returns the *NotDeliveredError of the messages the remote never
// acknowledged, if any.
func (c *conn) Close() (err error) {
	c.closeOnce.Do(func() {
		why := closeApp
		if c.m.ctx.Err() != nil {
			why = closeLeft // the manager is closing: this node leaves
		}
		c.closeWhy.CompareAndSwap(0, uint32(why))
		c.ended.Store(true)
		close(c.closing)
		if c.resuming() {
			if c.die(&closeError{peer: c.id, reason: "closed locally while the session was resuming", lost: true}) {
				log.Debugw("connection closed while resuming", "peer", c.id)
				if e := c.Err(); errors.Is(e, ErrNotDelivered) {
					err = e
				}
			}
			_ = c.finishWrite()
			return
		}
		if c.die(errLocalClose(c.id)) {
			log.Debugw("connection closed", "peer", c.id, "addr", c.addr)
		}
		err = c.finishWrite()
	})
	return err
}

// used records that the connection carried a message now, for idle
// closing and eviction.
func (c *conn) used() { c.lastUsed.Store(int64(time.Since(clockBase))) }

// clockBase is the origin of monoTime.
var clockBase = time.Now()

// monoTime returns t as nanoseconds since clockBase on the monotonic clock:
// cheaper to read per message than the wall clock (time.Since reads only the
// monotonic one), and idle closing is not moved by steps of the wall clock.
func monoTime(t time.Time) int64 { return int64(t.Sub(clockBase)) }

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
