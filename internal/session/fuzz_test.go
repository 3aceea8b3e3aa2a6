package session_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/skipwire/skipwire/internal/session"
)

// FuzzOut runs arbitrary sequences of Add, Ack, Resend, Pending and Trim on
// an Out and on a plain slice model of it: they must agree on every answer,
// every payload included, whatever the order of the chunks the payloads were
// stored in.
func FuzzOut(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 20, 2, 1, 4, 0})
	f.Add([]byte{1, 0, 250, 0, 3, 0, 255, 2, 2, 3, 0, 4, 1})
	f.Add([]byte{2, 0, 200, 1, 200, 0, 200, 2, 9, 3, 1, 0, 5, 4, 0, 2, 200, 3, 200})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 4<<10 {
			return // long inputs only slow the search: Pending is linear
		}
		limit := []int{1, 4 << 10, 64 << 10}[int(in[0])%3]
		o := session.NewOut(limit)
		var (
			msgs  [][]byte // every message added; msgs[i] is message i+1
			acked int
			size  int // payload bytes of msgs[acked:]
		)
		// count returns a count around the acknowledged one, from arg:
		// below it (stale), within the pending messages, or above them.
		count := func(arg byte) uint64 {
			return uint64(max(acked-1+int(arg)%(len(msgs)-acked+3), 0))
		}
		for ops := in[1:]; len(ops) >= 2; ops = ops[2:] {
			op, arg := ops[0]%5, ops[1]
			switch op {
			case 0, 1:
				n := int(arg)
				if arg >= 240 {
					n = int(arg-240) * 1500 // up to 22 KiB: across and beyond chunks
				}
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(len(msgs)*13 + i)
				}
				if got := o.Add(p); got != uint64(len(msgs)+1) {
					t.Fatalf("Add numbered message %d as %d", len(msgs)+1, got)
				}
				msgs = append(msgs, append([]byte(nil), p...))
				size += n
				clear(p) // Add copied it
			case 2:
				n := count(arg)
				err := o.Ack(n)
				switch {
				case n > uint64(len(msgs)):
					if !errors.Is(err, session.ErrAckAhead) {
						t.Fatalf("Ack(%d) with %d sent: %v, want ErrAckAhead", n, len(msgs), err)
					}
				case err != nil:
					t.Fatalf("Ack(%d): %v", n, err)
				case int(n) > acked:
					for _, m := range msgs[acked:n] {
						size -= len(m)
					}
					acked = int(n)
				}
			case 3:
				n := count(arg)
				seq, err := o.Resend(n)
				switch {
				case n > uint64(len(msgs)):
					if !errors.Is(err, session.ErrAckAhead) {
						t.Fatalf("Resend(%d) with %d sent: %v, want ErrAckAhead", n, len(msgs), err)
					}
				case int(n) < acked:
					if !errors.Is(err, session.ErrCountBehind) {
						t.Fatalf("Resend(%d) with %d acknowledged: %v, want ErrCountBehind", n, acked, err)
					}
				case err != nil:
					t.Fatalf("Resend(%d): %v", n, err)
				default:
					for _, m := range msgs[acked:n] {
						size -= len(m)
					}
					acked = int(n)
					i := acked
					for m := range seq {
						if i >= len(msgs) || !bytes.Equal(m, msgs[i]) {
							t.Fatalf("Resend(%d) yielded a wrong message %d", n, i+1)
						}
						i++
					}
					if i != len(msgs) {
						t.Fatalf("Resend(%d) stopped at message %d of %d", n, i, len(msgs))
					}
				}
			case 4:
				if arg%2 == 1 {
					o.Trim()
				}
				p := o.Pending()
				if len(p) != len(msgs)-acked {
					t.Fatalf("Pending: %d messages, want %d", len(p), len(msgs)-acked)
				}
				for i, m := range p {
					if !bytes.Equal(m, msgs[acked+i]) {
						t.Fatalf("Pending: message %d differs", acked+i+1)
					}
				}
			}
			pending := len(msgs) - acked
			switch {
			case o.Sent() != uint64(len(msgs)) || o.Acked() != uint64(acked):
				t.Fatalf("sent %d acked %d, want %d %d", o.Sent(), o.Acked(), len(msgs), acked)
			case o.PendingCount() != pending || o.PendingBytes() != size:
				t.Fatalf("%d pending of %d bytes, want %d of %d", o.PendingCount(), o.PendingBytes(), pending, size)
			}
			n := int(arg) * 8
			want := pending == 0 || size+session.Overhead*pending+session.Cost(n) <= limit
			if o.Room(n) != want {
				t.Fatalf("Room(%d) = %v with %d pending of %d bytes, limit %d", n, !want, pending, size, limit)
			}
		}
	})
}
