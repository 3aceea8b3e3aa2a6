package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/security/noise"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// rawProtocol is the protocol of the raw libp2p baseline: one byte each way,
// then skipwire's framing (uvarint length || payload) with nothing else.
const rawProtocol protocol.ID = "/bench/raw/1.0.0"

// node is one loopback endpoint of every contender: a libp2p host built from
// p2pconn.HostOptions serving both skipwire (through a Manager) and the raw
// protocol, and a plain TCP listener.
type node struct {
	h   host.Host
	m   *p2pconn.Manager
	id  identity.Identifier
	tcp net.Listener

	raw      chan network.Stream // raw streams a remote opened, after the first exchange
	accepted chan net.Conn       // TCP connections a remote opened, after the first exchange

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// securityOption selects the hosts' secure channel. "tls" keeps HostOptions
// as it is: TLS 1.3 is offered first and Noise second, so TLS is used.
// "noise" removes TLS, leaving Noise.
func securityOption(name string) (libp2p.Option, error) {
	switch name {
	case "tls":
		return func(*libp2p.Config) error { return nil }, nil
	case "noise":
		return func(c *libp2p.Config) error {
			c.SecurityTransports = slices.DeleteFunc(c.SecurityTransports, func(s config.Security) bool { return s.ID != noise.ID })
			if len(c.SecurityTransports) == 0 {
				return errors.New("p2pconn.HostOptions offers no Noise transport")
			}
			return nil
		}, nil
	default:
		return nil, fmt.Errorf("unknown security %q: want tls or noise", name)
	}
}

// newNode starts a node that resolves its peers through table and adds
// itself to it.
func newNode(cfg p2pconn.Config, sec libp2p.Option, table *resolver.Static) (_ *node, err error) {
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	opts := append(p2pconn.HostOptions(cfg), sec, libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()
	m, err := p2pconn.NewManager(h, table, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{
		h: h, m: m, id: m.ID(), tcp: ln,
		raw:      make(chan network.Stream, 4),
		accepted: make(chan net.Conn, 4),
		ctx:      ctx, cancel: cancel,
	}
	table.Add(n.id, h.Addrs()...)
	h.SetStreamHandler(rawProtocol, n.handleRaw)
	n.wg.Add(1)
	go n.acceptTCP()
	return n, nil
}

// handleRaw answers the opener's first byte and hands the stream over.
func (n *node) handleRaw(s network.Stream) {
	if err := echoByte(s); err != nil {
		_ = s.Reset()
		return
	}
	select {
	case n.raw <- s:
	case <-n.ctx.Done():
		_ = s.Reset()
	}
}

func (n *node) acceptTCP() {
	defer n.wg.Done()
	for {
		c, err := n.tcp.Accept()
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := echoByte(c); err != nil {
				_ = c.Close()
				return
			}
			select {
			case n.accepted <- c:
			case <-n.ctx.Done():
				_ = c.Close()
			}
		}()
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

// close stops the node: its manager, then its host and listener. Streams and
// connections still queued for a taker are reset.
func (n *node) close() error {
	n.cancel()
	err := n.m.Close()
	n.h.RemoveStreamHandler(rawProtocol)
	err = errors.Join(err, n.tcp.Close())
	n.wg.Wait()
	for {
		select {
		case s := <-n.raw:
			_ = s.Reset()
			continue
		case c := <-n.accepted:
			_ = c.Close()
			continue
		default:
		}
		break
	}
	return errors.Join(err, n.h.Close())
}

// newNodes starts count nodes, a few at a time.
func newNodes(count int, cfg p2pconn.Config, sec libp2p.Option, table *resolver.Static) ([]*node, error) {
	nodes := make([]*node, count)
	errs := make([]error, count)
	parallel(count, 4, func(i int) { nodes[i], errs[i] = newNode(cfg, sec, table) })
	if err := errors.Join(errs...); err != nil {
		closeNodes(nodes)
		return nil, err
	}
	return nodes, nil
}

func closeNodes(nodes []*node) error {
	errs := make([]error, len(nodes))
	parallel(len(nodes), 8, func(i int) {
		if nodes[i] != nil {
			errs[i] = nodes[i].close()
		}
	})
	return errors.Join(errs...)
}

// parallel runs f(0) ... f(count-1) on workers goroutines and waits.
func parallel(count, workers int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
}

// waitApart polls until a and b hold no libp2p connection and no skipwire
// connection to each other, so that the next link between them is dialed
// afresh.
func waitApart(ctx context.Context, a, b *node) error {
	for {
		_, ab := a.m.GetConnection(b.id)
		_, ba := b.m.GetConnection(a.id)
		if !ab && !ba && len(a.h.Network().ConnsToPeer(b.h.ID())) == 0 && len(b.h.Network().ConnsToPeer(a.h.ID())) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the hosts to disconnect: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
