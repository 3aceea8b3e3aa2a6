package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
)

// ChildOptions place a node that AddChild runs in a child process.
type ChildOptions struct {
	// Listen is the node's listen multiaddr, with port 0. Default
	// Options.Listen.
	Listen string
	// Wrap is a command prefix that runs the child, e.g.
	// {"ip", "netns", "exec", "ns1"} for a node in a network namespace
	// (see testkit.ChildOptions).
	Wrap []string
}

// childStopTimeout bounds how long a child takes to stop once its stdin
// closes: its manager's graceful closes take up to CloseTimeout.
const childStopTimeout = 15 * time.Second

// procNode is the testbed's side of a node in a child process (ChildRole):
// it writes requests to the child's stdin and reads its answers and events
// from its stdout (see control.go).
type procNode struct {
	child *testkit.Child
	self  sg.Peer
	tb    *Testbed // for its Ledger and Resolutions

	wmu sync.Mutex // one request line at a time

	mu     sync.Mutex
	tab    sg.Table // the last table the child reported
	hasTab bool
	last   uint64                 // the last request ID
	calls  map[uint64]chan output // requests waiting for their answer
	killed bool                   // by kill: its exit status is SIGKILL's
}

// startChild starts the node cfg describes (its key, vector and timings)
// in a child process placed as o says, its DHT joined through the
// introducer, and returns once it listens.
func (tb *Testbed) startChild(ctx context.Context, cfg sg.Config, o ChildOptions) (*procNode, error) {
	if cfg.RoutingConnect != nil || cfg.MaintenanceConnect != nil {
		return nil, errors.New("testbed: a node in a child process cannot take Node.RoutingConnect or Node.MaintenanceConnect")
	}
	if o.Listen == "" {
		o.Listen = tb.opts.Listen
	}
	conn := tb.conn
	conn.Metrics = nil
	spec := childSpec{Listen: o.Listen, Conn: conn, Node: specOf(cfg), Introducer: tb.c.Node(0).AddrInfo(), DHTRefresh: tb.opts.DHTRefresh}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("testbed: child spec: %w", err)
	}
	p := &procNode{tb: tb, calls: make(map[uint64]chan output)}
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	c, err := testkit.Launch(ChildRole, testkit.ChildOptions{
		Args:         []string{string(js)},
		Env:          tb.opts.ChildEnv,
		Wrap:         o.Wrap,
		StartTimeout: timeout,
		Lines:        p.onLine,
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	p.child = c
	if err := p.parseReady(cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("testbed: node process %d: %w", c.Pid(), err), c.Kill())
	}
	return p, nil
}

// parseReady reads the child's READY fields: its Identifier, then its
// listen addresses (checked, not kept: other nodes find it through the
// DHT).
func (p *procNode) parseReady(cfg sg.Config) error {
	f := p.child.Ready
	if len(f) < 2 {
		return fmt.Errorf("READY %v: want an Identifier and addresses", f)
	}
	id, err := identity.Parse(f[0])
	if err != nil {
		return fmt.Errorf("READY: %w", err)
	}
	for _, s := range f[1:] {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("READY: %w", err)
		}
	}
	p.self = sg.Peer{ID: id, Key: cfg.Key, MV: cfg.MembershipVector}
	return nil
}

// onLine takes one line of the child's output: an answer goes to the
// request waiting for it, an event to the testbed.
func (p *procNode) onLine(line []byte) {
	var o output
	if err := json.Unmarshal(line, &o); err != nil {
		log.Warnw("unreadable line from a node process", "line", string(line), "err", err)
		return
	}
	switch o.Ev {
	case "":
		p.mu.Lock()
		ch := p.calls[o.ID]
		p.mu.Unlock()
		if ch != nil {
			ch <- o // buffered: one answer per request
		}
	case evTable:
		if o.Table != nil {
			p.mu.Lock()
			p.tab, p.hasTab = *o.Table, true
			p.mu.Unlock()
		}
	case evSent:
		p.tb.ledger.sent(o.From, o.To, o.Msg, o.Re, o.Kind, o.At)
	case evReceived:
		p.tb.ledger.received(o.To, o.From, o.Msg, o.Kind, o.At)
	case evFailed:
		p.tb.ledger.requestFailed(o.From, o.To, o.Msg, o.At)
	case evResolved:
		p.tb.resolve.add(o.How, o.Took, o.OK)
	default:
		log.Warnw("unknown event from a node process", "ev", o.Ev)
	}
}

// call sends req to the child and waits for its answer, the end of ctx, or
// the end of the child. The child gets ctx's deadline.
func (p *procNode) call(ctx context.Context, req request) (output, error) {
	ch := make(chan output, 1)
	p.mu.Lock()
	p.last++
	req.ID = p.last
	p.calls[req.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.calls, req.ID)
		p.mu.Unlock()
	}()
	if d, ok := ctx.Deadline(); ok {
		req.Deadline = d
	}
	line, err := json.Marshal(req)
	if err != nil {
		return output{}, fmt.Errorf("%s: %w", req.Op, err)
	}
	p.wmu.Lock()
	_, err = p.child.Stdin().Write(append(line, '\n'))
	p.wmu.Unlock()
	if err != nil {
		return output{}, fmt.Errorf("%s: node process %d: %w", req.Op, p.child.Pid(), err)
	}
	select {
	case o := <-ch:
		return o.answer(req.Op)
	case <-ctx.Done():
		return output{}, fmt.Errorf("%s: %w", req.Op, ctx.Err())
	case <-p.child.Exited():
		select {
		case o := <-ch: // every line is read before the exit is seen
			return o.answer(req.Op)
		default:
			return output{}, fmt.Errorf("%s: node process %d exited", req.Op, p.child.Pid())
		}
	}
}

// answer returns o, or the child's error as an error.
func (o output) answer(op string) (output, error) {
	if o.Err != "" {
		return o, fmt.Errorf("%s: %s", op, o.Err)
	}
	return o, nil
}

func (p *procNode) Self() sg.Peer { return p.self }

func (p *procNode) Table() sg.Table {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.hasTab {
		return sg.Table{Self: p.self}
	}
	return p.tab.Clone()
}

func (p *procNode) Search(ctx context.Context, target sg.Key) (sg.Result, error) {
	o, err := p.call(ctx, request{Op: opSearch, Target: target})
	if err != nil {
		return sg.Result{}, err
	}
	if o.Result == nil {
		return sg.Result{}, fmt.Errorf("search %d: no result in the answer", target)
	}
	return *o.Result, nil
}

func (p *procNode) join(ctx context.Context, introducer identity.Identifier) error {
	_, err := p.call(ctx, request{Op: opJoin, Introducer: introducer})
	return err
}

// kill sends SIGKILL to the child and waits until it has exited.
func (p *procNode) kill() (time.Time, error) {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	at := time.Now()
	return at, p.child.Kill()
}

// leave has the child leave and close its node, then stops the child.
func (p *procNode) leave(ctx context.Context) error {
	_, err := p.call(ctx, request{Op: opLeave})
	return errors.Join(err, p.child.Stop(childStopTimeout))
}

// stop closes the child's stdin and waits for it to exit cleanly; a
// killed child is not asked again.
func (p *procNode) stop() error {
	p.mu.Lock()
	killed := p.killed
	p.mu.Unlock()
	if killed {
		return nil
	}
	if err := p.child.Stop(childStopTimeout); err != nil {
		return fmt.Errorf("node process %d: %w", p.child.Pid(), err)
	}
	return nil
}

func (p *procNode) table(ctx context.Context) (sg.Table, error) {
	o, err := p.call(ctx, request{Op: opTable})
	if err != nil {
		return sg.Table{}, err
	}
	if o.Table == nil {
		return sg.Table{}, errors.New("table: no table in the answer")
	}
	return *o.Table, nil
}

func (p *procNode) conns(ctx context.Context) (connView, error) {
	o, err := p.call(ctx, request{Op: opConns})
	if err != nil {
		return connView{}, err
	}
	if o.Conns == nil {
		return connView{}, errors.New("conns: no connections in the answer")
	}
	return *o.Conns, nil
}
