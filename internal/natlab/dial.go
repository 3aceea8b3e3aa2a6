package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// dialSpec is the dialer's part of a scenario.
type dialSpec struct {
	Kind  Kind
	Peer  string   // the dialed node's Identifier
	Addrs []string // its /p2p-circuit addresses
	// Exchange: at least Messages numbered messages of Payload bytes, one
	// every Interval, until hole punching has had its outcome (a direct
	// connection that closed or lived 2 s, or a failed attempt), or for
	// MaxStream at most. DurationLimit: one every Interval until the
	// connection fails, MaxStream at most. DataLimit: Payload-byte
	// messages as fast as Send takes them, up to Bulk bytes.
	Messages  int
	Payload   int
	Interval  time.Duration
	MaxStream time.Duration
	Bulk      int64
	Result    string // the file the result goes to
}

// pings is how many libp2p pings measure a round trip.
const pings = 10

// dial runs the dialer's part of a scenario on h and m.
func dial(ctx context.Context, h host.Host, m *p2pconn.Manager, table *resolver.Static, tr *punchTracer, spec dialSpec) (*Result, error) {
	id, err := identity.Parse(spec.Peer)
	if err != nil {
		return nil, err
	}
	for _, s := range spec.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		table.Add(id, a)
	}
	w := watchConns(ctx, h, id.PeerID())
	defer w.stop()

	res := &Result{DialerCloses: m.ID().Compare(id) < 0}
	t0 := time.Now()
	conn, err := m.Connect(ctx, id)
	if err != nil {
		return nil, err
	}
	res.Connect = time.Since(t0)
	res.Path = conn.RemoteAddr()
	if rc := w.relayedConn(); rc != nil {
		extra := rc.Stat().Extra
		if d, ok := extra[client.StatLimitData].(uint64); ok {
			res.LimitData = int64(d)
		}
		res.LimitDuration, _ = extra[client.StatLimitDuration].(time.Duration)
	}

	switch spec.Kind {
	case Exchange:
		err = exchange(ctx, conn, w, tr, spec, res, t0)
	case DataLimit, DurationLimit:
		res.Limit, err = pushToLimit(ctx, conn, w, spec)
	}
	if err != nil {
		return nil, err
	}
	res.PathAtEnd = conn.RemoteAddr()
	for _, c := range h.Network().ConnsToPeer(id.PeerID()) {
		res.ConnsAtEnd = append(res.ConnsAtEnd, c.RemoteMultiaddr().String())
	}
	res.Punches = tr.punches()
	w.finish(res)
	return res, nil
}

// exchange sends numbered messages and checks their echoes, then measures
// round trips.
func exchange(ctx context.Context, conn p2pconn.Connection, w *connWatch, tr *punchTracer, spec dialSpec, res *Result, t0 time.Time) error {
	rctx, stopReading := context.WithCancel(ctx)
	rx := readEchoes(rctx, conn)
	msg := make([]byte, max(spec.Payload, 8))
	send := func(seq uint64) error {
		binary.BigEndian.PutUint64(msg, seq)
		if err := conn.Send(ctx, msg); err != nil {
			res.SendErr = err.Error()
			return err
		}
		res.Sent++
		return nil
	}
	if err := send(0); err != nil {
		stopReading()
		return fmt.Errorf("first message: %w", err)
	}
	select {
	case <-rx.first:
		res.FirstEcho = time.Since(t0)
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}

	// Hole punching has had its outcome once a direct connection closed or
	// lived 2 s, or an attempt failed.
	settled := func() bool {
		if at, closed := w.directState(); !at.IsZero() && (closed || time.Since(at) > 2*time.Second) {
			return true
		}
		return tr.failed()
	}
	start := time.Now()
	for seq := uint64(1); ; seq++ {
		if (int(seq) >= spec.Messages && settled()) || time.Since(start) > spec.MaxStream || ctx.Err() != nil {
			break
		}
		if send(seq) != nil {
			break
		}
		time.Sleep(spec.Interval)
	}
	rx.waitFor(res.Sent, 10*time.Second)
	stopReading()
	<-rx.done
	rx.result(res)

	// Round trips on the skipwire connection, wherever it runs.
	for range 20 {
		t := time.Now()
		if conn.Send(ctx, msg) != nil {
			break
		}
		if _, err := conn.Next(ctx); err != nil {
			break
		}
		res.RTTSkipwire = append(res.RTTSkipwire, time.Since(t))
	}
	if rc := w.relayedConn(); rc != nil {
		res.RTTPingRelayed, _ = pingConn(ctx, rc, pings)
	}
	return nil
}

// pushToLimit drives conn into the relay's limits: DataLimit sends
// spec.Payload-byte messages as fast as it can, up to spec.Bulk bytes,
// DurationLimit one every spec.Interval; both until Send fails or
// spec.MaxStream passes. Next runs all along.
func pushToLimit(ctx context.Context, conn p2pconn.Connection, w *connWatch, spec dialSpec) (*LimitHit, error) {
	var (
		mu      sync.Mutex
		nextErr error
		nextAt  time.Time
		echoed  int64
		closing bool // the connection is being closed here: not a failure
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := conn.Next(ctx)
			mu.Lock()
			if err != nil {
				if !closing {
					nextErr, nextAt = err, time.Now()
				}
				mu.Unlock()
				return
			}
			echoed += int64(len(m))
			mu.Unlock()
		}
	}()
	hit := &LimitHit{}
	var sendErr error
	var sendAt time.Time
	msg := make([]byte, max(spec.Payload, 8))
	for deadline := time.Now().Add(spec.MaxStream); time.Now().Before(deadline); {
		if spec.Kind == DataLimit && hit.SentBytes >= spec.Bulk {
			break
		}
		if err := conn.Send(ctx, msg); err != nil {
			sendErr, sendAt = err, time.Now()
			break
		}
		hit.SentBytes += int64(len(msg))
		if spec.Kind == DurationLimit {
			time.Sleep(spec.Interval)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		mu.Lock()
		closing = true // the limit was not hit
		mu.Unlock()
		_ = conn.Close()
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	hit.EchoedBytes = echoed
	relayAt := w.relayedAt()
	first, at := nextErr, nextAt
	if sendErr != nil && (first == nil || sendAt.Before(at)) {
		first, at = sendErr, sendAt
	}
	if first != nil {
		hit.Err, hit.After, hit.Lost = first.Error(), at.Sub(relayAt), errors.Is(first, p2pconn.ErrConnectionLost)
	}
	if sendErr != nil {
		hit.SendErr, hit.SendAfter = sendErr.Error(), sendAt.Sub(relayAt)
		hit.RelayLimit = errors.Is(sendErr, p2pconn.ErrRelayLimit)
	}
	return hit, nil
}

// echoes reads the echoes of numbered messages.
type echoes struct {
	first chan struct{} // closed at the first echo
	done  chan struct{} // closed when the reader returns
	mu    sync.Mutex
	seen  map[uint64]int
	next  uint64 // the number expected next
	out   int    // echoes out of order
	err   error  // Next's error, if it failed other than by ctx
	moved chan struct{}
}

func readEchoes(ctx context.Context, conn p2pconn.Connection) *echoes {
	e := &echoes{first: make(chan struct{}), done: make(chan struct{}), seen: make(map[uint64]int), moved: make(chan struct{})}
	go func() {
		defer close(e.done)
		for {
			m, err := conn.Next(ctx)
			if err != nil {
				e.mu.Lock()
				if ctx.Err() == nil {
					e.err = err
				}
				e.mu.Unlock()
				return
			}
			if len(m) < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(m)
			e.mu.Lock()
			if len(e.seen) == 0 {
				close(e.first)
			}
			e.seen[seq]++
			if e.seen[seq] == 1 && seq != e.next {
				e.out++
			}
			e.next = seq + 1
			close(e.moved)
			e.moved = make(chan struct{})
			e.mu.Unlock()
		}
	}()
	return e
}

// waitFor waits until n distinct numbers came back, at most d after the
// last one came.
func (e *echoes) waitFor(n int, d time.Duration) {
	for {
		e.mu.Lock()
		got, moved, failed := len(e.seen), e.moved, e.err != nil
		e.mu.Unlock()
		if got >= n || failed {
			return
		}
		select {
		case <-moved:
		case <-time.After(d):
			return
		}
	}
}

// result counts the echoes into r.
func (e *echoes) result(r *Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for seq := range uint64(r.Sent) {
		switch n := e.seen[seq]; {
		case n == 0:
			r.Lost++
		case n > 1:
			r.Duplicated += n - 1
		}
	}
	for _, n := range e.seen {
		r.Echoed += n
	}
	r.Reordered = e.out
	if e.err != nil {
		r.NextErr = e.err.Error()
	}
}

// pingConn runs n libp2p pings on c itself, not on the connection libp2p
// would pick for the peer.
func pingConn(ctx context.Context, c network.Conn, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := c.NewStream(network.WithAllowLimitedConn(ctx, "lab ping"))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	if err := msmux.SelectProtoOrFail(ping.ID, s); err != nil {
		s.Reset()
		return nil, err
	}
	_ = s.SetProtocol(ping.ID)
	out, in := make([]byte, ping.PingSize), make([]byte, ping.PingSize)
	var rtts []time.Duration
	for range n {
		_, _ = rand.Read(out)
		t := time.Now()
		if _, err := s.Write(out); err != nil {
			return rtts, err
		}
		if _, err := io.ReadFull(s, in); err != nil {
			return rtts, err
		}
		if !bytes.Equal(in, out) {
			return rtts, errors.New("ping: wrong answer")
		}
		rtts = append(rtts, time.Since(t))
	}
	return rtts, nil
}

// connWatch follows the libp2p connections to one peer: the first relayed
// one, and the first direct one, which it pings as soon as it opens (the
// duplicate cleanup may close it a second later).
type connWatch struct {
	h  host.Host
	p  peer.ID
	nb *network.NotifyBundle
	wg sync.WaitGroup

	mu       sync.Mutex
	relayed  network.Conn
	relayAt  time.Time
	direct   network.Conn
	directAt time.Time
	closedAt time.Time
	pings    []time.Duration
}

func watchConns(ctx context.Context, h host.Host, p peer.ID) *connWatch {
	w := &connWatch{h: h, p: p}
	w.nb = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() != p {
				return
			}
			now := time.Now()
			w.mu.Lock()
			defer w.mu.Unlock()
			switch {
			case c.Stat().Limited && w.relayed == nil:
				w.relayed, w.relayAt = c, now
			case !c.Stat().Limited && w.direct == nil:
				w.direct, w.directAt = c, now
				w.wg.Go(func() {
					rtts, _ := pingConn(ctx, c, pings)
					w.mu.Lock()
					w.pings = rtts
					w.mu.Unlock()
				})
			}
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if c == w.direct && w.closedAt.IsZero() {
				w.closedAt = time.Now()
			}
		},
	}
	h.Network().Notify(w.nb)
	return w
}

// stop ends the watch and waits for its pings.
func (w *connWatch) stop() {
	w.h.Network().StopNotify(w.nb)
	w.wg.Wait()
}

func (w *connWatch) relayedConn() network.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.relayed
}

func (w *connWatch) relayedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.relayAt
}

// directState returns when the direct connection opened (zero if none)
// and whether it closed.
func (w *connWatch) directState() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.directAt, !w.closedAt.IsZero()
}

// finish records the direct connection in r, once its pings are done.
func (w *connWatch) finish(r *Result) {
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.direct == nil {
		return
	}
	d := &Direct{After: w.directAt.Sub(w.relayAt), Addr: w.direct.RemoteMultiaddr().String(), Transport: "tcp"}
	if _, err := w.direct.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err == nil {
		d.Transport = "quic-v1"
	}
	if !w.closedAt.IsZero() {
		d.Closed, d.Lifetime = true, w.closedAt.Sub(w.directAt)
	}
	r.Direct = d
	r.RTTPingDirect = w.pings
}

// punchTracer records the hole-punch attempts (holepunch.EventTracer).
type punchTracer struct {
	mu   sync.Mutex
	list []Punch
}

func newPunchTracer() *punchTracer { return &punchTracer{} }

// Trace implements holepunch.EventTracer.
func (t *punchTracer) Trace(e *holepunch.Event) {
	end, ok := e.Evt.(*holepunch.EndHolePunchEvt)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.list = append(t.list, Punch{Success: end.Success, Took: end.EllapsedTime, Err: end.Error})
}

func (t *punchTracer) punches() []Punch {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Punch(nil), t.list...)
}

func (t *punchTracer) failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.list {
		if !p.Success {
			return true
		}
	}
	return false
}
