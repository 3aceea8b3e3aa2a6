package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// peersRole is a child process hosting many peers: libp2p hosts from
// p2pconn.HostOptions, each with a Manager. The idle peers do not listen;
// on request each connects to the central node and keeps the connection,
// a goroutine parked in Next (or, for raw libp2p, in a read of the stream).
// The fresh peers listen on 127.0.0.1, for the central node's cold
// Connects. The READY line lists the fresh peers' full multiaddrs.
var peersRole = testkit.Role{Name: "skipwire-scale-peers", Serve: servePeers}

// peersSpec is a peers process's argument.
type peersSpec struct {
	Peers     int           `json:"peers"`     // idle peers, each connecting to the central node
	Fresh     int           `json:"fresh"`     // listening peers for cold Connects
	Transport string        `json:"transport"` // "tcp" or "quic"
	Workers   int           `json:"workers"`   // peers connecting at once
	Keepalive time.Duration `json:"keepalive"` // p2pconn.Config.KeepaliveInterval; 0: the default
}

// peersAnswer is a peers process's answer to opConnect or opDrop.
type peersAnswer struct {
	OK     int      `json:"ok"`               // peers connected
	Failed int      `json:"failed"`           // peers whose connect failed
	Errors []string `json:"errors,omitempty"` // the first few distinct errors
	// Connects holds each successful connect's duration in ms, as the peer saw it.
	Connects []float64 `json:"connects_ms,omitempty"`
	Left     int       `json:"left,omitempty"` // opDrop: peers still connected after the wait
}

// rawProtocol is the raw libp2p baseline's protocol: a one-byte exchange,
// then nothing but a reader on each end.
const rawProtocol = "/skipwire-scale/raw/1.0.0"

// connectTimeout bounds one peer's connect.
const connectTimeout = time.Minute

// peerNode is one peer: its host, its manager and its current connection
// to the central node.
type peerNode struct {
	h    host.Host
	m    *p2pconn.Manager
	conn p2pconn.Connection // skipwire
	s    network.Stream     // raw libp2p
}

// peers is the state of a peers process.
type peers struct {
	spec    peersSpec
	table   *resolver.Static // the central node's address, for every Manager
	idle    []*peerNode
	fresh   []*peerNode
	ctx     context.Context // ends when the process is told to stop
	readers sync.WaitGroup  // every goroutine parked in a read
}

func servePeers(ctx context.Context, args []string, stdin io.Reader) (err error) {
	var spec peersSpec
	if len(args) != 1 {
		return errors.New("want one argument: the spec")
	}
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	ps := &peers{spec: spec, table: resolver.NewStatic(), ctx: ctx}
	defer func() {
		cancel()
		err = errors.Join(err, ps.close())
	}()
	if err := ps.start(); err != nil {
		return err
	}
	ready := make([]string, len(ps.fresh))
	for i, p := range ps.fresh {
		ready[i] = cli.FullAddrs(p.h)[0].String()
	}
	testkit.Ready(ready...)
	return serve(ctx, stdin, ps.handle)
}

// start starts the idle and the fresh peers.
func (ps *peers) start() error {
	cfg := p2pconn.Config{KeepaliveInterval: ps.spec.Keepalive}
	ps.idle = make([]*peerNode, ps.spec.Peers)
	ps.fresh = make([]*peerNode, ps.spec.Fresh)
	errs := make([]error, len(ps.idle)+len(ps.fresh))
	testkit.ForEach(len(errs), 4, func(i int) {
		if i < len(ps.idle) {
			ps.idle[i], errs[i] = newPeer(cfg, ps.table, "")
			return
		}
		listen := "/ip4/127.0.0.1/tcp/0"
		if ps.spec.Transport == "quic" {
			listen = "/ip4/127.0.0.1/udp/0/quic-v1"
		}
		p, err := newPeer(cfg, ps.table, listen)
		if err == nil {
			ps.serveFresh(p)
		}
		ps.fresh[i-len(ps.idle)], errs[i] = p, err
	})
	return errors.Join(errs...)
}

// newPeer starts a host listening on listen (nothing if empty) and its
// Manager.
func newPeer(cfg p2pconn.Config, table *resolver.Static, listen string) (*peerNode, error) {
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	opts := append(p2pconn.HostOptions(cfg), libp2p.Identity(key))
	if listen == "" {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	m, err := p2pconn.NewManager(h, table, cfg)
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return &peerNode{h: h, m: m}, nil
}

// serveFresh makes p take the connections the central node opens: a reader
// on each skipwire connection it accepts, and on each raw stream once it
// echoed the first byte.
func (ps *peers) serveFresh(p *peerNode) {
	p.h.SetStreamHandler(rawProtocol, func(s network.Stream) {
		if err := echoByte(s); err != nil {
			_ = s.Reset()
			return
		}
		readRaw(s)
	})
	ps.readers.Go(func() {
		for {
			c, err := p.m.Accept(ps.ctx)
			if err != nil {
				return
			}
			ps.readers.Go(func() { readSkipwire(ps.ctx, c) })
		}
	})
}

// handle answers one request.
func (ps *peers) handle(ctx context.Context, req request) answer {
	var a peersAnswer
	var err error
	switch req.Op {
	case opConnect:
		a, err = ps.connect(ctx, req.Mode, req.Target, req.Messages)
	case opDrop:
		a, err = ps.drop(ctx)
	default:
		err = fmt.Errorf("unknown request %q", req.Op)
	}
	if err != nil {
		return failed(err)
	}
	return answer{Peers: &a}
}

// connect connects every idle peer to target as mode, Workers at a time,
// and has each send messages messages of 128 bytes.
func (ps *peers) connect(ctx context.Context, mode, target string, messages int) (peersAnswer, error) {
	info, err := peer.AddrInfoFromString(target)
	if err != nil {
		return peersAnswer{}, err
	}
	id, err := identity.FromPeerID(info.ID)
	if err != nil {
		return peersAnswer{}, err
	}
	ps.table.Add(id, info.Addrs...)
	var open func(ctx context.Context, p *peerNode) error
	switch mode {
	case contenderSkipwire:
		open = func(ctx context.Context, p *peerNode) error {
			c, err := p.m.Connect(ctx, id)
			if err != nil {
				return err
			}
			p.conn = c
			ps.readers.Go(func() { readSkipwire(ps.ctx, c) })
			for range messages {
				if err := c.Send(ctx, make([]byte, 128)); err != nil {
					return err
				}
			}
			return nil
		}
	case contenderRaw:
		open = func(ctx context.Context, p *peerNode) error {
			s, err := openRaw(ctx, p.h, *info)
			if err != nil {
				return err
			}
			p.s = s
			ps.readers.Go(func() { readRaw(s) })
			for range messages {
				if err := writeRaw(s, make([]byte, 128)); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		return peersAnswer{}, fmt.Errorf("unknown mode %q", mode)
	}

	took := make([]time.Duration, len(ps.idle))
	errs := make([]error, len(ps.idle))
	testkit.ForEach(len(ps.idle), ps.spec.Workers, func(i int) {
		ctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		t0 := time.Now()
		errs[i] = open(ctx, ps.idle[i])
		took[i] = time.Since(t0)
	})
	var a peersAnswer
	seen := map[string]bool{}
	for i, err := range errs {
		if err == nil {
			a.OK++
			a.Connects = append(a.Connects, float64(took[i].Microseconds())/1000)
			continue
		}
		a.Failed++
		if msg := cli.OneLine(err); !seen[msg] && len(a.Errors) < 3 {
			seen[msg] = true
			a.Errors = append(a.Errors, msg)
		}
	}
	return a, nil
}

// drop closes every idle peer's connection and waits, at most 30 s, until
// the peers hold no libp2p connection and their readers have returned.
func (ps *peers) drop(ctx context.Context) (peersAnswer, error) {
	testkit.ForEach(len(ps.idle), 16, func(i int) {
		p := ps.idle[i]
		_ = p.m.CloseAll()
		if p.s != nil {
			_ = p.s.Reset()
		}
		for _, c := range p.h.Network().Conns() {
			_ = c.Close()
		}
		p.conn, p.s = nil, nil
	})
	var a peersAnswer
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.Left = 0
		for _, p := range ps.idle {
			if len(p.h.Network().Conns()) > 0 {
				a.Left++
			}
		}
		if a.Left == 0 || time.Now().After(deadline) {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close stops every peer: managers first, then hosts, a few at a time.
func (ps *peers) close() error {
	all := append(append([]*peerNode(nil), ps.idle...), ps.fresh...)
	errs := make([]error, len(all))
	testkit.ForEach(len(all), 16, func(i int) {
		if p := all[i]; p != nil {
			errs[i] = errors.Join(p.m.Close(), p.h.Close())
		}
	})
	ps.readers.Wait()
	return errors.Join(errs...)
}
