package benchkit

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/multiformats/go-varint"
)

// raw libp2p with a combining writer: the coalescing ceiling for concurrent
// senders on one stream. Senders append their frames to a shared buffer;
// the one that finds no write in progress yields once (runtime.Gosched, so
// that the others queue theirs), then writes the whole buffer in one stream
// Write, and again while more accumulated. Each Send returns after the write
// that carried its frame.

type combiningEnd struct {
	*rawEnd // the stream, and Recv

	mu      sync.Mutex
	wrote   *sync.Cond // broadcast after each write; its L is &mu
	pending []byte     // frames not yet written; guarded by mu
	spare   []byte     // the previous write's buffer, for reuse; guarded by mu
	queued  uint64     // frames appended so far; guarded by mu
	written uint64     // frames written so far; guarded by mu
	writing bool       // a Send is writing; guarded by mu
	err     error      // the first write error; guarded by mu
}

func newCombiningEnd(r *rawEnd) *combiningEnd {
	e := &combiningEnd{rawEnd: r}
	e.wrote = sync.NewCond(&e.mu)
	return e
}

func (e *combiningEnd) Send(msg []byte) error {
	var hdr [varint.MaxLenUvarint63]byte
	h := varint.PutUvarint(hdr[:], uint64(len(msg)))
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	e.pending = append(append(e.pending, hdr[:h]...), msg...)
	e.queued++
	mine := e.queued
	if e.writing {
		for e.written < mine && e.err == nil {
			e.wrote.Wait()
		}
		if e.written >= mine {
			return nil
		}
		return e.err
	}
	e.writing = true
	for e.written < e.queued && e.err == nil {
		e.mu.Unlock()
		runtime.Gosched() // let the other senders queue their frames
		e.mu.Lock()
		batch, upto := e.pending, e.queued
		e.pending, e.spare = e.spare[:0], nil
		e.mu.Unlock()
		_, err := e.s.Write(batch)
		e.mu.Lock()
		e.spare = batch[:0]
		e.written = upto
		if err != nil {
			e.err = err
		}
		e.wrote.Broadcast()
	}
	e.writing = false
	if e.written >= mine {
		return nil
	}
	return e.err
}

// OpenRawCombining opens the raw libp2p baseline as OpenRaw does, with a
// combining writer on each end: concurrent Sends append their frames
// (header and payload, copied) to a shared buffer, and the Send that finds
// no write in progress writes what accumulated in one stream Write, after a
// runtime.Gosched that lets the other senders queue, looping while more
// came; every Send returns after the write carrying its frame. Reading is
// OpenRaw's.
func OpenRawCombining(ctx context.Context, from, to *Node) (*Link, time.Duration, error) {
	return openRaw(ctx, from, to, func(e *rawEnd) Endpoint { return newCombiningEnd(e) })
}
