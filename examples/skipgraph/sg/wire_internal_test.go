package sg

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWireRoundTrip(t *testing.T) {
	a, b, c := testPeer(1), testPeer(2), testPeer(3)
	a.MV, b.MV = 0xdeadbeef<<32, 1
	tb := Table{Self: a, Levels: []Level{{Left: b, Right: c}, {Right: c}, {Left: b}}}
	for _, m := range []message{
		{kind: kindSearch, id: 7, target: 123456, hops: 9},
		{kind: kindFind, id: 8, target: 42},
		{kind: kindFound, id: 9, re: 7, status: statusOK, peer: b, hops: 3},
		{kind: kindGetTable, id: 10},
		{kind: kindTable, id: 11, state: stateJoined, dirty: [2]uint64{5, 1 << 63}, table: tb, near: []Peer{b, c}},
		{kind: kindTable, id: 12, state: stateJoining, table: Table{Self: a}},
		{kind: kindLink, id: 13, level: 5, side: Right, peer: c},
		{kind: kindLinkReply, id: 14, status: statusCloser, peer: b},
		{kind: kindLeave, id: 15, table: tb},
		{kind: kindLeaveAck, id: 16},
	} {
		t.Run(m.kind.String(), func(t *testing.T) {
			got, err := decode(m.encode())
			require.NoError(t, err)
			require.Equal(t, m, got)
		})
	}
}

func TestWireMalformed(t *testing.T) {
	full := (&message{kind: kindLink, id: 1, level: 2, side: Left, peer: testPeer(4)}).encode()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"unknown kind":   {99, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"truncated":      full[:len(full)-1],
		"trailing bytes": append(full, 0),
		"bad side":       append(append([]byte{}, full[:18]...), append([]byte{7}, full[19:]...)...),
		"too many levels": append([]byte{byte(kindLeave), 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
			append(make([]byte, peerSize), 200)...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decode(b)
			require.ErrorIs(t, err, errMalformed)
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add((&message{kind: kindTable, id: 1, table: Table{Self: testPeer(1), Levels: []Level{{Left: testPeer(2)}}}}).encode())
	f.Add((&message{kind: kindSearch, id: 1, target: 5}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		again, err := decode(m.encode())
		require.NoError(t, err)
		require.Equal(t, m, again)
	})
}
