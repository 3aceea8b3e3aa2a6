package benchkit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
)

// The network layer's loads: a network.Network on the Manager of each node
// taking part, peers sending to one center through conduits. The center
// serves two channels: echoChannel, whose processor replies to each Request
// with its payload, and sinkChannel, whose processor counts what arrives.
const (
	echoChannel network.Channel = "bench/echo"
	sinkChannel network.Channel = "bench/sink"
)

// Nets is a network.Network on the Manager of a center node and of each of
// its peers. While it runs, the Networks own those Managers' Accept and read
// all their connections, so no other link can be opened between these
// nodes. Its loads run one at a time.
type Nets struct {
	Center *Node
	Peers  []*Node

	ctx     context.Context
	center  *network.Network
	peers   []*network.Network
	echo    []network.Conduit // of each peer
	sink    []network.Conduit // of each peer
	arrived *sink
}

// StartNetworks starts a Network with cfg on center's Manager and on each
// of peers', and registers the center's processors. ctx bounds every call
// the loads make and the wait of Disconnect. Close stops them.
func StartNetworks(ctx context.Context, center *Node, peers []*Node, cfg network.Config) (_ *Nets, err error) {
	n := &Nets{Center: center, Peers: peers, ctx: ctx, arrived: &sink{}}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if n.center, err = network.New(center.Manager, cfg); err != nil {
		return nil, err
	}
	echo := &echoProcessor{}
	if echo.c, err = n.center.Register(echoChannel, echo); err != nil {
		return nil, err
	}
	if _, err = n.center.Register(sinkChannel, n.arrived); err != nil {
		return nil, err
	}
	for _, p := range peers {
		pn, err := network.New(p.Manager, cfg)
		if err != nil {
			return nil, err
		}
		n.peers = append(n.peers, pn)
		n.echo = append(n.echo, pn.Conduit(echoChannel))
		n.sink = append(n.sink, pn.Conduit(sinkChannel))
	}
	return n, nil
}

// Close closes the Networks, then the connections between the center and
// the peers, and waits until they hold none.
func (n *Nets) Close() error {
	for _, pn := range n.peers {
		_ = pn.Close() // always nil
	}
	if n.center != nil {
		_ = n.center.Close()
	}
	return n.Disconnect()
}

// Disconnect closes the connections between the center and the peers and
// waits until they hold none, so that the next load dials afresh.
func (n *Nets) Disconnect() error {
	errs := make([]error, len(n.Peers))
	Parallel(len(n.Peers), 8, func(i int) {
		p := n.Peers[i]
		errs[i] = errors.Join(
			n.Center.Manager.Disconnect(p.ID),
			p.Manager.Disconnect(n.Center.ID),
			n.Center.Host.Network().ClosePeer(p.Host.ID()),
			WaitApart(n.ctx, n.Center, p))
	})
	return errors.Join(errs...)
}

// OneWay sends warm, then count messages of size bytes from the first peer
// to the center's sink with senders goroutines sharing one conduit, and
// times the count messages from the first Send until the center's
// processor has seen the last.
func (n *Nets) OneWay(size, senders, warm, count int) (ThroughputResult, error) {
	end := conduitEnd{ctx: n.ctx, c: n.sink[0], to: n.Center.ID}
	if err := n.sendAndWait(end, size, senders, warm); err != nil {
		return ThroughputResult{}, fmt.Errorf("warm-up: %w", err)
	}
	sys0 := ReadSyscalls()
	start := time.Now()
	if err := n.sendAndWait(end, size, senders, count); err != nil {
		return ThroughputResult{}, err
	}
	return ThroughputResult{Elapsed: time.Since(start), Syscalls: sys0.Since(count)}, nil
}

// sendAndWait sends count messages on e from senders goroutines and waits
// until the center's sink has seen them.
func (n *Nets) sendAndWait(e Endpoint, size, senders, count int) error {
	done := n.arrived.expect(count, false)
	if err := send(e, size, senders, count); err != nil {
		return err
	}
	return n.wait(done)
}

func (n *Nets) wait(done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-n.ctx.Done():
		return fmt.Errorf("waiting for the processor: %w", n.ctx.Err())
	}
}

// Requests makes warm+count Requests of size bytes from the first peer to
// the center's echo processor, which replies with the payload, and times
// the last count.
func (n *Nets) Requests(size, warm, count int) (RoundTripResult, error) {
	msg := make([]byte, size)
	res := RoundTripResult{RTTs: make([]time.Duration, 0, count)}
	var sys0 Syscalls
	for i := range warm + count {
		if i == warm {
			sys0 = ReadSyscalls()
		}
		start := time.Now()
		reply, err := n.echo[0].Request(n.ctx, n.Center.ID, msg)
		if err != nil {
			return res, fmt.Errorf("request %d: %w", i, err)
		}
		if i >= warm {
			res.RTTs = append(res.RTTs, time.Since(start))
		}
		if len(reply.Payload) != size {
			return res, fmt.Errorf("reply %d: %d bytes, want %d", i, len(reply.Payload), size)
		}
	}
	res.Syscalls = sys0.Since(count)
	return res, nil
}

// FanInResult is one sample of FanIn.
type FanInResult struct {
	// Elapsed runs from the first Send until the center's processor has
	// seen the last message.
	Elapsed time.Duration
	// Messages is how many messages were timed.
	Messages int
	// Delays are each message's time from just before its Send to its
	// processor call, in the order the processor saw them.
	Delays []time.Duration
}

// FanIn makes every peer send warm messages to the center's sink and waits
// for them (the connections are open and the Networks have exchanged their
// windows); then every peer sends count messages of size bytes (at least 8)
// at once, one sender each, each message stamped with the time just before
// its Send. It times them from the first Send until the center's processor
// has seen the last, and returns each message's delay.
func (n *Nets) FanIn(size, warm, count int) (FanInResult, error) {
	if size < 8 {
		return FanInResult{}, fmt.Errorf("fan-in: messages of %d bytes have no room for a time stamp", size)
	}
	if err := n.fanIn(size, warm, false); err != nil {
		return FanInResult{}, fmt.Errorf("warm-up: %w", err)
	}
	start := time.Now()
	if err := n.fanIn(size, count, true); err != nil {
		return FanInResult{}, err
	}
	res := FanInResult{Elapsed: time.Since(start), Messages: count * len(n.Peers)}
	res.Delays = n.arrived.takeDelays()
	return res, nil
}

// fanIn sends count stamped messages from each peer at once and waits until
// the center's sink has seen them all.
func (n *Nets) fanIn(size, count int, record bool) error {
	done := n.arrived.expect(count*len(n.Peers), record)
	errs := make([]error, len(n.Peers))
	var wg sync.WaitGroup
	for i := range n.Peers {
		wg.Go(func() {
			msg := make([]byte, size)
			for range count {
				binary.BigEndian.PutUint64(msg, uint64(time.Since(epoch)))
				if err := n.sink[i].Send(n.ctx, n.Center.ID, msg); err != nil {
					errs[i] = fmt.Errorf("peer %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return n.wait(done)
}

// epoch is the origin of the stamps in fan-in messages: a time with a
// monotonic reading, so that stamps and delays use the monotonic clock.
var epoch = time.Now()

// conduitEnd sends through a conduit to one node; it receives nothing.
type conduitEnd struct {
	ctx context.Context
	c   network.Conduit
	to  identity.Identifier
}

func (e conduitEnd) Send(msg []byte) error { return e.c.Send(e.ctx, e.to, msg) }
func (e conduitEnd) Recv() ([]byte, error) { return nil, errors.New("a conduit end receives nothing") }

// echoProcessor replies to each Request with its payload.
type echoProcessor struct{ c network.Conduit }

func (p *echoProcessor) ProcessIncomingMessage(ctx context.Context, m network.Message) {
	if !m.Call.IsZero() {
		_ = p.c.Reply(ctx, m.Call, m.Payload)
	}
}

// sink counts the messages its channel receives, and, when told to, notes
// each one's delay since the stamp in its first 8 bytes.
type sink struct {
	mu     sync.Mutex
	got    int             // messages seen; guarded by mu
	want   int             // close done when got reaches it; guarded by mu
	done   chan struct{}   // guarded by mu
	record bool            // guarded by mu
	delays []time.Duration // guarded by mu
}

// expect arranges for the returned channel to be closed once count more
// messages have arrived, noting their delays if record is set.
func (s *sink) expect(count int, record bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.done, s.record = s.got+count, make(chan struct{}), record
	s.delays = s.delays[:0]
	if count == 0 {
		close(s.done)
	}
	return s.done
}

func (s *sink) ProcessIncomingMessage(_ context.Context, m network.Message) {
	now := time.Since(epoch)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.record && len(m.Payload) >= 8 {
		s.delays = append(s.delays, now-time.Duration(binary.BigEndian.Uint64(m.Payload)))
	}
	s.got++
	if s.got == s.want {
		close(s.done)
	}
}

// takeDelays returns the delays noted since the last expect.
func (s *sink) takeDelays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.delays
	s.delays = nil
	return d
}
