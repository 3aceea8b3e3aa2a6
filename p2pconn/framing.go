package p2pconn

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/multiformats/go-varint"
)

// maxHeaderSize is the longest frame header: a uvarint of a value below 2^63.
const maxHeaderSize = varint.MaxLenUvarint63

// errFraming marks errors in the bytes a remote sent: a malformed or
// non-minimal length, a frame over the limit, a frame cut short.
var errFraming = errors.New("framing error")

// frameReader reads `uvarint length || payload` frames from a stream without
// buffering beyond the frame at hand, so an idle connection holds no read buffer.
type frameReader struct {
	r   io.Reader
	max int
	b   [1]byte

	// inFrame, if set, is true from the first byte of a frame to its last,
	// so that a watchdog can tell a stalled frame from an idle stream.
	inFrame *atomic.Bool
}

// ReadByte implements io.ByteReader for varint.ReadUvarint.
func (fr *frameReader) ReadByte() (byte, error) {
	for {
		n, err := fr.r.Read(fr.b[:])
		if n == 1 {
			if fr.inFrame != nil {
				fr.inFrame.Store(true)
			}
			return fr.b[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// readLen reads a frame header. It returns io.EOF only when the stream ends
// cleanly before the first byte of a header.
func (fr *frameReader) readLen() (int, error) {
	n, err := varint.ReadUvarint(fr)
	switch {
	case err == nil:
	case errors.Is(err, varint.ErrOverflow), errors.Is(err, varint.ErrNotMinimal):
		return 0, fmt.Errorf("%w: frame length: %w", errFraming, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return 0, fmt.Errorf("%w: stream ended inside a frame header", errFraming)
	default:
		return 0, err
	}
	if n > uint64(fr.max) {
		return 0, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", errFraming, n, fr.max)
	}
	return int(n), nil
}

// next reads one frame into a fresh slice the caller owns.
func (fr *frameReader) next() ([]byte, error) {
	n, err := fr.readLen()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended inside a frame of %d bytes", errFraming, n)
		}
		return nil, err
	}
	if fr.inFrame != nil {
		fr.inFrame.Store(false)
	}
	return buf, nil
}

// putHeader writes the frame header for a payload of n bytes into b, which must
// hold maxHeaderSize bytes, and returns its length.
func putHeader(b []byte, n int) int {
	return varint.PutUvarint(b, uint64(n))
}
