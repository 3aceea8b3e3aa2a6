package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/p2pconn"
)

// Endpoint is one end of a link, seen the way each kind of link's user sees
// it.
type Endpoint interface {
	// Send writes msg as one message; safe for concurrent use.
	Send(msg []byte) error
	// Recv returns the next message in a slice the caller owns; one caller
	// at a time.
	Recv() ([]byte, error)
}

// Link is one fresh connection between two nodes.
type Link struct {
	// A opened the link, B accepted it.
	A, B Endpoint
	// Close closes both ends and, for links between Nodes, waits until the
	// nodes hold no connection to each other. Calling it again does no
	// harm, though it may return errors.
	Close func() error
}

// Opener opens a link from -> to and returns how long the opener took: the
// whole dial, secure channel, muxer, stream and first round trip.
type Opener func(ctx context.Context, from, to *Node) (*Link, time.Duration, error)

var (
	_ Opener = OpenSkipwire
	_ Opener = OpenRaw
	_ Opener = OpenRawCombining
	_ Opener = OpenTCP
)

// skipwire: Manager.Connect on one side, Manager.Accept on the other, and
// Connection.Send / Connection.Next with the link's context.

type skipwireEnd struct {
	ctx context.Context
	c   p2pconn.Connection
}

func (e skipwireEnd) Send(msg []byte) error { return e.c.Send(e.ctx, msg) }
func (e skipwireEnd) Recv() ([]byte, error) { return e.c.Next(e.ctx) }

// OpenSkipwire connects from's Manager to to's and takes the connection
// from to's Accept. ctx bounds the opening and the close's wait, and is the
// context every Send and Next of the link gets.
func OpenSkipwire(ctx context.Context, from, to *Node) (*Link, time.Duration, error) {
	start := time.Now()
	ca, err := from.Manager.Connect(ctx, to.ID)
	took := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("skipwire connect: %w", err)
	}
	cb, err := to.Manager.Accept(ctx)
	if err != nil {
		_ = ca.Close()
		return nil, 0, fmt.Errorf("skipwire accept: %w", err)
	}
	if cb.RemoteID() != from.ID {
		return nil, 0, fmt.Errorf("skipwire accept: got a connection from %s, want %s", cb.RemoteID().Short(), from.ID.Short())
	}
	return &Link{
		A: skipwireEnd{ctx, ca},
		B: skipwireEnd{ctx, cb},
		Close: func() error {
			err := errors.Join(ca.Close(), cb.Close(), from.Host.Network().ClosePeer(to.Host.ID()))
			return errors.Join(err, WaitApart(ctx, from, to))
		},
	}, took, nil
}

// raw libp2p: the same framing written straight on a libp2p stream, read
// without a buffer or a reader goroutine: the limit skipwire can reach.

// copyLimit mirrors p2pconn: a message up to this size goes out with its
// header in one stream write; a larger one in two (header, payload), without
// a copy.
const copyLimit = 8 << 10

type rawEnd struct {
	s network.Stream

	mu  sync.Mutex // one frame is one locked write sequence
	buf []byte     // guarded by mu

	rb [1]byte // Recv only
}

func (e *rawEnd) Send(msg []byte) error {
	var hdr [varint.MaxLenUvarint63]byte
	h := varint.PutUvarint(hdr[:], uint64(len(msg)))
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(msg) <= copyLimit {
		e.buf = append(append(e.buf[:0], hdr[:h]...), msg...)
		_, err := e.s.Write(e.buf)
		return err
	}
	if _, err := e.s.Write(hdr[:h]); err != nil {
		return err
	}
	_, err := e.s.Write(msg)
	return err
}

// ReadByte reads one header byte straight from the stream, as p2pconn does.
func (e *rawEnd) ReadByte() (byte, error) {
	for {
		n, err := e.s.Read(e.rb[:])
		if n == 1 {
			return e.rb[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func (e *rawEnd) Recv() ([]byte, error) {
	n, err := varint.ReadUvarint(e)
	if err != nil {
		return nil, err
	}
	if n > p2pconn.DefaultMaxMessageSize {
		return nil, fmt.Errorf("frame of %d bytes over the limit", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(e.s, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// OpenRaw opens the raw libp2p baseline from -> to: host.Connect, NewStream
// on the raw protocol and a one-byte round trip. Its ends write skipwire's
// framing straight on the stream (frames up to 8 KiB copied behind their
// header in one write) and read it a byte at a time, with no buffer.
func OpenRaw(ctx context.Context, from, to *Node) (*Link, time.Duration, error) {
	return openRaw(ctx, from, to, func(e *rawEnd) Endpoint { return e })
}

// openRaw opens a raw libp2p stream from -> to and makes each end with end.
func openRaw(ctx context.Context, from, to *Node, end func(*rawEnd) Endpoint) (*Link, time.Duration, error) {
	start := time.Now()
	if err := from.Host.Connect(ctx, peer.AddrInfo{ID: to.Host.ID(), Addrs: to.Host.Addrs()}); err != nil {
		return nil, 0, fmt.Errorf("raw libp2p connect: %w", err)
	}
	s, err := from.Host.NewStream(ctx, to.Host.ID(), rawProtocol)
	if err != nil {
		return nil, 0, fmt.Errorf("raw libp2p new stream: %w", err)
	}
	took, sb, err := meet(ctx, start, s, to.raw)
	if err != nil {
		_ = s.Reset()
		return nil, 0, fmt.Errorf("raw libp2p: %w", err)
	}
	return &Link{
		A: end(&rawEnd{s: s}),
		B: end(&rawEnd{s: sb}),
		Close: func() error {
			_ = s.Reset()
			_ = sb.Reset()
			return errors.Join(from.Host.Network().ClosePeer(to.Host.ID()), WaitApart(ctx, from, to))
		},
	}, took, nil
}

// meet makes the opener's first exchange on rw, notes how long the opening
// took since start, and takes the accepting side from accepted.
func meet[T any](ctx context.Context, start time.Time, rw io.ReadWriter, accepted <-chan T) (time.Duration, T, error) {
	var other T
	if err := pingByte(rw); err != nil {
		return 0, other, fmt.Errorf("first exchange: %w", err)
	}
	took := time.Since(start)
	select {
	case other = <-accepted:
		return took, other, nil
	case <-ctx.Done():
		return 0, other, fmt.Errorf("accept: %w", ctx.Err())
	}
}

// handOver answers the first byte of rw and queues rw on to, or drops it
// when that fails or ctx ends first.
func handOver[T io.ReadWriter](ctx context.Context, rw T, to chan<- T, drop func(T)) {
	if err := echoByte(rw); err != nil {
		drop(rw)
		return
	}
	select {
	case to <- rw:
	case <-ctx.Done():
		drop(rw)
	}
}

// drain drops what is queued on ch without waiting.
func drain[T any](ch <-chan T, drop func(T)) {
	for {
		select {
		case v := <-ch:
			drop(v)
		default:
			return
		}
	}
}

// echoByte reads one byte and writes it back: the first exchange of the raw
// and TCP baselines, the counterpart of skipwire's handshake round trip.
func echoByte(rw io.ReadWriter) error {
	var b [1]byte
	if _, err := io.ReadFull(rw, b[:]); err != nil {
		return err
	}
	_, err := rw.Write(b[:])
	return err
}

// pingByte writes one byte and reads the echo.
func pingByte(rw io.ReadWriter) error {
	b := [1]byte{1}
	if _, err := rw.Write(b[:]); err != nil {
		return err
	}
	_, err := io.ReadFull(rw, b[:])
	return err
}
