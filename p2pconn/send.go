package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// Sending.
//
// A yamux stream turns every Write into one frame and one write system call,
// so small messages of concurrent senders are coalesced: the Send that holds
// wlock writes its own frame together with every frame queued by Sends
// waiting for the lock, in one Write, and each of those Sends returns once
// that Write is done. A Send whose ctx ends while its message is still queued
// withdraws it (nothing is sent); once the holder has copied it, the message
// is committed. Large messages are not copied: their Send writes them itself.

// copyLimit is the largest message that is copied into a batch; larger ones
// are written from the caller's buffer.
const copyLimit = 8 << 10

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
	if c.m.metrics == nil {
		return c.send(ctx, msg)
	}
	start := time.Now()
	err := c.send(ctx, msg)
	if err == nil {
		c.m.metrics.sent(len(msg), start)
	}
	return err
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
		// either way its result is in r.done before we release the lock.
		_ = c.lead(ctx, nil, false)
		err := <-r.done
		c.release(r)
		return err
	case <-ctx.Done():
		if c.withdraw(r) {
			return fmt.Errorf("send to %s: %w", c.id.Short(), ctx.Err())
		}
		return fmt.Errorf("send to %s: %w (the message was taken for writing and will still be delivered)", c.id.Short(), ctx.Err())
	case <-c.done:
		c.withdraw(r)
		return c.Err()
	}
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

// lead writes, holding wlock: the debt, every queued message and own (if
// hasOwn), in one Write when own is small. It returns own's result; each
// queued message gets its result in its done channel. If ctx ends mid-write,
// the unwritten rest becomes the debt the next holder writes first, so the
// stream never carries a torn frame; own is left out of the debt if none of
// it was written.
func (c *conn) lead(ctx context.Context, own []byte, hasOwn bool) error {
	defer func() { <-c.wlock }()
	if c.dead.Load() {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		for _, r := range batch {
			r.taken = true
		}
		c.qmu.Unlock()
		for _, r := range batch {
			r.done <- c.Err()
		}
		return c.Err()
	}
	if c.contended.Swap(false) {
		// Others are sending too: let them queue behind us, so one write
		// carries several frames.
		runtime.Gosched()
	}
	c.qmu.Lock()
	batch := c.queue
	c.queue = c.spare[:0]
	for _, r := range batch {
		r.taken = true
	}
	c.qmu.Unlock()

	bp := batchPool.Get().(*[]byte)
	buf := append((*bp)[:0], c.debt...)
	c.debt = nil
	for _, r := range batch {
		buf = appendFrame(buf, r.msg)
	}
	committed := len(buf) // written or carried over whatever happens to ctx
	var large []byte
	if hasOwn {
		if len(own) <= copyLimit {
			buf = appendFrame(buf, own)
		} else {
			var hdr [maxHeaderSize]byte
			buf = append(buf, hdr[:putHeader(hdr[:], len(own))]...)
			large = own
		}
	}

	err := c.write(ctx, buf, large, committed)
	for _, r := range batch {
		r.done <- c.batchResult(err)
	}
	for i := range batch {
		batch[i] = nil
	}
	c.spare = batch[:0]
	if cap(buf) <= maxPooledBatch {
		*bp = buf[:0]
		batchPool.Put(bp)
	}
	return err
}

// batchResult is the result of a queued message: committed unless the
// connection failed.
func (c *conn) batchResult(err error) error {
	if err != nil && c.dead.Load() {
		return c.Err()
	}
	return nil
}

// write writes buf, then large, with ctx bounding the wait. On a cut by ctx,
// what was not written becomes the debt, except for the own frame (everything
// past committed) if none of it went out.
func (c *conn) write(ctx context.Context, buf, large []byte, committed int) error {
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			c.debt = append(c.debt[:0], buf[:committed]...)
			return fmt.Errorf("send to %s: %w", c.id.Short(), err)
		}
		c.watch.begin(ctx, c.s)
		defer c.watch.end(c.s)
	}
	n, err := c.s.Write(buf)
	if err == nil && len(large) > 0 {
		var m int
		m, err = c.s.Write(large)
		n += m
	}
	if err == nil {
		return nil
	}
	if ctx.Err() == nil || !isTimeout(err) {
		c.debt = nil
		c.fail("write", err)
		return c.Err()
	}
	// Cut by ctx: carry the rest over.
	switch {
	case n < committed:
		c.debt = append(c.debt[:0], buf[n:committed]...)
	case n < len(buf):
		c.debt = append(append(c.debt[:0], buf[n:]...), large...)
	case n < len(buf)+len(large):
		c.debt = append(c.debt[:0], large[n-len(buf):]...)
	}
	if n > committed {
		return fmt.Errorf("send to %s: %w (the message was partly written and will still be delivered)", c.id.Short(), ctx.Err())
	}
	return fmt.Errorf("send to %s: %w", c.id.Short(), ctx.Err())
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
	if w.deadline {
		_ = s.SetWriteDeadline(time.Time{})
		w.deadline = false
	}
}

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
