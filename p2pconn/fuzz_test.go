package p2pconn

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it never panics,
// never returns a frame over its limit, fails only with io.EOF at a frame
// boundary or a framing error, and the frames it returns re-encode to a prefix
// of the input.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00})
	f.Add([]byte{0x03, 'a', 'b', 'c', 0x00, 0x01, 'x'})
	f.Add([]byte{0x80, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x81, 0x08, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 10
		// The unbuffered reader, and the buffered one fed in chunks of
		// every size, must return the same frames and the same error kind.
		plain := readAll(t, &frameReader{r: bytes.NewReader(in), max: limit}, in, limit)
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.HalfReader(bytes.NewReader(in))} {
			got := readAll(t, &frameReader{r: r, max: limit, buffered: true}, in, limit)
			if !bytes.Equal(got.out, plain.out) || got.eof != plain.eof {
				t.Fatalf("buffered reader differs: %x (eof %v) vs %x (eof %v)", got.out, got.eof, plain.out, plain.eof)
			}
		}
	})
}

type readResult struct {
	out []byte // the frames read, re-encoded
	eof bool   // ended with a clean io.EOF
}

func readAll(t *testing.T, fr *frameReader, in []byte, limit int) readResult {
	defer fr.close()
	var out []byte
	for {
		msg, _, err := fr.next()
		if err != nil {
			if err != io.EOF && !errors.Is(err, errFraming) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if err == io.EOF && len(out) != len(in) {
				t.Fatalf("clean EOF after %d of %d bytes", len(out), len(in))
			}
			break
		}
		if len(msg) > limit {
			t.Fatalf("frame of %d bytes over the limit", len(msg))
		}
		var hdr [maxHeaderSize]byte
		out = append(out, hdr[:putHeader(hdr[:], len(msg))]...)
		out = append(out, msg...)
	}
	if !bytes.HasPrefix(in, out) {
		t.Fatalf("frames re-encode to %x, not a prefix of %x", out, in)
	}
	return readResult{out: out, eof: len(out) == len(in)}
}

// FuzzHandshake decodes arbitrary handshake payloads: no panic, and whatever
// decodes re-encodes to a message that decodes the same.
func FuzzHandshake(f *testing.F) {
	for _, m := range []handshake{
		{typ: msgHello, maxSize: 4 << 20, nonce: 42},
		{typ: msgAccept, maxSize: 1, nonce: 0},
		{typ: msgReject, reason: rejectLimit},
		{typ: msgConfirm},
	} {
		b := appendHandshake(nil, m)
		f.Add(b[1:])
	}
	f.Add([]byte{0x01, 0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeHandshake(body)
		if err != nil {
			if !errors.Is(err, errFraming) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := readHandshake(bytes.NewReader(appendHandshake(nil, m)))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", m, err)
		}
		if again != m {
			t.Fatalf("round trip: %+v became %+v", m, again)
		}
	})
}
