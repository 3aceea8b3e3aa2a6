package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-varint"

	"github.com/skipwire/skipwire/p2pconn"
)

// openRaw opens the raw libp2p baseline to info: host.Connect, NewStream
// on rawProtocol and a one-byte round trip (the counterpart of skipwire's
// handshake).
func openRaw(ctx context.Context, h host.Host, info peer.AddrInfo) (network.Stream, error) {
	if err := h.Connect(ctx, info); err != nil {
		return nil, fmt.Errorf("raw libp2p connect: %w", err)
	}
	s, err := h.NewStream(ctx, info.ID, rawProtocol)
	if err != nil {
		return nil, fmt.Errorf("raw libp2p new stream: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	b := [1]byte{1}
	if _, err = s.Write(b[:]); err == nil {
		_, err = io.ReadFull(s, b[:])
	}
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("raw libp2p first exchange: %w", err)
	}
	_ = s.SetDeadline(noDeadline)
	return s, nil
}

// noDeadline clears a stream's deadline.
var noDeadline time.Time

// echoByte reads one byte of s and writes it back: the accepting side of
// openRaw's first exchange.
func echoByte(s network.Stream) error {
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return err
	}
	_, err := s.Write(b[:])
	return err
}

// readRaw reads skipwire's framing (uvarint length, payload) from s until
// the stream ends, as the raw baseline of examples/bench does: header bytes
// one by one, no buffer. On an idle connection it is a goroutine parked in
// a one-byte read: what an application needs to receive.
func readRaw(s network.Stream) {
	defer func() { _ = s.Reset() }()
	r := byteReader{s: s}
	for {
		n, err := varint.ReadUvarint(&r)
		if err != nil || n > p2pconn.DefaultMaxMessageSize {
			return
		}
		if _, err := io.CopyN(io.Discard, s, int64(n)); err != nil {
			return
		}
	}
}

// writeRaw writes msg as one frame of skipwire's framing, in one write.
func writeRaw(s network.Stream, msg []byte) error {
	frame := varint.ToUvarint(uint64(len(msg)))
	_, err := s.Write(append(frame, msg...))
	return err
}

// byteReader reads one byte at a time straight from a stream.
type byteReader struct {
	s network.Stream
	b [1]byte
}

func (r *byteReader) ReadByte() (byte, error) {
	for {
		n, err := r.s.Read(r.b[:])
		if n == 1 {
			return r.b[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// readSkipwire parks a goroutine in c.Next until the connection ends or
// ctx does: what an application needs to receive.
func readSkipwire(ctx context.Context, c p2pconn.Connection) {
	for {
		if _, err := c.Next(ctx); err != nil {
			return
		}
	}
}
