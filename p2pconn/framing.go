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

	one    [1]byte
	bp     *[]byte // the borrowed buffer, nil when none
	lo, hi int     // unread bytes are (*bp)[lo:hi]

	// inFrame, if set, is true from the first byte of a frame to its last,
	// so that a watchdog can tell a stalled frame from an idle stream.
	inFrame *atomic.Bool
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

// next reads one frame into a fresh slice the caller owns, a user message or
// a control message (ctrl).
func (fr *frameReader) next() (msg []byte, ctrl bool, err error) {
	n, ctrl, err := fr.readLen()
	if err != nil {
		return nil, false, err
	}
	buf := make([]byte, n)
	k := 0
	if fr.bp != nil {
		k = copy(buf, (*fr.bp)[fr.lo:fr.hi])
		fr.lo += k
	}
	fr.release()
	if k < n {
		if _, err := io.ReadFull(fr.r, buf[k:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, false, fmt.Errorf("%w: stream ended inside a frame of %d bytes: %w", errFraming, n, io.ErrUnexpectedEOF)
			}
			return nil, false, err
		}
	}
	if fr.inFrame != nil {
		fr.inFrame.Store(false)
	}
	return buf, ctrl, nil
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
