package p2pconn

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordMemory is a frameMemory that records what the reader reserves.
type recordMemory struct {
	held, peak int
	calls      int
	refuse     int // refuse a reservation that would take held beyond this (0: never)
}

var errRefused = errors.New("refused")

func (r *recordMemory) reserve(n int) error {
	if r.refuse > 0 && r.held+n > r.refuse {
		return errRefused
	}
	r.calls++
	r.held += n
	r.peak = max(r.peak, r.held)
	return nil
}

func (r *recordMemory) release(n int) { r.held -= n }

// trickle serves b in reads of at most step bytes, then err.
type trickle struct {
	b    []byte
	step int
	err  error
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, t.err
	}
	n := copy(p[:min(len(p), t.step)], t.b)
	t.b = t.b[n:]
	return n, nil
}

func frameOf(payload []byte) []byte {
	var hdr [maxHeaderSize]byte
	return append(hdr[:putHeader(hdr[:], len(payload))], payload...)
}

// TestFrameReaderGrowsBuffer: a frame longer than frameChunk is read whole
// and intact whatever the pieces it arrives in, and the memory reserved for
// it is its length exactly, in steps that follow the bytes received.
func TestFrameReaderGrowsBuffer(t *testing.T) {
	for _, n := range []int{frameChunk + 1, 3*frameChunk - 7, 1 << 20, 4 << 20} {
		for _, step := range []int{1000, 64 << 10, 1 << 20} {
			payload := bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6}, n/7+1)[:n]
			mem := &recordMemory{}
			fr := frameReader{r: &trickle{b: frameOf(payload), step: step, err: io.EOF}, max: 4 << 20, buffered: true, mem: mem}
			msg, ctrl, err := fr.next()
			require.NoError(t, err)
			require.False(t, ctrl)
			require.Equal(t, payload, msg, "%d bytes in reads of %d", n, step)
			require.Equal(t, n, cap(msg), "no byte beyond the frame is held")
			require.Equal(t, n, mem.held, "the reservation covers the message")
			fr.close()
		}
	}
}

// TestFrameReaderStalledFrame: a remote that announces a long frame and
// sends little of it makes the reader hold at most twice what it sent (or
// frameChunk), not the length it announced; when the stream then fails,
// the reservation is given back.
func TestFrameReaderStalledFrame(t *testing.T) {
	const announced = 4 << 20
	for _, sent := range []int{0, 100, frameChunk, frameChunk + 1, 300 << 10, 1 << 20} {
		mem := &recordMemory{}
		in := append(frameOf(make([]byte, announced))[:4], make([]byte, sent)...)
		fr := frameReader{r: &trickle{b: in, step: 4 << 10, err: io.ErrClosedPipe}, max: announced, buffered: true, mem: mem}
		_, _, err := fr.next()
		require.ErrorIs(t, err, io.ErrClosedPipe)
		require.LessOrEqual(t, mem.peak, max(frameChunk, 2*sent), "after %d bytes of a %d-byte frame", sent, announced)
		require.Zero(t, mem.held, "released when the frame is abandoned")
		fr.close()
	}
}

// TestFrameReaderSmallFrames: frames up to frameChunk are reserved once,
// whole; control frames and empty messages not at all.
func TestFrameReaderSmallFrames(t *testing.T) {
	var in []byte
	for _, n := range []int{0, 1, 128, 4 << 10, frameChunk} {
		in = append(in, frameOf(make([]byte, n))...)
	}
	in = append(in, appendControl(nil, ctrlClose, closeApp)...)
	mem := &recordMemory{}
	fr := frameReader{r: bytes.NewReader(in), max: 1 << 20, buffered: true, ctrl: true, mem: mem}
	total := 0
	for _, n := range []int{0, 1, 128, 4 << 10, frameChunk} {
		msg, ctrl, err := fr.next()
		require.NoError(t, err)
		require.False(t, ctrl)
		require.Len(t, msg, n)
		total += n
	}
	_, ctrl, err := fr.next()
	require.NoError(t, err)
	require.True(t, ctrl)
	require.Equal(t, total, mem.held)
	require.Equal(t, 4, mem.calls, "one reservation per non-empty message")
}

// TestFrameReaderReservationRefused: a refused reservation ends the read
// with its error, holding nothing.
func TestFrameReaderReservationRefused(t *testing.T) {
	for _, n := range []int{100, 1 << 20} {
		mem := &recordMemory{refuse: 200 << 10}
		fr := frameReader{r: bytes.NewReader(frameOf(make([]byte, n))), max: 1 << 20, buffered: true, mem: mem}
		_, _, err := fr.next()
		if n <= mem.refuse {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, errRefused)
		require.Zero(t, mem.held)
	}
}
