package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// ChildRole is the child process of a node that runs apart from the
// testbed (Options.Children, AddChild). A test binary or a program that
// starts such nodes passes it to testkit.ChildMain first thing in its
// TestMain or main: the testbed runs the binary again as the node's
// process.
var ChildRole = testkit.Role{Name: "skipwire-skipgraph-node", Serve: serveChild}

// serveChild is a node in a child process: it builds the node args[0] (a
// childSpec) describes, then serves the testbed's requests from stdin
// until stdin ends (see the control protocol in control.go).
func serveChild(ctx context.Context, args []string, stdin io.Reader) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument (the node's spec), got %d", len(args))
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	out := &lineWriter{enc: json.NewEncoder(os.Stdout)}
	c, err := cluster.Start(ctx, cluster.Options{
		Size:       1,
		Listen:     spec.Listen,
		Config:     spec.Conn,
		DHTOptions: dhtOptions(spec.DHTRefresh, nil),
		Bootstrap:  []peer.AddrInfo{spec.Introducer},
		NewResolver: func(h host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
			return resolverFor(h, kad, func(how string, took time.Duration, ok bool) {
				out.write(output{Ev: evResolved, How: how, Took: took, OK: ok})
			})
		},
	})
	if err != nil {
		return err
	}
	self := c.ID(0)
	cfg := spec.Node.config()
	cfg.Observer = childObserver{out: out, self: self}
	node, nw, err := startNode(ctx, c, 0, cfg, !spec.DHTRefresh)
	if err != nil {
		return errors.Join(err, c.Close())
	}
	s := &server{node: node, nw: nw, c: c}
	ready := []string{self.String()}
	for _, a := range c.Node(0).Listen {
		ready = append(ready, a.String())
	}
	testkit.Ready(ready...)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { reportTables(ctx, node, out) })
	sc := bufio.NewScanner(stdin)
	sc.Buffer(nil, testkit.MaxLineSize)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "skip-graph node %s: bad request %q: %v\n", self.Short(), sc.Text(), err)
			continue
		}
		wg.Go(func() { out.write(s.handle(ctx, req)) })
	}
	// stdin ended: the testbed stops this node.
	cancel()
	wg.Wait()
	return errors.Join(sc.Err(), node.Close(), nw.Close(), c.Close())
}

// server answers the testbed's requests in a child.
type server struct {
	node *sg.Node
	nw   *network.Network
	c    *cluster.Cluster
}

// handle runs one request and returns its answer.
func (s *server) handle(ctx context.Context, req request) output {
	if !req.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	out := output{ID: req.ID}
	var err error
	switch req.Op {
	case opJoin:
		err = s.node.Join(ctx, req.Introducer)
	case opSearch:
		var r sg.Result
		if r, err = s.node.Search(ctx, req.Target); err == nil {
			out.Result = &r
		}
	case opLeave:
		// As localNode.leave: tell the neighbours, then close everything.
		err = s.node.Leave(ctx)
		err = errors.Join(err, s.node.Close(), s.nw.Close(), s.c.Stop(0))
	case opTable:
		t := s.node.Table()
		out.Table = &t
	case opConns:
		m := s.c.Manager(0)
		v := viewOf(s.c.Host(0), m, p2pconn.ProtocolFor(m.Config().NetworkName))
		out.Conns = &v
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

// reportEvery is how often a child looks whether its node's table changed.
// Every look costs: at 2 ms (the testbed's own pollInterval) an idle child
// under the race detector took about 2.5% of a core, twice what it takes
// at 50 ms.
const reportEvery = 5 * time.Millisecond

// reportTables writes the node's table whenever it changed, looking every
// reportEvery, until ctx ends.
func reportTables(ctx context.Context, node *sg.Node, out *lineWriter) {
	t := time.NewTicker(reportEvery)
	defer t.Stop()
	var last sg.Table
	for first := true; ; first = false {
		if tab := node.Table(); first || !tab.Equal(last) {
			out.write(output{Ev: evTable, Table: &tab})
			last = tab
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lineWriter writes the child's output lines, one JSON object each, whole.
// Its writes block while the pipe to the testbed is full; if the testbed
// has gone, the write kills the process (SIGPIPE on stdout), as it should.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *lineWriter) write(o output) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enc.Encode(o); err != nil {
		fmt.Fprintf(os.Stderr, "skip-graph node: write to the testbed: %v\n", err)
	}
}

// childObserver passes the node's sg.Observer calls to the testbed's
// Ledger.
type childObserver struct {
	out  *lineWriter
	self identity.Identifier
}

func (o childObserver) Sent(to identity.Identifier, id, re uint64, kind string) {
	o.out.write(output{Ev: evSent, From: o.self, To: to, Msg: id, Re: re, Kind: kind, At: time.Now()})
}

func (o childObserver) Received(from identity.Identifier, id uint64, kind string) {
	o.out.write(output{Ev: evReceived, From: from, To: o.self, Msg: id, Kind: kind, At: time.Now()})
}

func (o childObserver) RequestFailed(to identity.Identifier, id uint64, kind string, _ error) {
	o.out.write(output{Ev: evFailed, From: o.self, To: to, Msg: id, Kind: kind, At: time.Now()})
}
