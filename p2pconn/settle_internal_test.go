package p2pconn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type testSettler = settler[string, string, string]

func v2(inc, seq uint64) helloInfo { return helloInfo{nonce: seq + 100, ext: true, inc: inc, seq: seq} }

// TestSettleHelloWithLiveConnection: what a HELLO does to the live
// connection, for version-2 peers (incarnation and opening numbers) and
// version-1 peers (dup_nonce and the connect-timeout age rule).
func TestSettleHelloWithLiveConnection(t *testing.T) {
	now := time.Unix(1000, 0)
	young, old := now.Add(-time.Second), now.Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		live    liveInfo
		hello   helloInfo
		verdict verdict
		how     ending
	}{
		{"v2 stale opening", liveInfo{born: old, ext: true, inc: 7, staleBelow: 5}, v2(7, 5), verdictReject, endNone},
		{"v2 older opening", liveInfo{born: old, ext: true, inc: 7, staleBelow: 5}, v2(7, 3), verdictReject, endNone},
		{"v2 newer opening, young connection", liveInfo{born: young, ext: true, inc: 7, staleBelow: 5}, v2(7, 6), verdictAccept, endSuperseded},
		{"v2 new incarnation", liveInfo{born: young, ext: true, inc: 7, staleBelow: 5}, v2(8, 1), verdictAccept, endRestarted},
		{"v1 after v2: restarted", liveInfo{born: young, ext: true, inc: 7}, helloInfo{nonce: 9}, verdictAccept, endRestarted},
		{"v2 after v1: restarted", liveInfo{born: young, expectDup: 9}, v2(1, 1), verdictAccept, endRestarted},
		{"v1 expected duplicate", liveInfo{born: old, expectDup: 9}, helloInfo{nonce: 9}, verdictReject, endNone},
		{"v1 young connection", liveInfo{born: young}, helloInfo{nonce: 3}, verdictReject, endNone},
		{"v1 old connection", liveInfo{born: old}, helloInfo{nonce: 3}, verdictAccept, endSuperseded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := testSettler{connectTimeout: 10 * time.Second, conn: "C", live: tc.live}
			o := st.hello("h", tc.hello, now, 1)
			require.Equal(t, tc.verdict, o.verdict)
			require.Equal(t, tc.how, o.how)
			if tc.how == endNone {
				require.Equal(t, "C", st.conn, "a stale HELLO leaves the connection")
				require.Equal(t, rejectDuplicate, o.reason)
			} else {
				require.Equal(t, "C", o.end)
				require.Equal(t, "h", st.in)
				require.Empty(t, st.conn)
			}
		})
	}
}

// TestSettleSimultaneousOpen: both sides open at once. The smaller parks the
// larger's HELLO and rejects it once its own stream settles; the larger
// accepts the smaller's with dup_nonce naming its own. Both settle on the
// smaller's stream.
func TestSettleSimultaneousOpen(t *testing.T) {
	now := time.Unix(1000, 0)
	s := testSettler{smaller: true, connectTimeout: time.Second}
	l := testSettler{connectTimeout: time.Second}
	_, busy := s.open()
	require.False(t, busy)
	s.opened("s-out", 11)
	l.opened("l-out", 22)

	// S's HELLO reaches L: L accepts it and names its own HELLO.
	o := l.hello("s-in", v2(1, 1), now, 5)
	require.Equal(t, verdictAccept, o.verdict)
	require.Equal(t, uint64(22), o.dupNonce)
	// L's HELLO reaches S: parked.
	o = s.hello("l-in", v2(2, 1), now, 5)
	require.Equal(t, verdictPark, o.verdict)
	// S reads ACCEPT: its stream settles, the parked HELLO is rejected.
	reset, orphan, reject := s.accepted("s-out", "S-conn", liveInfo{ext: true, inc: 2, staleBelow: 1})
	require.Empty(t, reset)
	require.Empty(t, orphan)
	require.Equal(t, "l-in", reject)
	// L reads CONFIRM: settled; its own outbound then fails.
	require.True(t, l.confirmed("s-in", "L-conn", liveInfo{ext: true, inc: 1, staleBelow: 1}))
	p, ok := l.outboundFailed("l-out")
	require.True(t, ok)
	require.Empty(t, p)
	require.Equal(t, "S-conn", s.conn)
	require.Equal(t, "L-conn", l.conn)

	// A late copy of L's racing HELLO (number 1) is stale at S.
	o = s.hello("late", v2(2, 1), now.Add(time.Hour), 5)
	require.Equal(t, verdictReject, o.verdict)
	require.Equal(t, "S-conn", s.conn)
}

// TestSettleParkedProceedsWhenOwnFails: the smaller's own stream fails; the
// parked HELLO is decided again and accepted.
func TestSettleParkedProceedsWhenOwnFails(t *testing.T) {
	now := time.Unix(1000, 0)
	s := testSettler{smaller: true}
	s.opened("out", 1)
	require.Equal(t, verdictPark, s.hello("in", v2(2, 1), now, 1).verdict)
	p, ok := s.outboundFailed("out")
	require.True(t, ok)
	require.Equal(t, "in", p)
	o := s.hello(p, v2(2, 1), now, 1)
	require.Equal(t, verdictAccept, o.verdict)
	require.True(t, s.confirmed("in", "C", liveInfo{}))
	require.False(t, s.idle())
	require.True(t, s.died("C"))
	require.True(t, s.idle())
}

// TestSettleInboundSuperseded: a newer HELLO replaces a pending inbound
// stream; an older one is rejected; a full node refuses.
func TestSettleInboundSuperseded(t *testing.T) {
	now := time.Unix(1000, 0)
	var st testSettler
	require.Equal(t, verdictAccept, st.hello("a", v2(1, 2), now, 1).verdict)
	require.Equal(t, verdictReject, st.hello("old", v2(1, 1), now, 0).verdict)
	o := st.hello("b", v2(1, 3), now, 0)
	require.Equal(t, verdictAccept, o.verdict, "the superseded stream's slot is reused")
	require.Equal(t, "a", o.orphan, "the remote may have confirmed it: it is not reset")
	require.Empty(t, o.reset)
	require.False(t, st.confirmed("a", "C", liveInfo{}))
	// A version-1 peer gave up on a stream it opened again.
	var v1 testSettler
	require.Equal(t, verdictAccept, v1.hello("a", helloInfo{nonce: 1}, now, 1).verdict)
	o = v1.hello("b", helloInfo{nonce: 2}, now, 0)
	require.Equal(t, "a", o.reset)
	require.Empty(t, o.orphan)
	var full testSettler
	o = full.hello("x", v2(1, 1), now, 0)
	require.Equal(t, verdictReject, o.verdict)
	require.Equal(t, rejectLimit, o.reason)
}

// TestSettleAcceptedOrphansConfirmable: when our outbound stream settles
// while the same remote process's inbound stream waits for CONFIRM, the
// remote may have confirmed that one already (and closed it, and accepted
// ours): it is an orphan, delivered if CONFIRM comes, not reset. A stream
// of another incarnation, or of a version-1 peer, is reset.
func TestSettleAcceptedOrphansConfirmable(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		in     helloInfo
		live   liveInfo
		orphan bool
	}{
		{"same incarnation", v2(7, 3), liveInfo{ext: true, inc: 7}, true},
		{"other incarnation", v2(6, 3), liveInfo{ext: true, inc: 7}, false},
		{"version 1", helloInfo{nonce: 5}, liveInfo{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st testSettler
			require.Equal(t, verdictAccept, st.hello("in", tc.in, now, 2).verdict)
			st.opened("out", 9)
			reset, orphan, _ := st.accepted("out", "C", tc.live)
			if tc.orphan {
				require.Equal(t, "in", orphan)
				require.Empty(t, reset)
			} else {
				require.Equal(t, "in", reset)
				require.Empty(t, orphan)
			}
			require.False(t, st.confirmed("in", "C2", liveInfo{}), "it no longer settles")
		})
	}
}
