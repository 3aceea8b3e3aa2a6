package network_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
)

// metric returns the value of the counter or gauge name with labels in reg.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// metricSum returns the sum of the counter name over all its labels in reg.
func metricSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// raw writes envelopes by hand on a connection nobody's Network reads on
// its side, and reads what the remote Network writes.
type raw struct {
	t      testing.TB
	conn   p2pconn.Connection
	frames chan []byte
}

func newRaw(t testing.TB, m p2pconn.ConnectionManager, to *node) *raw {
	t.Helper()
	c, err := m.Connect(testContext(t, opTimeout), to.id)
	require.NoError(t, err)
	r := &raw{t: t, conn: c, frames: make(chan []byte, 1024)}
	go func() {
		// Ends when the connection dies: the manager's cleanup closes it.
		for {
			msg, err := c.Next(context.Background())
			if err != nil {
				close(r.frames)
				return
			}
			r.frames <- msg
		}
	}()
	t.Cleanup(func() { _ = c.Close() })
	return r
}

// send sends the envelope written in hex (spaces allowed).
func (r *raw) send(s string) {
	r.t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(r.t, err)
	require.NoError(r.t, r.conn.Send(testContext(r.t, opTimeout), b))
}

// await returns the next frame from the remote whose kind byte is k.
func (r *raw) await(k byte) []byte {
	r.t.Helper()
	for {
		select {
		case f, ok := <-r.frames:
			require.True(r.t, ok, "connection ended")
			if len(f) > 0 && f[0] == k {
				return f
			}
		case <-testContext(r.t, opTimeout).Done():
			require.FailNow(r.t, "no frame of kind", "%#02x", k)
		}
	}
}

// TestHostileEnvelopes: envelopes that break the protocol are dropped and
// counted; the connection and the Network go on.
func TestHostileEnvelopes(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		rawManager := w.manager(t, connConfig())
		reg := prometheus.NewRegistry()
		victim := newNode(t, w, network.Config{Window: 2, Metrics: reg})
		friend := newNode(t, w, network.Config{})
		held := &gated{hold: network.Message{From: rawManager.ID()}, gate: make(chan struct{}), got: make(chan network.Message, 16)}
		register(t, victim, "ch", held) // "ch" is 63 68
		defer close(held.gate)
		r := newRaw(t, rawManager, victim)
		open := r.await(0x05)
		epoch := hex.EncodeToString(open[1:9])
		rejected := func(reason string) func() bool {
			return func() bool { return metric(t, reg, "skipwire_network_rejected_total", "reason", reason) == 1 }
		}

		r.send("08 00")
		require.Eventually(t, rejected("unknown_kind"), eventually, tick)
		r.send("01 00 00 6869")
		require.Eventually(t, rejected("bad_channel"), eventually, tick)
		r.send("01 01 02 6368 0000000000000000 6869")
		require.Eventually(t, rejected("forged_call"), eventually, tick)
		r.send("01 08 02 6368")
		require.Eventually(t, rejected("malformed"), eventually, tick)
		// DATA before acknowledging the victim's epoch was meant for an
		// earlier Network: dropped.
		r.send("01 00 02 6368 6869")
		require.Eventually(t, rejected("stale"), eventually, tick)
		// A reply to a call nobody made.
		r.send("02 02 6368 0102030405060708 6f6b")
		require.Eventually(t, func() bool { return metric(t, reg, "skipwire_network_replies_dropped_total") == 1 }, eventually, tick)

		// Now follow the protocol: OPEN acknowledging the victim, window 2.
		r.send("05 0000000000000abc " + epoch + " 02 00")
		r.send("01 00 02 6368 31")
		m := <-held.got
		require.Equal(t, rawManager.ID(), m.From)
		require.Equal(t, "1", string(m.Payload))
		// The processor holds the first; one more fits; a third is beyond
		// the window.
		r.send("01 00 02 6368 32")
		r.send("01 00 02 6368 33")
		require.Eventually(t, rejected("over_window"), eventually, tick)
		// Credits for DATA never sent.
		r.send("04 02 6368 05")
		require.Eventually(t, rejected("bad_credit"), eventually, tick)
		// A NO_PROCESSOR for a call the victim never made of this peer.
		r.send("03 02 6368 0102030405060708")
		require.Eventually(t, func() bool {
			return metric(t, reg, "skipwire_network_rejected_total", "reason", "forged_call") == 2
		}, eventually, tick)

		// A Request on a channel the victim does not serve is answered on
		// the wire, and counted.
		r.send("01 01 04 6e6f6e65 00000000000000aa 3f")
		np := r.await(0x03)
		require.Equal(t, "03046e6f6e6500000000000000aa", hex.EncodeToString(np))
		require.Equal(t, 1.0, metric(t, reg, "skipwire_network_no_processor_total"))

		// The victim still works, for others and for this connection.
		require.True(t, r.conn.IsAlive())
		in := newInbox(4)
		register(t, victim, "ok", in)
		require.NoError(t, friend.n.Conduit("ok").Send(testContext(t, opTimeout), victim.id, []byte("fine")))
		require.Equal(t, "fine", string(in.next(t).Payload))
		r.send("01 00 02 6f6b " + hex.EncodeToString([]byte("still")))
		require.Equal(t, "still", string(in.next(t).Payload))
		require.Equal(t, 2.0, metric(t, reg, "skipwire_network_messages_total", "channel", "ok", "direction", "in"))
	})
}

// TestNoProcessorGivesRoomBack: a DATA for a channel without a processor
// holds nothing: its room goes back at once, whatever the window, so a peer
// naming ever new channels leaves no state behind.
func TestNoProcessorGivesRoomBack(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		rawManager := w.manager(t, connConfig())
		victim := newNode(t, w, network.Config{Window: 64})
		r := newRaw(t, rawManager, victim)
		open := r.await(0x05)
		r.send("05 0000000000000abc " + hex.EncodeToString(open[1:9]) + " 40 00")
		for _, ch := range []string{"7a31", "7a32", "7a33"} { // z1, z2, z3
			r.send("01 00 02 " + ch + " 6869")
			require.Equal(t, "0402"+ch+"01", hex.EncodeToString(r.await(0x04)), "a CREDIT of 1 on %s", ch)
		}
	})
}
