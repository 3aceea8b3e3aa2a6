package p2pconn

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHandshakeBytes pins the examples of PROTOCOL.md.
func TestHandshakeBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    handshake
		hex  string
	}{
		{"hello", handshake{typ: msgHello, maxSize: 4 << 20, nonce: 0x0102030405060708}, "0d 01 80 80 80 02 01 02 03 04 05 06 07 08"},
		{"accept", handshake{typ: msgAccept, maxSize: 4 << 20}, "0d 02 80 80 80 02 00 00 00 00 00 00 00 00"},
		{"confirm", handshake{typ: msgConfirm}, "01 04"},
		{"reject", handshake{typ: msgReject, reason: rejectLimit}, "02 03 02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			require.NoError(t, err)
			require.Equal(t, want, appendHandshake(nil, tc.m))
			got, err := readHandshake(bytes.NewReader(want))
			require.NoError(t, err)
			require.Equal(t, tc.m, got)
		})
	}
}

func TestHandshakeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
	}{
		{"empty stream", ""},
		{"empty message", "00"},
		{"unknown type", "01 09"},
		{"hello cut short", "05 01 80 80 80 02"},
		{"hello zero limit", "0a 01 00 00 00 00 00 00 00 00 01"},
		{"reject without reason", "01 03"},
		{"too long", "41" + strings.Repeat(" 00", 65)},
		{"non-minimal length", "82 00 04"},
		{"truncated frame", "05 01 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			require.NoError(t, err)
			_, err = readHandshake(bytes.NewReader(b))
			require.ErrorIs(t, err, errFraming)
		})
	}
}

func TestHandshakeIgnoresTrailingFields(t *testing.T) {
	b := appendHandshake(nil, handshake{typ: msgReject, reason: rejectClosing})
	b[0]++ // one more byte in the payload
	b = append(b, 0xff)
	got, err := readHandshake(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, handshake{typ: msgReject, reason: rejectClosing}, got)
}

// TestHandshakeSizeLimit pins PROTOCOL.md ("Handshake"): the 64-byte limit
// counts the payload, not the length prefix, and a receiver does not refuse
// a zero nonce.
func TestHandshakeSizeLimit(t *testing.T) {
	body := append([]byte{msgReject, rejectLimit}, make([]byte, 62)...)
	got, err := readHandshake(bytes.NewReader(append([]byte{64}, body...)))
	require.NoError(t, err, "a 64-byte payload, 65 bytes with its length")
	require.Equal(t, handshake{typ: msgReject, reason: rejectLimit}, got)

	_, err = readHandshake(bytes.NewReader(append([]byte{65}, append(body, 0)...)))
	require.ErrorIs(t, err, errFraming, "a 65-byte payload")

	hello := handshake{typ: msgHello, maxSize: 4 << 20}
	got, err = readHandshake(bytes.NewReader(appendHandshake(nil, hello)))
	require.NoError(t, err, "a zero nonce")
	require.Equal(t, hello, got)
}

func TestFrameReader(t *testing.T) {
	var buf bytes.Buffer
	msgs := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{7}, 300), bytes.Repeat([]byte{9}, 1<<16)}
	for _, m := range msgs {
		var hdr [maxHeaderSize]byte
		buf.Write(hdr[:putHeader(hdr[:], len(m))])
		buf.Write(m)
	}
	fr := frameReader{r: &buf, max: 1 << 16}
	for _, want := range msgs {
		got, _, err := fr.next()
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, _, err := fr.next()
	require.Equal(t, io.EOF, err, "a stream ending at a frame boundary is a clean EOF")

	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"over the limit", []byte{0x81, 0x80, 0x04}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"non-minimal", []byte{0x80, 0x00}},
		{"header cut", []byte{0x80}},
		{"payload cut", []byte{0x05, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := frameReader{r: bytes.NewReader(tc.in), max: 1 << 16}
			_, _, err := fr.next()
			require.True(t, errors.Is(err, errFraming), "err = %v", err)
		})
	}
}

// TestBufferedFrameReaderNeverWaitsForMore: a complete frame is returned
// without waiting for bytes the stream has not sent yet, and the buffer goes
// back to the pool at each frame boundary.
func TestBufferedFrameReaderNeverWaitsForMore(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	fr := frameReader{r: pr, max: 1 << 16, buffered: true}
	defer fr.close()
	got := make(chan []byte)
	go func() {
		for {
			msg, _, err := fr.next()
			if err != nil {
				close(got)
				return
			}
			got <- msg
		}
	}()
	for _, msg := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 10000)} {
		var hdr [maxHeaderSize]byte
		go func() {
			_, _ = pw.Write(append(hdr[:putHeader(hdr[:], len(msg))], msg...))
		}()
		select {
		case m := <-got:
			require.Equal(t, msg, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("frame of %d bytes held back", len(msg))
		}
	}
	require.NoError(t, pw.Close())
	_, open := <-got
	require.False(t, open)
}

// TestHandshakeExtension: version-2 fields round-trip, unknown keys are
// skipped, malformed known ones are framing errors, and a version-1 reader's
// view (the fields before them) is unchanged.
func TestHandshakeExtension(t *testing.T) {
	m := handshake{typ: msgHello, maxSize: 4 << 20, nonce: 0x0102030405060708, ext: true, inc: 0x1112131415161718, seq: 300, caps: 1}
	b := appendHandshake(nil, m)
	require.LessOrEqual(t, len(b)-1, maxHandshakeSize)
	require.Equal(t, "0d01808080020102030405060708", hex.EncodeToString(append([]byte{0x0d}, b[1:14]...)))
	require.Equal(t, "01081112131415161718"+"0202ac02"+"030101", hex.EncodeToString(b[14:]))
	got, err := readHandshake(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, m, got)

	unknown := append(b[:len(b):len(b)], 0x09, 0x02, 0xaa, 0xbb)
	unknown[0] += 4
	got, err = readHandshake(bytes.NewReader(unknown))
	require.NoError(t, err)
	require.Equal(t, m, got)

	onlyInc := appendHandshake(nil, handshake{typ: msgAccept, maxSize: 1})
	onlyInc = append(onlyInc, 0x01, 0x08, 1, 2, 3, 4, 5, 6, 7, 8)
	onlyInc[0] += 10
	got, err = readHandshake(bytes.NewReader(onlyInc))
	require.NoError(t, err)
	require.False(t, got.ext, "version 2 needs both the incarnation and the sequence number")

	for name, ext := range map[string][]byte{
		"cut short":        {0x01, 0x08, 1, 2},
		"zero incarnation": {0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 0},
		"bad seq":          {0x02, 0x02, 0x80, 0x80},
	} {
		b := appendHandshake(nil, handshake{typ: msgHello, maxSize: 1, nonce: 1})
		b = append(b, ext...)
		b[0] += byte(len(ext))
		_, err := readHandshake(bytes.NewReader(b))
		require.ErrorIs(t, err, errFraming, name)
	}
}

// TestControlFrames pins the CLOSE example of PROTOCOL.md and checks that a
// reader tells control frames from messages only where the close feature
// was negotiated.
func TestControlFrames(t *testing.T) {
	closeLeftFrame := appendControl(nil, ctrlClose, closeLeft)
	require.Equal(t, "828080801001"+"04", hex.EncodeToString(closeLeftFrame))

	var stream []byte
	stream = appendFrame(stream, []byte("before"))
	stream = append(stream, closeLeftFrame...)
	stream = appendFrame(stream, nil)

	fr := frameReader{r: bytes.NewReader(stream), max: 1 << 20, ctrl: true}
	msg, ctrl, err := fr.next()
	require.NoError(t, err)
	require.False(t, ctrl)
	require.Equal(t, "before", string(msg))
	msg, ctrl, err = fr.next()
	require.NoError(t, err)
	require.True(t, ctrl)
	require.Equal(t, []byte{ctrlClose, closeLeft}, msg)
	msg, ctrl, err = fr.next()
	require.NoError(t, err)
	require.False(t, ctrl)
	require.Empty(t, msg)

	// Without the feature, a control frame is a frame over the limit.
	fr = frameReader{r: bytes.NewReader(closeLeftFrame), max: MaxMessageSizeLimit}
	_, _, err = fr.next()
	require.ErrorIs(t, err, errFraming)

	// A control frame longer than 64 bytes is a frame over the limit too.
	long := appendControl(nil, bytes.Repeat([]byte{ctrlClose}, maxCtrlSize+1)...)
	fr = frameReader{r: bytes.NewReader(long), max: MaxMessageSizeLimit, ctrl: true}
	_, _, err = fr.next()
	require.ErrorIs(t, err, errFraming)
}

// TestCapsNegotiated: a version-2 node announces the close feature; the
// caps field round-trips through HELLO.
func TestCapsNegotiated(t *testing.T) {
	h := handshake{typ: msgHello, maxSize: 1 << 20, nonce: 9, ext: true, inc: 7, seq: 1, caps: capsSupported}
	frame := appendHandshake(nil, h)
	got, err := readHandshake(bytes.NewReader(frame))
	require.NoError(t, err)
	require.Equal(t, capClose, got.caps&capClose)
}

// TestAckFrameBytes pins the ACK example of PROTOCOL.md.
func TestAckFrameBytes(t *testing.T) {
	require.Equal(t, "83808080100"+"2ac02", hex.EncodeToString(appendAck(nil, 300)))
}

// TestSessionField pins the session example of PROTOCOL.md ("Resumption")
// and checks that the largest version-2 HELLO fits the 64-byte limit.
func TestSessionField(t *testing.T) {
	h := handshake{typ: msgHello, maxSize: 4 << 20, nonce: 0x0102030405060708, ext: true, inc: 0x1112131415161718, seq: 300,
		caps: capClose | capAck, resend: 4 << 20, session: 0x2122232425262728, count: 1000, hasSession: true}
	want := "30 01 80 80 80 02 01 02 03 04 05 06 07 08" +
		" 01 08 11 12 13 14 15 16 17 18" +
		" 02 02 ac 02" +
		" 03 01 03" +
		" 04 04 80 80 80 02" +
		" 05 0a 21 22 23 24 25 26 27 28 e8 07"
	b, err := hex.DecodeString(strings.ReplaceAll(want, " ", ""))
	require.NoError(t, err)
	require.Equal(t, b, appendHandshake(nil, h))
	got, err := readHandshake(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, h, got)

	// A new session: id 0 in HELLO.
	h.session, h.count = 0, 0
	got, err = readHandshake(bytes.NewReader(appendHandshake(nil, h)))
	require.NoError(t, err)
	require.True(t, got.hasSession)
	require.Zero(t, got.session)

	// Every field at its longest still fits: the largest message size and
	// resend limit a Config allows, 2^35 openings, any count.
	h = handshake{typ: msgHello, maxSize: MaxMessageSizeLimit, nonce: 1, ext: true, inc: 1<<64 - 1, seq: 1<<35 - 1,
		caps: capsSupported, resend: MaxResendBuffer, session: 1<<64 - 1, count: 1<<63 - 1, hasSession: true}
	frame := appendHandshake(nil, h)
	require.LessOrEqual(t, len(frame)-1, maxHandshakeSize)
	got, err = readHandshake(bytes.NewReader(frame))
	require.NoError(t, err)
	require.Equal(t, h, got)

	for _, bad := range []string{
		"0f 01 80 80 80 02 01 02 03 04 05 06 07 08 05 00",                            // session cut short
		"18 01 80 80 80 02 01 02 03 04 05 06 07 08 05 09 21 22 23 24 25 26 27 28 80", // count cut
	} {
		b, err := hex.DecodeString(strings.ReplaceAll(bad, " ", ""))
		require.NoError(t, err)
		_, err = readHandshake(bytes.NewReader(b))
		require.ErrorIs(t, err, errFraming, bad)
	}
}
