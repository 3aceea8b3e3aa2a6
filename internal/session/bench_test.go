package session_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/skipwire/skipwire/internal/session"
)

// BenchmarkOutAddAck commits messages and acknowledges them the way the
// default ack policy does, every 128 messages, with a 1 MiB limit: the cost a
// Send adds to keep its message until the remote has it.
func BenchmarkOutAddAck(b *testing.B) {
	for _, size := range []int{16, 256, 4 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			o := session.NewOut(1 << 20)
			msg := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if n := o.Add(msg); n%session.DefaultAckCount == 0 {
					_ = o.Ack(n)
				}
			}
		})
	}
}

// BenchmarkInReceived records received messages and takes the
// acknowledgements the policy asks for.
func BenchmarkInReceived(b *testing.B) {
	r := session.NewIn(session.AckPolicy{})
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		if r.Received(256, now) {
			r.Take()
		}
	}
}

// BenchmarkResend retransmits a full window of 256-byte messages after a
// lost stream.
func BenchmarkResend(b *testing.B) {
	o := session.NewOut(1 << 20)
	msg := make([]byte, 256)
	for o.Room(len(msg)) {
		o.Add(msg)
	}
	b.SetBytes(int64(o.PendingBytes()))
	b.ReportAllocs()
	for b.Loop() {
		seq, err := o.Resend(0)
		if err != nil {
			b.Fatal(err)
		}
		for m := range seq {
			_ = m
		}
	}
}
