package benchkit

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

	"github.com/skipwire/skipwire/p2pconn"
)

// plain TCP: the seed design. A 4-byte big-endian length, the payload and a
// flush per message through a bufio.Writer; no encryption.

// TCPListener is the plain TCP baseline's listener on loopback: it answers
// each opener's first byte and queues the connection for DialTCP.
type TCPListener struct {
	ln       net.Listener
	accepted chan net.Conn // connections a remote opened, after the first exchange
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// ListenTCP starts a TCPListener on 127.0.0.1, on a free port.
func ListenTCP() (*TCPListener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &TCPListener{ln: ln, accepted: make(chan net.Conn, 4), ctx: ctx, cancel: cancel}
	l.wg.Go(l.acceptLoop)
	return l, nil
}

func (l *TCPListener) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Go(func() { handOver(l.ctx, c, l.accepted, func(c net.Conn) { _ = c.Close() }) })
	}
}

// Close stops accepting, waits for the listener's goroutines and closes the
// connections no DialTCP took. Connections already taken stay open.
func (l *TCPListener) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.wg.Wait()
	drain(l.accepted, func(c net.Conn) { _ = c.Close() })
	return err
}

type tcpEnd struct {
	mu sync.Mutex
	w  *bufio.Writer // guarded by mu

	r *bufio.Reader
}

func newTCPEnd(c net.Conn) *tcpEnd {
	return &tcpEnd{w: bufio.NewWriter(c), r: bufio.NewReader(c)}
}

func (e *tcpEnd) Send(msg []byte) error {
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

func (e *tcpEnd) Recv() ([]byte, error) {
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

// OpenTCP opens the plain TCP baseline to to's TCP listener (see DialTCP);
// from takes no part. to must have been started with NodeConfig.TCP.
func OpenTCP(ctx context.Context, _, to *Node) (*Link, time.Duration, error) {
	if to.TCP == nil {
		return nil, 0, errors.New("tcp: the node has no TCP listener")
	}
	return DialTCP(ctx, to.TCP)
}

// DialTCP opens the plain TCP baseline to l: net.Dial and a one-byte round
// trip. It returns how long that took.
func DialTCP(ctx context.Context, l *TCPListener) (*Link, time.Duration, error) {
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", l.ln.Addr().String())
	if err != nil {
		return nil, 0, fmt.Errorf("tcp dial: %w", err)
	}
	took, cb, err := meet(ctx, start, c, l.accepted)
	if err != nil {
		_ = c.Close()
		return nil, 0, fmt.Errorf("tcp: %w", err)
	}
	return &Link{
		A:     newTCPEnd(c),
		B:     newTCPEnd(cb),
		Close: func() error { return errors.Join(c.Close(), cb.Close()) },
	}, took, nil
}
