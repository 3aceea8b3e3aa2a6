package session_test

import (
	"fmt"
	"iter"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/session"
)

// msg returns the payload of message i in these tests.
func msg(i int) []byte { return fmt.Appendf(nil, "message %d", i) }

// msgs returns the payloads of messages from..to.
func msgs(from, to int) [][]byte {
	var out [][]byte
	for i := from; i <= to; i++ {
		out = append(out, msg(i))
	}
	return out
}

// newOut returns an Out with a large limit holding messages 1..sent.
func newOut(t testing.TB, sent int) *session.Out {
	t.Helper()
	o := session.NewOut(1 << 20)
	for i := 1; i <= sent; i++ {
		require.Equal(t, uint64(i), o.Add(msg(i)))
	}
	return o
}

// requirePending checks the messages o holds: from..to.
func requirePending(t testing.TB, o *session.Out, from, to int) {
	t.Helper()
	want := msgs(from, to)
	require.Equal(t, want, o.Pending())
	require.Equal(t, len(want), o.PendingCount())
	n := 0
	for _, m := range want {
		n += len(m)
	}
	require.Equal(t, n, o.PendingBytes())
	require.Equal(t, uint64(from-1), o.Acked())
	require.Equal(t, uint64(to), o.Sent())
}

func TestAck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sent  int
		acks  []uint64
		errs  []error // per ack; nil for success
		acked int
	}{
		{name: "nothing sent, zero", sent: 0, acks: []uint64{0}, errs: []error{nil}, acked: 0},
		{name: "nothing sent, ahead", sent: 0, acks: []uint64{1}, errs: []error{session.ErrAckAhead}, acked: 0},
		{name: "in order", sent: 5, acks: []uint64{1, 2, 3}, errs: []error{nil, nil, nil}, acked: 3},
		{name: "cumulative jump", sent: 5, acks: []uint64{4}, errs: []error{nil}, acked: 4},
		{name: "all", sent: 5, acks: []uint64{2, 5}, errs: []error{nil, nil}, acked: 5},
		{name: "stale", sent: 5, acks: []uint64{3, 2, 0}, errs: []error{nil, nil, nil}, acked: 3},
		{name: "duplicated", sent: 5, acks: []uint64{3, 3, 3}, errs: []error{nil, nil, nil}, acked: 3},
		{name: "ahead changes nothing", sent: 5, acks: []uint64{2, 6, 3}, errs: []error{nil, session.ErrAckAhead, nil}, acked: 3},
		{name: "far ahead", sent: 5, acks: []uint64{^uint64(0)}, errs: []error{session.ErrAckAhead}, acked: 0},
		{name: "stale after all", sent: 5, acks: []uint64{5, 4}, errs: []error{nil, nil}, acked: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOut(t, tc.sent)
			for i, n := range tc.acks {
				err := o.Ack(n)
				if tc.errs[i] == nil {
					require.NoError(t, err, "ack %d", n)
				} else {
					require.ErrorIs(t, err, tc.errs[i], "ack %d", n)
				}
			}
			requirePending(t, o, tc.acked+1, tc.sent)
		})
	}
}

func TestRoom(t *testing.T) {
	const limit = 1000
	c := session.Cost
	for _, tc := range []struct {
		name    string
		pending []int // payload sizes committed, none acknowledged
		n       int
		want    bool
	}{
		{name: "empty, small", n: 10, want: true},
		{name: "empty, exactly the limit", n: limit - session.Overhead, want: true},
		{name: "empty, larger than the limit goes alone", n: 10 * limit, want: true},
		{name: "fits", pending: []int{100}, n: limit - c(100) - session.Overhead, want: true},
		{name: "one byte over", pending: []int{100}, n: limit - c(100) - session.Overhead + 1, want: false},
		{name: "full", pending: []int{limit - session.Overhead}, n: 0, want: false},
		{name: "empty messages count", pending: make([]int, limit/session.Overhead-1), n: 0, want: true},
		{name: "empty messages fill it", pending: make([]int, limit/session.Overhead), n: 0, want: false},
		{name: "oversized alone blocks the next", pending: []int{2 * limit}, n: 0, want: false},
		{name: "oversized after others waits", pending: []int{1}, n: 2 * limit, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := session.NewOut(limit)
			for _, n := range tc.pending {
				o.Add(make([]byte, n))
			}
			require.Equal(t, tc.want, o.Room(tc.n))
		})
	}
}

// TestPushBack commits while Room allows, the way a Send does, and checks
// that the cost of the pending messages never passes the limit and that
// acknowledgements make room again.
func TestPushBack(t *testing.T) {
	const limit = 1 << 10
	o := session.NewOut(limit)
	sizes := []int{0, 1, 100, 500, 200, 1000, 3000, 5, 0, 700}
	acked := 0
	for i, n := range sizes {
		for !o.Room(n) {
			require.Positive(t, o.PendingCount(), "an empty Out always has room")
			acked++
			require.NoError(t, o.Ack(uint64(acked)))
		}
		o.Add(make([]byte, n))
		if o.PendingCount() > 1 {
			require.LessOrEqual(t, o.PendingBytes()+session.Overhead*o.PendingCount(), limit, "after message %d", i+1)
		}
	}
	require.NoError(t, o.Ack(o.Sent()))
	require.True(t, o.Room(limit))
	require.Nil(t, o.Pending())
}

func TestAddCopies(t *testing.T) {
	o := session.NewOut(1 << 10)
	b := []byte("abc")
	o.Add(b)
	b[0] = 'x'
	require.Equal(t, [][]byte{[]byte("abc")}, o.Pending())

	p := o.Pending()
	p[0][0] = 'y'
	require.Equal(t, [][]byte{[]byte("abc")}, o.Pending(), "Pending returns copies")
}

func TestEmptyMessages(t *testing.T) {
	o := session.NewOut(1 << 10)
	o.Add(nil)
	o.Add([]byte{})
	o.Add([]byte("a"))
	require.Equal(t, [][]byte{{}, {}, []byte("a")}, o.Pending())
	require.Equal(t, 1, o.PendingBytes())
	seq, err := o.Resend(0)
	require.NoError(t, err)
	require.Equal(t, [][]byte{{}, {}, []byte("a")}, slices.Collect(seq), "empty, not nil, as from Pending")
}

// resent collects what Resend(n) yields, failing on an error.
func resent(t testing.TB, o *session.Out, n uint64) [][]byte {
	t.Helper()
	seq, err := o.Resend(n)
	require.NoError(t, err)
	return collect(seq)
}

// TestResendEveryPoint loses the stream at every point: with every number
// of messages acknowledged, the remote announces every count it may have,
// and a count it cannot have is refused without changing anything.
func TestResendEveryPoint(t *testing.T) {
	const sent = 6
	for acked := 0; acked <= sent; acked++ {
		for count := 0; count <= sent+1; count++ {
			t.Run(fmt.Sprintf("acked %d count %d", acked, count), func(t *testing.T) {
				o := newOut(t, sent)
				require.NoError(t, o.Ack(uint64(acked)))
				err := o.CheckCount(uint64(count))
				seq, rerr := o.Resend(uint64(count))
				switch {
				case count < acked:
					require.ErrorIs(t, err, session.ErrCountBehind)
					require.ErrorIs(t, rerr, session.ErrCountBehind)
					require.Nil(t, seq)
					requirePending(t, o, acked+1, sent)
				case count > sent:
					require.ErrorIs(t, err, session.ErrAckAhead)
					require.ErrorIs(t, rerr, session.ErrAckAhead)
					require.Nil(t, seq)
					requirePending(t, o, acked+1, sent)
				default:
					require.NoError(t, err)
					require.NoError(t, rerr)
					requirePending(t, o, count+1, sent)
					want := msgs(count+1, sent)
					require.Equal(t, want, collect(seq))
					require.Equal(t, want, collect(seq), "the iterator can run twice")
				}
			})
		}
	}
}

// collect copies what seq yields.
func collect(seq iter.Seq[[]byte]) [][]byte {
	var out [][]byte
	for m := range seq {
		out = append(out, slices.Clone(m))
	}
	return out
}

// TestRepeatedLosses resumes several times, sometimes before anything new
// arrived, sometimes with the count equal to the last acknowledgement.
func TestRepeatedLosses(t *testing.T) {
	o := newOut(t, 4)
	require.NoError(t, o.Ack(1))
	require.Equal(t, msgs(2, 4), resent(t, o, 1), "count equal to the ack: everything pending again")
	require.Equal(t, msgs(3, 4), resent(t, o, 2), "lost again after one more arrived")
	require.Equal(t, msgs(3, 4), resent(t, o, 2), "lost again before anything arrived")
	for i := 5; i <= 7; i++ {
		o.Add(msg(i))
	}
	require.Equal(t, msgs(6, 7), resent(t, o, 5))
	require.NoError(t, o.Ack(5), "a stale ack after a resumption")
	require.Equal(t, msgs(6, 7), resent(t, o, 5))
	require.Empty(t, resent(t, o, 7), "everything arrived")
	requirePending(t, o, 8, 7)
}

// TestResendIteratorAndAcks acknowledges while iterating: a message
// acknowledged meanwhile is skipped, and breaking out stops the iteration.
func TestResendIteratorAndAcks(t *testing.T) {
	o := newOut(t, 6)
	seq, err := o.Resend(1)
	require.NoError(t, err)
	o.Add(msg(7)) // committed after Resend: not part of it
	var got [][]byte
	for m := range seq {
		got = append(got, slices.Clone(m))
		if len(got) == 1 {
			require.NoError(t, o.Ack(4))
		}
	}
	require.Equal(t, [][]byte{msg(2), msg(5), msg(6)}, got)

	seq, err = o.Resend(4)
	require.NoError(t, err)
	for m := range seq {
		require.Equal(t, msg(5), m)
		break
	}
}

// TestLargeMessages mixes payloads around and above the storage chunk sizes.
func TestLargeMessages(t *testing.T) {
	for _, limit := range []int{1, 4 << 10, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			o := session.NewOut(limit)
			var want [][]byte
			sizes := []int{10, 600, 5000, 70 << 10, 8 << 10, 8<<10 + 1, 1, 200 << 10, 3, 16 << 10}
			for round := range 3 {
				for i, n := range sizes {
					b := make([]byte, n)
					for j := range b {
						b[j] = byte(round*31 + i*7 + j)
					}
					o.Add(b)
					want = append(want, b)
					if i%3 == 2 {
						k := len(want) / 2
						require.NoError(t, o.Ack(o.Acked()+uint64(k)))
						want = want[k:]
					}
					require.Equal(t, want, o.Pending())
				}
			}
			require.Equal(t, want, resent(t, o, o.Acked()))
			o.Trim()
			require.Equal(t, want, o.Pending(), "Trim keeps what is pending")
			require.NoError(t, o.Ack(o.Sent()))
			o.Trim()
			o.Add([]byte("after trim"))
			require.Equal(t, [][]byte{[]byte("after trim")}, o.Pending())
		})
	}
}

func TestNewOutPanics(t *testing.T) {
	require.Panics(t, func() { session.NewOut(0) })
	require.Panics(t, func() { session.NewOut(-1) })
	require.Equal(t, 7, session.NewOut(7).Limit())
}
