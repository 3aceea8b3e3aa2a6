package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Demo messages: one kind byte, an 8-byte sequence number, then padding up
// to the payload size. A request is echoed back with the kind changed.
const (
	kindRequest = 1
	kindEcho    = 2
	headerSize  = 9
)

// echoTimeout is how long a request waits for its echo before it counts as lost.
const echoTimeout = 5 * time.Second

// counters are the message totals over the whole run.
type counters struct {
	sent      atomic.Int64 // requests and echoes whose Send returned nil
	delivered atomic.Int64 // messages read by Next
	sendErrs  atomic.Int64 // Sends that failed
	timeouts  atomic.Int64 // requests whose echo never came

	mu   sync.Mutex
	rtts []time.Duration
}

func (c *counters) addRTT(d time.Duration) {
	c.mu.Lock()
	c.rtts = append(c.rtts, d)
	c.mu.Unlock()
}

func (c *counters) lost() int64 { return c.sent.Load() - c.delivered.Load() }

// service is the demo application on one node incarnation: it reads every
// connection of the node's manager, whoever opened it, echoes requests and
// hands echoes to the pinger waiting for them.
type service struct {
	m   *p2pconn.Manager
	cnt *counters

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[p2pconn.Connection]bool
	echoes map[identity.Identifier]chan uint64
}

func newService(m *p2pconn.Manager, cnt *counters) *service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{
		m:      m,
		cnt:    cnt,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[p2pconn.Connection]bool),
		echoes: make(map[identity.Identifier]chan uint64),
	}
	s.wg.Go(s.acceptLoop)
	return s
}

// close stops the service and waits for its goroutines.
func (s *service) close() {
	s.cancel()
	s.wg.Wait()
}

// acceptLoop tracks every connection a remote node opens.
func (s *service) acceptLoop() {
	for {
		c, err := s.m.Accept(s.ctx)
		if err != nil {
			return
		}
		s.track(c)
	}
}

// track starts one reader per connection: a connection Connect returns may
// be the one a remote opened, which Accept also yields.
func (s *service) track(c p2pconn.Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c] || s.ctx.Err() != nil {
		return
	}
	s.conns[c] = true
	s.wg.Go(func() { s.read(c) })
}

// connect returns the connection to id, opening it if needed, and tracks it.
func (s *service) connect(ctx context.Context, id identity.Identifier) (p2pconn.Connection, error) {
	c, err := s.m.Connect(ctx, id)
	if err != nil {
		return nil, err
	}
	s.track(c)
	return c, nil
}

// read handles the messages of c until it dies or the service closes.
func (s *service) read(c p2pconn.Connection) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	echoes := s.echoChan(c.RemoteID())
	for {
		msg, err := c.Next(s.ctx)
		if err != nil {
			return
		}
		s.cnt.delivered.Add(1)
		if len(msg) < headerSize {
			continue
		}
		switch msg[0] {
		case kindRequest:
			msg[0] = kindEcho
			if err := c.Send(s.ctx, msg); err != nil {
				s.cnt.sendErrs.Add(1)
				continue
			}
			s.cnt.sent.Add(1)
		case kindEcho:
			select {
			case echoes <- binary.BigEndian.Uint64(msg[1:headerSize]):
			case <-s.ctx.Done():
				return
			}
		}
	}
}

// echoChan returns the channel that carries the sequence numbers of the
// echoes from peer id.
func (s *service) echoChan(id identity.Identifier) chan uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.echoes[id]
	if ch == nil {
		ch = make(chan uint64, 16)
		s.echoes[id] = ch
	}
	return ch
}

// ping sends n requests of size bytes to id, one at a time, each waiting for
// its echo, and records the round trips.
func (s *service) ping(ctx context.Context, id identity.Identifier, n, size int, seq *atomic.Uint64) error {
	c, err := s.connect(ctx, id)
	if err != nil {
		return err
	}
	echoes := s.echoChan(id)
	msg := make([]byte, max(size, headerSize))
	for range n {
		want := seq.Add(1)
		msg[0] = kindRequest
		binary.BigEndian.PutUint64(msg[1:headerSize], want)
		start := time.Now()
		if err := c.Send(ctx, msg); err != nil {
			s.cnt.sendErrs.Add(1)
			return fmt.Errorf("send to %s: %w", id.Short(), err)
		}
		s.cnt.sent.Add(1)
		if err := waitEcho(ctx, echoes, want); err != nil {
			s.cnt.timeouts.Add(1)
			return fmt.Errorf("echo %d from %s: %w", want, id.Short(), err)
		}
		s.cnt.addRTT(time.Since(start))
	}
	return nil
}

// waitEcho waits for the echo numbered want, skipping older ones.
func waitEcho(ctx context.Context, echoes <-chan uint64, want uint64) error {
	t := time.NewTimer(echoTimeout)
	defer t.Stop()
	for {
		select {
		case got := <-echoes:
			if got == want {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no echo after %s", echoTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
