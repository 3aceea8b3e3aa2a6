package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// Sending.
//
// A yamux stream turns every Write into one frame and one write system call,
// so small messages of concurrent senders are coalesced: the Send that holds
// wlock writes its own frame together with every frame queued by Sends
// waiting for the lock, in one Write, and each of those Sends returns once
// that Write is done. Large messages are not copied: their Send writes them
// itself.
//
// A Send has two outcomes. It returns nil once its message is committed: its
// frame was taken into a write (copied into a batch, or begun on the stream).
// It returns an error when nothing of its message was or will be sent: its
// ctx ended while the message was still queued (it is withdrawn) or before
// its own write began, or the connection died. A write cut short by its
// writer's ctx, or by Close after CloseTimeout, never tears a frame: the
// committed bytes not yet written become the debt, which the next writer
// writes first and which a flusher goroutine writes by itself at once, so a
// committed message never waits for a later Send or Close.

// copyLimit is the largest message that is copied into a batch; larger ones
// are written from the caller's buffer.
const copyLimit = 8 << 10

// yamuxFrame is the most payload a yamux frame carries (go-yamux's default
// MaxMessageSize, 64 KiB, less its 12-byte header): a stream Write longer
// than that is split into frames of this size, each its own write.
const yamuxFrame = 64<<10 - 12

// maxSpill is the most of a large message's payload copied behind its
// header to save a frame.
const maxSpill = 16 << 10

// maxPooledBatch is the largest batch buffer kept for reuse.
const maxPooledBatch = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// sendReq is a small message queued for the wlock holder.
type sendReq struct {
	msg   []byte
	done  chan error // the result, sent once by the writer that took it
	taken bool       // copied into a batch: it can no longer be withdrawn; guarded by conn.qmu
}

var reqPool = sync.Pool{New: func() any { return &sendReq{done: make(chan error, 1)} }}

// Send implements Connection.
func (c *conn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > c.sendMax {
		return fmt.Errorf("send to %s: %d bytes, limit %d: %w", c.id.Short(), len(msg), c.sendMax, ErrMessageTooLarge)
	}
	if c.dead.Load() {
		return c.Err()
	}
	var start time.Time
	if c.m.metrics != nil {
		start = time.Now()
	}
	if c.ack != nil {
		if err := c.ack.reserve(ctx, c, len(msg)); err != nil {
			return err
		}
	}
	c.senders.Add(1)
	err := c.send(ctx, msg)
	c.senders.Add(-1)
	if err != nil {
		if c.ack != nil {
			c.ack.release(len(msg))
		}
		return err
	}
	c.used()
	if c.m.metrics != nil {
		c.m.metrics.sent(len(msg), start)
	}
	return nil
}

func (c *conn) send(ctx context.Context, msg []byte) error {
	select {
	case c.wlock <- struct{}{}:
		return c.lead(ctx, msg, true)
	default:
	}
	if len(msg) > copyLimit {
		select {
		case c.wlock <- struct{}{}:
			return c.lead(ctx, msg, true)
		case <-ctx.Done():
			return fmt.Errorf("send to %s: %w", c.id.Short(), ctx.Err())
		case <-c.done:
			return c.Err()
		}
	}

	r := reqPool.Get().(*sendReq)
	r.msg, r.taken = msg, false
	c.qmu.Lock()
	c.queue = append(c.queue, r)
	c.qmu.Unlock()
	c.contended.Store(true)

	select {
	case err := <-r.done:
		c.release(r)
		return err
	case c.wlock <- struct{}{}:
		// Write the queue, ours included unless an earlier holder took it;
		// if it did, our result comes from that holder, or from whoever
		// writes the debt it left.
		_ = c.lead(ctx, nil, false)
		select {
		case err := <-r.done:
			c.release(r)
			return err
		case <-ctx.Done():
			return c.abandon(ctx, r)
		}
	case <-ctx.Done():
		return c.abandon(ctx, r)
	case <-c.done:
		if c.withdraw(r) {
			return c.Err()
		}
		// Taken: its writer reports how the write ended.
		err := <-r.done
		c.release(r)
		return err
	}
}

// abandon ends the wait of a Send whose ctx ended: an error if its message
// could still be withdrawn (nothing is sent), else nil, since a taken message
// is committed and skipwire writes it by itself.
func (c *conn) abandon(ctx context.Context, r *sendReq) error {
	if c.withdraw(r) {
		return fmt.Errorf("send to %s: %w", c.id.Short(), ctx.Err())
	}
	return nil
}

// withdraw takes r out of the queue if no writer has taken it yet, and
// recycles it. It reports whether r was withdrawn; a taken r is left to the
// garbage collector, as its writer will still send its result.
func (c *conn) withdraw(r *sendReq) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if r.taken {
		return false
	}
	for i, q := range c.queue {
		if q == r {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			break
		}
	}
	r.msg = nil
	reqPool.Put(r)
	return true
}

func (c *conn) release(r *sendReq) {
	r.msg = nil
	reqPool.Put(r)
}

// takeQueue takes every queued message; they are committed from here on.
func (c *conn) takeQueue() []*sendReq {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	batch := c.queue
	c.queue = c.spare[:0]
	for _, r := range batch {
		r.taken = true
	}
	return batch
}

// lead writes, holding wlock, which it releases: the debt, every queued
// message and own (if hasOwn), in one Write when own is small. It returns
// own's result; each queued message gets its result in its done channel.
func (c *conn) lead(ctx context.Context, own []byte, hasOwn bool) error {
	defer c.unlock()
	if c.dead.Load() {
		// The debt stays for finishWrite; queued messages fail.
		err := c.Err()
		for _, r := range c.takeQueue() {
			r.done <- err
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send to %s: %w", c.id.Short(), err)
	}
	w := c.wire()
	if w == nil {
		return c.commitResuming(own, hasOwn)
	}
	if c.contended.Swap(false) || c.senders.Load() > 1 {
		// Others are sending too: let them queue behind us, so one write
		// carries several frames. Checking only for queued Sends is not
		// enough: a Send whose previous message was just written is on its
		// way back with the next one, and finding wlock free it would write
		// alone (eight senders of 128 B: two frames per write instead of
		// three and a half).
		runtime.Gosched()
	}
	batch := c.takeQueue()
	if (w.budget > 0 || !w.deadline.IsZero()) && (hasOwn || len(batch) > 0) {
		// Only new messages are checked: a debt alone (the flusher) is
		// committed and goes out whatever the limits.
		n := 0
		for _, r := range batch {
			n += maxHeaderSize + len(r.msg)
		}
		if hasOwn {
			n += maxHeaderSize + len(own)
		}
		if err := c.overLimit(w, n); err != nil {
			// Nothing of these messages is sent; the debt, committed,
			// still goes out with the next write.
			c.notifyErr(batch, err)
			c.recycleBatch(batch)
			return err
		}
	}

	bp := batchPool.Get().(*[]byte)
	buf := append((*bp)[:0], c.debt...)
	debtLen := len(buf)
	c.debt = c.debt[:0]
	if c.ack != nil {
		if n, ok := c.ack.take(); ok {
			buf = appendAck(buf, n) // the due acknowledgement rides along
		}
	}
	for _, r := range batch {
		buf = appendFrame(buf, r.msg)
	}
	committed := len(buf) // written or carried over as debt whatever happens
	var large []byte
	if hasOwn {
		if len(own) <= copyLimit {
			buf = appendFrame(buf, own)
		} else {
			var hdr [maxHeaderSize]byte
			buf = append(buf, hdr[:putHeader(hdr[:], len(own))]...)
			// The payload's first bytes go behind the header, so that the
			// rest fills whole yamux frames: a 64 KiB message then takes two
			// frames (and writes) instead of three.
			k := len(own) % yamuxFrame
			if k > maxSpill {
				k = 0
			}
			buf = append(buf, own[:k]...)
			large = own[k:]
		}
	}

	if c.ack != nil && !c.ack.commitBatch(batch, own, hasOwn) {
		// The connection ended (and reported what it had) since the
		// check above: nothing of this write goes out.
		c.debt = append(c.debt, buf[:debtLen]...)
		err := c.Err()
		c.notifyErr(batch, err)
		c.recycle(bp, buf, batch)
		return err
	}
	n, err := c.write(ctx, w, buf, large)
	w.written += uint64(n)
	var ownErr error
	switch {
	case err == nil:
		c.notifyAll(batch, nil)
	case c.cut(ctx, err):
		// Keep the committed rest, own's frame included once begun (or
		// committed already, with acknowledgements).
		ownBegun := n > committed || c.ack != nil && hasOwn
		switch {
		case n < len(buf) && (ownBegun || n < committed):
			end := committed
			if ownBegun {
				end = len(buf)
			}
			c.debt = append(c.debt, buf[n:end]...)
			if ownBegun {
				c.debt = append(c.debt, large...)
			}
		case ownBegun && n < len(buf)+len(large):
			c.debt = append(c.debt, large[n-len(buf):]...)
		}
		if len(c.debt) == 0 {
			c.notifyAll(batch, nil)
		} else {
			c.debtReqs = append(c.debtReqs, batch...)
			c.flushSoon()
		}
		if !ownBegun {
			ownErr = c.cutErr(ctx)
		}
	default:
		c.lose("write", err)
		ownErr = c.Err()
		c.notifyAll(batch, ownErr)
	}
	if c.ack != nil {
		// Committed: if the connection ends, its report covers it.
		ownErr = nil
	}
	c.recycle(bp, buf, batch)
	return ownErr
}

// recycle returns a write's buffers for reuse.
func (c *conn) recycle(bp *[]byte, buf []byte, batch []*sendReq) {
	c.recycleBatch(batch)
	if cap(buf) <= maxPooledBatch {
		*bp = buf[:0]
		batchPool.Put(bp)
	}
}

// recycleBatch keeps batch's array as the next queue buffer. The caller
// holds wlock.
func (c *conn) recycleBatch(batch []*sendReq) {
	for i := range batch {
		batch[i] = nil
	}
	c.spare = batch[:0]
}

// unlock releases wlock.
func (c *conn) unlock() { <-c.wlock }

// notifyAll sends err to the Sends waiting for the debt, which this write
// carried first, and to those of batch.
func (c *conn) notifyAll(batch []*sendReq, err error) {
	c.notify(c.debtReqs, err)
	c.debtReqs = nil
	c.notify(batch, err)
}

// notify sends the result of committed messages to their Sends: err, or nil
// with acknowledgements (if the connection ends, its report covers them).
func (c *conn) notify(reqs []*sendReq, err error) {
	if c.ack != nil {
		err = nil
	}
	c.notifyErr(reqs, err)
}

// notifyErr sends err to each of reqs.
func (c *conn) notifyErr(reqs []*sendReq, err error) {
	for _, r := range reqs {
		r.done <- err
	}
}

// cut reports whether a write error is a cut by the writer's ctx or by Close,
// not a failure of the stream.
func (c *conn) cut(ctx context.Context, err error) bool {
	return isTimeout(err) && (ctx.Err() != nil || c.watch.isAborted())
}

// cutErr is the error of a Send whose write was cut before its frame began.
func (c *conn) cutErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send to %s: %w", c.id.Short(), err)
	}
	return c.Err()
}

// flushSoon starts the flusher that writes the debt by itself, unless one is
// scheduled. The caller holds wlock.
func (c *conn) flushSoon() {
	if c.flushing || c.dead.Load() {
		return
	}
	c.flushing = true
	c.m.goroutine(c.flush)
}

// flush writes the debt (and whatever is queued) as soon as it gets wlock.
// Once the connection is dead, finishWrite owns the debt.
func (c *conn) flush() {
	select {
	case c.wlock <- struct{}{}:
	case <-c.done:
		return
	}
	c.flushing = false
	if len(c.debt) == 0 {
		c.unlock()
		return
	}
	_ = c.lead(context.Background(), nil, false)
}

// write writes buf, then large, on stream w with ctx bounding the wait, and
// returns how many bytes went out.
func (c *conn) write(ctx context.Context, w *wire, buf, large []byte) (int, error) {
	if ctx.Done() != nil {
		c.watch.begin(ctx, w.s)
		defer c.watch.end(w.s)
	}
	n, err := w.s.Write(buf)
	if err == nil && len(large) > 0 {
		var m int
		m, err = w.s.Write(large)
		n += m
	}
	return n, err
}

func appendFrame(b, msg []byte) []byte {
	var hdr [maxHeaderSize]byte
	b = append(b, hdr[:putHeader(hdr[:], len(msg))]...)
	return append(b, msg...)
}

// ctxWatch interrupts a blocked stream write when the writer's ctx ends, by
// setting the stream's write deadline to the past. The registration on a ctx
// (context.AfterFunc) is kept from one write to the next while the writers
// use the same ctx, so a sender looping on one ctx pays two uncontended mutex
// operations per write instead of a registration. close drops it for good
// when the connection dies, so no ctx keeps a dead connection reachable.
type ctxWatch struct {
	mu       sync.Mutex
	ctx      context.Context // the ctx of the write in progress, nil between writes
	watched  context.Context // the ctx the registration is on
	stop     func() bool
	deadline bool // the write deadline is set in the past
	closed   bool
	aborted  atomic.Bool // every write is cut from now on
}

// begin marks a write with ctx as in progress. Only the wlock holder calls it.
func (w *ctxWatch) begin(ctx context.Context, s network.Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.watched != ctx {
		if w.stop != nil {
			w.stop()
		}
		w.watched = ctx
		w.stop = context.AfterFunc(ctx, func() { w.fire(ctx, s) })
	}
	w.ctx = ctx
}

// fire runs when a watched ctx ends: it cuts the write in progress, if that
// write is under this ctx.
func (w *ctxWatch) fire(ctx context.Context, s network.Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == ctx && !w.deadline {
		_ = s.SetWriteDeadline(time.Now())
		w.deadline = true
	}
}

// end marks the write finished and clears a deadline fire set.
func (w *ctxWatch) end(s network.Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx = nil
	if w.deadline && !w.aborted.Load() {
		_ = s.SetWriteDeadline(time.Time{})
		w.deadline = false
	}
}

// abort cuts the write in progress and every later one, for good, by
// setting the stream's write deadline to the past: Close uses it when a write
// outlasts CloseTimeout. The writer that holds the debt afterwards sets its
// own deadlines.
func (w *ctxWatch) abort(s network.Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aborted.Store(true)
	_ = s.SetWriteDeadline(time.Now())
}

// isAborted reports whether abort was called.
func (w *ctxWatch) isAborted() bool { return w.aborted.Load() }

// close drops the registration for good.
func (w *ctxWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.stop != nil {
		w.stop()
		w.stop, w.watched = nil, nil
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
