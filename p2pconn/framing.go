package p2pconn

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/multiformats/go-varint"
)

// maxHeaderSize is the longest frame header: a uvarint of a value below 2^63.
const maxHeaderSize = varint.MaxLenUvarint63

// errFraming marks errors in the bytes a remote sent: a malformed or
// non-minimal length, a frame over the limit, a frame cut short.
var errFraming = errors.New("framing error")

// readBufSize is the size of the read buffer a busy connection borrows.
const readBufSize = 4 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// frameChunk is the most a reader allocates for a frame before its bytes
// arrive. A frame up to this size gets its whole buffer at once; a longer
// one starts with this much, and its buffer doubles, up to the frame's
// length, each time it is full: a frame in progress holds at most twice
// the bytes the remote has sent of it, or frameChunk, not the length it
// announced.
const frameChunk = 64 << 10

// frameMemory accounts the payload buffers of user frames (control
// frames, at most 64 bytes and never queued, are not counted). reserve is
// called before each allocation, for its size, and may block (push back)
// or fail, which ends the read with its error; release gives back the
// bytes of a frame the reader dropped before returning it.
type frameMemory interface {
	reserve(n int) error
	release(n int)
}

// frameReader reads `uvarint length || payload` frames from a stream.
//
// A buffered reader borrows a buffer from a pool while bytes are flowing, so
// that one stream Read yields several small frames, and returns it whenever
// it has consumed everything at a frame boundary: an idle connection, blocked
// waiting for the first byte of the next frame, holds no buffer. It never
// asks the stream for bytes the current frame does not need, so a complete
// frame is never held back waiting for the next one. An unbuffered reader
// (the handshake's) never reads past the frame at hand, so the stream can be
// handed on.
type frameReader struct {
	r        io.Reader
	max      int
	buffered bool
	ctrl     bool // control frames are allowed (capClose)

	one     [1]byte
	ctrlBuf [maxCtrlSize]byte // a control frame's body, valid until the next frame
	bp      *[]byte           // the borrowed buffer, nil when none
	lo, hi  int               // unread bytes are (*bp)[lo:hi]

	// inFrame, if set, is true from the first byte of a frame to its last,
	// so that a watchdog can tell a stalled frame from an idle stream.
	inFrame *atomic.Bool

	// mem, if set, accounts the buffers of user frames.
	mem frameMemory
}

// ReadByte implements io.ByteReader for varint.ReadUvarint.
func (fr *frameReader) ReadByte() (byte, error) {
	if fr.lo == fr.hi {
		if err := fr.fill(); err != nil {
			return 0, err
		}
	}
	var b byte
	if fr.bp != nil {
		b = (*fr.bp)[fr.lo]
	} else {
		b = fr.one[0]
	}
	fr.lo++
	if fr.inFrame != nil {
		fr.inFrame.Store(true)
	}
	return b, nil
}

// fill reads at least one byte into the buffer, blocking until the stream
// has some. It reads a single byte, into no buffer, when unbuffered or when
// nothing is buffered (the start of a frame, possibly after a long silence).
func (fr *frameReader) fill() error {
	if !fr.buffered || fr.bp == nil {
		for {
			n, err := fr.r.Read(fr.one[:])
			if n == 1 {
				if fr.buffered {
					fr.bp = readBufPool.Get().(*[]byte)
					(*fr.bp)[0] = fr.one[0]
				}
				fr.lo, fr.hi = 0, 1
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	buf := *fr.bp
	if fr.lo == fr.hi {
		fr.lo, fr.hi = 0, 0
	} else if fr.hi == len(buf) {
		fr.hi = copy(buf, buf[fr.lo:fr.hi])
		fr.lo = 0
	}
	for {
		n, err := fr.r.Read(buf[fr.hi:])
		fr.hi += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// release returns the buffer once everything in it is consumed.
func (fr *frameReader) release() {
	if fr.bp != nil && fr.lo == fr.hi {
		readBufPool.Put(fr.bp)
		fr.bp = nil
		fr.lo, fr.hi = 0, 0
	}
}

// readLen reads a frame header: the payload length, and whether it is a
// control frame. It returns io.EOF only when the stream ends cleanly before
// the first byte of a header.
func (fr *frameReader) readLen() (int, bool, error) {
	n, err := varint.ReadUvarint(fr)
	switch {
	case err == nil:
	case errors.Is(err, varint.ErrOverflow), errors.Is(err, varint.ErrNotMinimal):
		return 0, false, fmt.Errorf("%w: frame length: %w", errFraming, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return 0, false, fmt.Errorf("%w: stream ended inside a frame header: %w", errFraming, io.ErrUnexpectedEOF)
	default:
		return 0, false, err
	}
	if fr.ctrl && n > ctrlBase && n <= ctrlBase+maxCtrlSize {
		return int(n - ctrlBase), true, nil
	}
	if n > uint64(fr.max) {
		return 0, false, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", errFraming, n, fr.max)
	}
	return int(n), false, nil
}

// next reads one frame, a user message into a fresh slice the caller owns,
// or a control message (ctrl) into the reader's own buffer, valid until the
// next call. A user frame's buffer is reserved with mem
// before it is allocated; the caller then owns the reservation too.
func (fr *frameReader) next() (msg []byte, ctrl bool, err error) {
	n, ctrl, err := fr.readLen()
	if err != nil {
		return nil, false, err
	}
	if n > frameChunk {
		if msg, err = fr.readLarge(n); err != nil {
			return nil, false, err
		}
		if fr.inFrame != nil {
			fr.inFrame.Store(false)
		}
		return msg, false, nil
	}
	// The common case, kept in line: one buffer of the frame's length.
	if fr.mem != nil && !ctrl && n > 0 {
		if err := fr.mem.reserve(n); err != nil {
			return nil, false, err
		}
	}
	var buf []byte
	if ctrl {
		buf = fr.ctrlBuf[:n] // read at once by the caller, never kept
	} else {
		buf = make([]byte, n)
	}
	k := 0
	if fr.bp != nil {
		k = copy(buf, (*fr.bp)[fr.lo:fr.hi])
		fr.lo += k
	}
	fr.release()
	if k < n {
		if _, err := io.ReadFull(fr.r, buf[k:]); err != nil {
			if fr.mem != nil && !ctrl && n > 0 {
				fr.mem.release(n)
			}
			return nil, false, payloadErr(n, err)
		}
	}
	if fr.inFrame != nil {
		fr.inFrame.Store(false)
	}
	return buf, ctrl, nil
}

// readLarge reads the payload of a user frame of n > frameChunk bytes
// into a buffer that starts at frameChunk bytes and doubles whenever it is
// full, each part reserved with mem before it is allocated, so the memory
// held follows the bytes received.
func (fr *frameReader) readLarge(n int) ([]byte, error) {
	reserved := 0
	grow := func(size int) error {
		if fr.mem != nil {
			if err := fr.mem.reserve(size - reserved); err != nil {
				return err
			}
		}
		reserved = size
		return nil
	}
	fail := func(err error) ([]byte, error) {
		if fr.mem != nil {
			fr.mem.release(reserved)
		}
		return nil, err
	}
	if err := grow(frameChunk); err != nil {
		return nil, err
	}
	buf := make([]byte, frameChunk)
	k := 0
	if fr.bp != nil {
		k = copy(buf, (*fr.bp)[fr.lo:fr.hi])
		fr.lo += k
	}
	fr.release()
	for k < n {
		if k == len(buf) {
			if err := grow(min(2*len(buf), n)); err != nil {
				return fail(err)
			}
			bigger := make([]byte, reserved)
			copy(bigger, buf)
			buf = bigger
		}
		r, err := fr.r.Read(buf[k:])
		k += r
		if err != nil && k < n {
			return fail(payloadErr(n, err))
		}
	}
	return buf, nil
}

// payloadErr is the error of a read that failed inside the payload of a
// frame of n bytes: a stream that ended there is a framing error.
func payloadErr(n int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: stream ended inside a frame of %d bytes: %w", errFraming, n, io.ErrUnexpectedEOF)
	}
	return err
}

// close returns any borrowed buffer; the reader must not be used again.
func (fr *frameReader) close() {
	if fr.bp != nil {
		readBufPool.Put(fr.bp)
		fr.bp = nil
	}
}

// putHeader writes the frame header for a payload of n bytes into b, which must
// hold maxHeaderSize bytes, and returns its length.
func putHeader(b []byte, n int) int {
	return varint.PutUvarint(b, uint64(n))
}
