package network

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// encode writes e back with the encoders, for round trips.
func encode(e envelope) []byte {
	switch e.kind {
	case kindData:
		return appendData(nil, Channel(e.channel), e.call, e.origin, e.payload)
	case kindReply:
		return appendReply(nil, Channel(e.channel), e.call.ID, e.payload)
	case kindNoProcessor:
		return appendNoProcessor(nil, Channel(e.channel), e.call.ID)
	case kindCredit:
		return appendCredit(nil, Channel(e.channel), e.credits)
	case kindOpen:
		return appendOpen(nil, e.epoch, e.ack, e.window, e.caps)
	case kindClosed:
		return appendClosed(nil, e.epoch)
	case kindBlocked:
		return appendBlocked(nil, Channel(e.channel))
	}
	return nil
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// TestEnvelopeExamples: the byte-by-byte examples of PROTOCOL.md.
func TestEnvelopeExamples(t *testing.T) {
	origin := identity.Identifier{0xaa, 0xbb}
	for _, tc := range []struct {
		name string
		got  []byte
		hex  string
	}{
		{"DATA", appendData(nil, "ping", CallRef{}, false, []byte("hi")), "01 00 04 70696e67 6869"},
		{"DATA request", appendData(nil, "ping", CallRef{ID: 0x0102030405060708}, false, []byte("hi")),
			"01 01 04 70696e67 0102030405060708 6869"},
		{"DATA forward", appendData(nil, "ping", CallRef{Origin: origin, ID: 0x0102030405060708}, true, nil),
			"01 03 04 70696e67 0102030405060708 aabb" + strings.Repeat("00", 30)},
		{"REPLY", appendReply(nil, "ping", 0x0102030405060708, []byte("ok")), "02 04 70696e67 0102030405060708 6f6b"},
		{"NO_PROCESSOR", appendNoProcessor(nil, "ping", 0x0102030405060708), "03 04 70696e67 0102030405060708"},
		{"CREDIT", appendCredit(nil, "ping", 32), "04 04 70696e67 20"},
		{"OPEN", appendOpen(nil, 0x1111111111111111, 0, 64, capGrow), "05 1111111111111111 0000000000000000 40 01"},
		{"OPEN ack", appendOpen(nil, 0x2222222222222222, 0x1111111111111111, 300, capGrow), "05 2222222222222222 1111111111111111 ac02 01"},
		{"OPEN, no capabilities", appendOpen(nil, 0x1111111111111111, 0, 64, 0), "05 1111111111111111 0000000000000000 40 00"},
		{"CLOSED", appendClosed(nil, 0x1111111111111111), "06 1111111111111111"},
		{"BLOCKED", appendBlocked(nil, "ping"), "07 04 70696e67"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, unhex(t, tc.hex), tc.got)
			e, err := decode(tc.got)
			require.NoError(t, err)
			require.Equal(t, tc.got, encode(e), "round trip")
		})
	}
}

// TestDecodeRejects: hostile envelopes are rejected with the right reason.
func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex, reason string
	}{
		{"empty", "", rejectMalformed},
		{"unknown kind", "08 00", rejectUnknownKind},
		{"kind zero", "00", rejectUnknownKind},
		{"DATA no flags", "01", rejectMalformed},
		{"DATA unknown flag", "01 04 01 61", rejectMalformed},
		{"DATA origin without call", "01 02 01 61", rejectMalformed},
		{"DATA empty channel", "01 00 00 6869", rejectBadChannel},
		{"DATA channel longer than the envelope", "01 00 ff 6162", rejectBadChannel},
		{"DATA no channel length", "01 00", rejectBadChannel},
		{"DATA zero call", "01 01 01 61 0000000000000000 6869", rejectForgedCall},
		{"DATA truncated call", "01 01 01 61 01020304", rejectMalformed},
		{"DATA zero origin", "01 03 01 61 0102030405060708" + strings.Repeat("00", 32), rejectForgedCall},
		{"DATA truncated origin", "01 03 01 61 0102030405060708 aabb", rejectMalformed},
		{"REPLY zero call", "02 01 61 0000000000000000", rejectForgedCall},
		{"REPLY no call", "02 01 61", rejectMalformed},
		{"NO_PROCESSOR trailing", "03 01 61 0102030405060708 00", rejectMalformed},
		{"CREDIT zero", "04 01 61 00", rejectMalformed},
		{"CREDIT over MaxWindow", "04 01 61 8180 08", rejectMalformed},
		{"CREDIT non-minimal varint", "04 01 61 8100", rejectMalformed},
		{"CREDIT trailing", "04 01 61 01 01", rejectMalformed},
		{"OPEN zero epoch", "05 0000000000000000 0000000000000000 40 00", rejectMalformed},
		{"OPEN zero window", "05 1111111111111111 0000000000000000 00 00", rejectMalformed},
		{"OPEN truncated", "05 11111111", rejectMalformed},
		{"OPEN no capabilities", "05 1111111111111111 0000000000000000 40", rejectMalformed},
		{"CLOSED zero epoch", "06 0000000000000000", rejectMalformed},
		{"CLOSED trailing", "06 1111111111111111 00", rejectMalformed},
		{"BLOCKED no channel", "07", rejectBadChannel},
		{"BLOCKED empty channel", "07 00", rejectBadChannel},
		{"BLOCKED trailing", "07 01 61 00", rejectMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(unhex(t, tc.hex))
			var re *rejectError
			require.True(t, errors.As(err, &re), "not rejected: %v", err)
			require.Equal(t, tc.reason, re.reason, "%v", err)
		})
	}
	// An OPEN may grow fields, and announce capabilities this version does
	// not know: they are ignored.
	e, err := decode(unhex(t, "05 1111111111111111 0000000000000000 40 ff01 ffff"))
	require.NoError(t, err)
	require.Equal(t, 64, e.window)
	require.Equal(t, uint64(0xff), e.caps)
}

// FuzzDecode: decoding never panics, and what decodes encodes back to an
// envelope that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{
		appendData(nil, "ch", CallRef{}, false, []byte("p")),
		appendData(nil, "ch", CallRef{ID: 7}, false, []byte("p")),
		appendData(nil, "ch", CallRef{Origin: identity.Identifier{1}, ID: 7}, true, []byte("p")),
		appendReply(nil, "ch", 7, []byte("r")),
		appendNoProcessor(nil, "ch", 7),
		appendCredit(nil, "ch", 3),
		appendOpen(nil, 1, 2, 64, capGrow),
		appendClosed(nil, 1),
		appendBlocked(nil, "ch"),
		{0xff},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		e, err := decode(msg)
		if err != nil {
			var re *rejectError
			require.True(t, errors.As(err, &re))
			return
		}
		again, err := decode(encode(e))
		require.NoError(t, err)
		require.Equal(t, e.kind, again.kind)
		require.True(t, bytes.Equal(e.channel, again.channel))
		require.True(t, bytes.Equal(e.payload, again.payload))
		require.Equal(t, e.call, again.call)
		require.Equal(t, e.origin, again.origin)
		require.Equal(t, e.credits, again.credits)
		require.Equal(t, [4]uint64{e.epoch, e.ack, uint64(e.window), e.caps},
			[4]uint64{again.epoch, again.ack, uint64(again.window), again.caps})
	})
}
