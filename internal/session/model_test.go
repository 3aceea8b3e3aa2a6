package session_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/session"
)

// TestModel simulates one direction of a session, a sender and a receiver
// exchanging messages over streams that break at random points (everything
// in flight either way is lost) and are resumed, as p2pconn drives the two
// halves. It checks that the receiver gets exactly messages 1..N, in order
// and each once; that the sender never holds more than its limit; and that,
// when the session is declared over, Pending holds exactly the messages never
// acknowledged, of which those not delivered are the tail, and which are
// exactly those not delivered once the receiver's final count has reached
// the sender.
func TestModel(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	var breaks, pushedBack int
	endings := map[ending]int{}
	for seed := range uint64(seeds) {
		s := newSim(t, seed)
		s.run()
		breaks += s.breaks
		pushedBack += s.pushedBack
		endings[s.ending]++
	}
	// The simulations reach the cases they are meant to.
	require.Positive(t, breaks)
	require.Positive(t, pushedBack)
	require.Len(t, endings, 3)
}

// ending is how a simulated session ends.
type ending int

const (
	complete  ending = iota // every message delivered and acknowledged
	lost                    // declared over while lost, with no last word from the receiver
	finalWord               // declared over once the receiver's count reached the sender
)

type sim struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	out  *session.Out
	in   *session.In
	now  time.Time

	total  int      // messages to commit
	ending ending   // how the session ends
	msgs   [][]byte // every message committed; msgs[i] is message i+1
	got    [][]byte // what the receiver delivered, in order

	up   bool
	fwd  [][]byte // frames in flight to the receiver
	back []uint64 // ack counts in flight to the sender

	breaks, pushedBack int
}

func newSim(t *testing.T, seed uint64) *sim {
	rng := rand.New(rand.NewPCG(seed, 0x5e55))
	limit := []int{1, 64, 1 << 10, 16 << 10, 256 << 10}[rng.IntN(5)]
	p := session.AckPolicy{
		Count: rng.IntN(40),
		Bytes: []int{0, 100, 4 << 10}[rng.IntN(3)],
		Delay: time.Duration(rng.IntN(4)) * time.Millisecond,
	}
	if rng.IntN(2) == 0 {
		p.RemoteLimit = limit
	}
	return &sim{
		t: t, seed: seed, rng: rng,
		out:    session.NewOut(limit),
		in:     session.NewIn(p),
		now:    t0,
		total:  1 + rng.IntN(400),
		ending: ending(rng.IntN(3)),
		up:     true,
	}
}

func (s *sim) run() {
	// Declare the session over at a random step, unless it runs to the end.
	overAt := -1
	if s.ending != complete {
		overAt = s.rng.IntN(4 * s.total)
	}
	for step := 0; ; step++ {
		if step == 1_000_000 {
			s.t.Fatalf("seed %d: no progress", s.seed)
		}
		if step == overAt {
			s.declareOver()
			return
		}
		if s.ending == complete && len(s.msgs) == s.total && s.out.PendingCount() == 0 {
			requireSame(s.t, s.msgs, s.got, "seed %d: delivered", s.seed)
			require.Nil(s.t, s.out.Pending())
			return
		}
		s.step()
		s.check(step)
	}
}

// step takes one random action.
func (s *sim) step() {
	switch k := s.rng.IntN(100); {
	case k < 30:
		s.commit()
	case k < 60:
		for range 1 + s.rng.IntN(4) {
			s.deliver()
		}
	case k < 75:
		s.ackArrives()
	case k < 90:
		s.now = s.now.Add(time.Duration(s.rng.IntN(1500)) * time.Microsecond)
		if s.in.Due(s.now) {
			s.take()
		}
	case k < 93:
		if s.up {
			s.up, s.fwd, s.back = false, nil, nil
			s.breaks++
		}
	default:
		s.resume()
	}
}

// size returns a random payload size: mostly small, sometimes a few KiB,
// rarely above any limit.
func (s *sim) size() int {
	switch k := s.rng.IntN(100); {
	case k < 80:
		return s.rng.IntN(200)
	case k < 98:
		return s.rng.IntN(10 << 10)
	default:
		return 300<<10 + s.rng.IntN(10<<10)
	}
}

// commit commits the next message if the sender has room, and writes it
// when a stream is up (else the resumption will).
func (s *sim) commit() {
	if len(s.msgs) == s.total {
		return
	}
	n := s.size()
	if !s.out.Room(n) {
		s.pushedBack++
		return
	}
	next := uint64(len(s.msgs) + 1)
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(next*131 + uint64(i)*7 + s.seed)
	}
	if n >= 8 {
		binary.BigEndian.PutUint64(p, next)
	}
	if num := s.out.Add(p); num != next {
		s.t.Fatalf("seed %d: Add numbered message %d as %d", s.seed, next, num)
	}
	s.msgs = append(s.msgs, slices.Clone(p))
	if s.up {
		s.fwd = append(s.fwd, slices.Clone(p))
	}
	for i := range p {
		p[i] ^= 0xff // Add copied it
	}
}

// deliver moves the next frame in flight into the receiver's queue.
func (s *sim) deliver() {
	if len(s.fwd) == 0 {
		return
	}
	m := s.fwd[0]
	s.fwd = s.fwd[1:]
	k := len(s.got)
	if k >= len(s.msgs) || !bytes.Equal(s.msgs[k], m) {
		s.t.Fatalf("seed %d: message %d delivered is not message %d committed (%d committed)", s.seed, k+1, k+1, len(s.msgs))
	}
	s.got = append(s.got, m)
	if s.in.Received(len(m), s.now) {
		s.take()
	}
}

// take writes an ACK frame.
func (s *sim) take() {
	if n, ok := s.in.Take(); ok {
		s.back = append(s.back, n)
	}
}

func (s *sim) ackArrives() {
	if len(s.back) == 0 {
		return
	}
	if err := s.out.Ack(s.back[0]); err != nil {
		s.t.Fatalf("seed %d: %v", s.seed, err)
	}
	s.back = s.back[1:]
}

// resume opens a new stream: the receiver announces its count, the sender
// resends what follows, in order.
func (s *sim) resume() {
	if s.up {
		return
	}
	c := s.in.Announce()
	require.NoError(s.t, s.out.CheckCount(c), "seed %d", s.seed)
	seq, err := s.out.Resend(c)
	require.NoError(s.t, err, "seed %d", s.seed)
	for m := range seq {
		s.fwd = append(s.fwd, slices.Clone(m))
	}
	require.Len(s.t, s.fwd, s.out.PendingCount())
	s.up = true
}

// check verifies the invariants after each step. It runs after every step,
// so it reports with Fatalf rather than the costlier require.
func (s *sim) check(step int) {
	acked, count, sent := s.out.Acked(), s.in.Count(), s.out.Sent()
	if acked > count || count > sent {
		s.t.Fatalf("seed %d step %d: acked %d, received %d, sent %d", s.seed, step, acked, count, sent)
	}
	if count != uint64(len(s.got)) {
		s.t.Fatalf("seed %d step %d: received %d, delivered %d", s.seed, step, count, len(s.got))
	}
	k := s.out.PendingCount()
	if k != int(sent-acked) {
		s.t.Fatalf("seed %d step %d: %d pending, sent %d, acked %d", s.seed, step, k, sent, acked)
	}
	if cost := s.out.PendingBytes() + session.Overhead*k; k > 1 && cost > s.out.Limit() {
		s.t.Fatalf("seed %d step %d: %d messages pending cost %d, limit %d", s.seed, step, k, cost, s.out.Limit())
	}
	if step%16 == 0 {
		requireSame(s.t, s.pendingModel(), s.out.Pending(), "seed %d step %d: pending", s.seed, step)
	}
}

// pendingModel is what the sender must hold: every message after the last
// acknowledged.
func (s *sim) pendingModel() [][]byte {
	if int(s.out.Acked()) == len(s.msgs) {
		return nil
	}
	return s.msgs[s.out.Acked():]
}

// declareOver ends the session before its end and checks what Pending
// reports.
func (s *sim) declareOver() {
	requireSame(s.t, s.msgs[:len(s.got)], s.got, "seed %d: delivered", s.seed)
	notDelivered := s.msgs[len(s.got):]
	if s.ending == finalWord {
		require.NoError(s.t, s.out.Ack(s.in.Announce()))
		require.Equal(s.t, len(notDelivered), s.out.PendingCount())
		if len(notDelivered) == 0 {
			require.Nil(s.t, s.out.Pending())
		} else {
			requireSame(s.t, notDelivered, s.out.Pending(), "seed %d: exactly the messages not delivered", s.seed)
		}
		return
	}
	pending := s.out.Pending()
	requireSame(s.t, s.pendingModel(), pending, "seed %d: exactly the messages never acknowledged", s.seed)
	unacked := int(s.in.Count() - s.out.Acked()) // delivered, acknowledgement lost or in flight
	require.Equal(s.t, len(notDelivered), len(pending)-unacked)
	if len(notDelivered) > 0 {
		requireSame(s.t, notDelivered, pending[unacked:], "seed %d: the messages not delivered are the tail", s.seed)
	}
}

// requireSame checks that got holds the payloads of want, in order, naming
// the first that differs rather than printing them all.
func requireSame(t testing.TB, want, got [][]byte, msgAndArgs ...any) {
	t.Helper()
	for i := range min(len(want), len(got)) {
		if !bytes.Equal(want[i], got[i]) {
			require.FailNow(t, fmt.Sprintf("message %d of %d differs: want %d bytes %.16x, got %d bytes %.16x", i+1, len(want), len(want[i]), want[i], len(got[i]), got[i]), msgAndArgs...)
		}
	}
	require.Equal(t, len(want), len(got), msgAndArgs...)
}
