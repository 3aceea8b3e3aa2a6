package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/p2pconn"
)

// endpoint is one end of a link, seen the way each contender's user sees it.
type endpoint interface {
	// send writes msg as one message; safe for concurrent use.
	send(msg []byte) error
	// recv returns the next message in a slice the caller owns; one caller at a time.
	recv() ([]byte, error)
}

// link is one fresh connection between two nodes.
type link struct {
	a, b endpoint // a opened the link, b accepted it
	// close closes both ends and waits until the nodes hold no connection to
	// each other.
	close func() error
}

// contender is one way of sending messages between two nodes.
type contender struct {
	key   string // JSON key
	label string // table column
	// open opens a link from -> to and returns how long the opener took:
	// the whole dial, secure channel, muxer, stream and first round trip.
	open func(ctx context.Context, from, to *node) (*link, time.Duration, error)
}

var (
	skipwire  = contender{key: "skipwire", label: "skipwire", open: openSkipwire}
	rawLibp2p = contender{key: "libp2p", label: "raw libp2p", open: openRaw}
	plainTCP  = contender{key: "tcp", label: "plain TCP", open: openTCP}

	contenders = []contender{skipwire, rawLibp2p, plainTCP}
)

// skipwire: Manager.Connect on one side, Manager.Accept on the other, and
// Connection.Send / Connection.Next with the run's (cancellable) context.

type skipwireEnd struct {
	ctx context.Context
	c   p2pconn.Connection
}

func (e skipwireEnd) send(msg []byte) error { return e.c.Send(e.ctx, msg) }
func (e skipwireEnd) recv() ([]byte, error) { return e.c.Next(e.ctx) }

func openSkipwire(ctx context.Context, from, to *node) (*link, time.Duration, error) {
	start := time.Now()
	ca, err := from.m.Connect(ctx, to.id)
	took := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("skipwire connect: %w", err)
	}
	cb, err := to.m.Accept(ctx)
	if err != nil {
		_ = ca.Close()
		return nil, 0, fmt.Errorf("skipwire accept: %w", err)
	}
	if cb.RemoteID() != from.id {
		return nil, 0, fmt.Errorf("skipwire accept: got a connection from %s, want %s", cb.RemoteID().Short(), from.id.Short())
	}
	return &link{
		a: skipwireEnd{ctx, ca},
		b: skipwireEnd{ctx, cb},
		close: func() error {
			err := errors.Join(ca.Close(), cb.Close(), from.h.Network().ClosePeer(to.h.ID()))
			return errors.Join(err, waitApart(ctx, from, to))
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
	s   network.Stream
	max int

	mu  sync.Mutex // one frame is one locked write sequence
	buf []byte     // guarded by mu

	rb [1]byte // recv only
}

func newRawEnd(s network.Stream) *rawEnd {
	return &rawEnd{s: s, max: p2pconn.DefaultMaxMessageSize}
}

func (e *rawEnd) send(msg []byte) error {
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

func (e *rawEnd) recv() ([]byte, error) {
	n, err := varint.ReadUvarint(e)
	if err != nil {
		return nil, err
	}
	if n > uint64(e.max) {
		return nil, fmt.Errorf("frame of %d bytes over the limit", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(e.s, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func openRaw(ctx context.Context, from, to *node) (*link, time.Duration, error) {
	start := time.Now()
	if err := from.h.Connect(ctx, peer.AddrInfo{ID: to.h.ID(), Addrs: to.h.Addrs()}); err != nil {
		return nil, 0, fmt.Errorf("raw libp2p connect: %w", err)
	}
	s, err := from.h.NewStream(ctx, to.h.ID(), rawProtocol)
	if err != nil {
		return nil, 0, fmt.Errorf("raw libp2p new stream: %w", err)
	}
	if err := pingByte(s); err != nil {
		_ = s.Reset()
		return nil, 0, fmt.Errorf("raw libp2p first exchange: %w", err)
	}
	took := time.Since(start)
	var sb network.Stream
	select {
	case sb = <-to.raw:
	case <-ctx.Done():
		_ = s.Reset()
		return nil, 0, fmt.Errorf("raw libp2p accept: %w", ctx.Err())
	}
	return &link{
		a: newRawEnd(s),
		b: newRawEnd(sb),
		close: func() error {
			_ = s.Reset()
			_ = sb.Reset()
			return errors.Join(from.h.Network().ClosePeer(to.h.ID()), waitApart(ctx, from, to))
		},
	}, took, nil
}

// plain TCP: the seed design. A 4-byte big-endian length, the payload and a
// flush per message through a bufio.Writer; no encryption.

type tcpEnd struct {
	c net.Conn

	mu sync.Mutex
	w  *bufio.Writer // guarded by mu

	r *bufio.Reader
}

func newTCPEnd(c net.Conn) *tcpEnd {
	return &tcpEnd{c: c, w: bufio.NewWriter(c), r: bufio.NewReader(c)}
}

func (e *tcpEnd) send(msg []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := e.w.Write(msg); err != nil {
		return err
	}
	return e.w.Flush()
}

func (e *tcpEnd) recv() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(e.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > p2pconn.DefaultMaxMessageSize {
		return nil, fmt.Errorf("frame of %d bytes over the limit", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(e.r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func openTCP(ctx context.Context, from, to *node) (*link, time.Duration, error) {
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", to.tcp.Addr().String())
	if err != nil {
		return nil, 0, fmt.Errorf("tcp dial: %w", err)
	}
	if err := pingByte(c); err != nil {
		_ = c.Close()
		return nil, 0, fmt.Errorf("tcp first exchange: %w", err)
	}
	took := time.Since(start)
	var cb net.Conn
	select {
	case cb = <-to.accepted:
	case <-ctx.Done():
		_ = c.Close()
		return nil, 0, fmt.Errorf("tcp accept: %w", ctx.Err())
	}
	return &link{
		a:     newTCPEnd(c),
		b:     newTCPEnd(cb),
		close: func() error { return errors.Join(c.Close(), cb.Close()) },
	}, took, nil
}
