// Command chat is a terminal chat between skipwire nodes. Started with no
// argument it listens and prints the command that joins it; started with
// the address of a node already in the chat, it joins, and meets every
// other member through it. Each line typed is sent to every member. With
// -metrics, it serves its Prometheus metrics over HTTP.
//
//	go run ./examples/chat                                     # terminal 1
//	go run ./examples/chat /ip4/127.0.0.1/tcp/.../p2p/12D3KooW...  # terminal 2
//	go run ./examples/chat -metrics 127.0.0.1:9100             # metrics at http://127.0.0.1:9100/metrics
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// The first Ctrl-C leaves the chat cleanly; a second one kills the program.
func main() { cli.Main(run) }

const usage = `Usage:
  chat [flags]                  start a chat and print how to join it
  chat [flags] <multiaddr>...   join the chat of the node(s) at these addresses

Lines typed are sent to every member of the chat, and lines from others are
printed with their sender's short Identifier. Ctrl-D (end of input) or Ctrl-C
leaves. Use -key to keep the same Identifier across runs, and -metrics to
serve Prometheus metrics.
`

// Chat messages: one type byte, then the payload.
const (
	msgText  = 'M' // a line of text
	msgHello = 'H' // full multiaddrs, one per line: the sender's, then the members it knows
)

// sendTimeout bounds the Send of one line to one member.
const sendTimeout = 5 * time.Second

// run is the program; main passes it the process's arguments and streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("chat", stderr, usage)
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "listen address, e.g. /ip4/0.0.0.0/tcp/4001 to be reachable from other machines (0 picks a free port)")
	keyFile := fs.String("key", "", "file holding this node's private key, created if absent, so that its Identifier survives restarts (default: a new key each run)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100 (port 0 picks a free port; default: no metrics)")
	logLevel := fs.String("log", "", "go-log level of libp2p and skipwire logs: debug, info, warn or error (default: error, or $GOLOG_LOG_LEVEL)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "chat: %s\n", err)
		return cli.ExitUsage
	}
	if err := cli.SetLogLevel(*logLevel); err != nil {
		return fail(err)
	}
	var join []peer.AddrInfo
	for _, a := range fs.Args() {
		info, _, err := cli.ParsePeer(a)
		if err != nil {
			return fail(err)
		}
		join = append(join, info)
	}

	var cfg p2pconn.Config
	var metricsURL string
	if *metricsAddr != "" {
		// Listen first: a bad address fails before anything starts, and port
		// 0 gets its real port, which the banner prints.
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fail(fmt.Errorf("-metrics: %s", cli.OneLine(err)))
		}
		reg := prometheus.NewRegistry()
		cfg.Metrics = reg
		ms := serveMetrics(ln, reg, stderr)
		defer ms.close() // after the chat's close, deferred below
		metricsURL = ms.url
	}

	key, err := cli.LoadKey(*keyFile)
	if err != nil {
		return fail(errors.New(cli.OneLine(err)))
	}
	h, err := cli.NewHost(cfg, key, *listen)
	if err != nil {
		return fail(err)
	}
	c, err := newChat(h, cfg, stdout)
	if err != nil {
		_ = h.Close()
		return fail(errors.New(cli.OneLine(err)))
	}
	defer c.close()
	c.banner(metricsURL)

	for _, info := range join {
		id, _ := identity.FromPeerID(info.ID) // checked by ParsePeer
		c.learn(id, info.Addrs)
		if _, err := c.connect(ctx, id); err != nil {
			if ctx.Err() != nil {
				return cli.ExitOK
			}
			return fail(fmt.Errorf("cannot reach %s: %s", id.Short(), cli.ConnectError(err)))
		}
	}

	lines := make(chan string)
	go readLines(stdin, lines) // ends with stdin; not waited for, as a read cannot be interrupted
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				c.out.Printf("* leaving\n")
				return cli.ExitOK
			}
			c.say(ctx, line)
		case <-ctx.Done():
			c.out.Printf("* leaving\n")
			return cli.ExitOK
		}
	}
}

// readLines sends each line of r to lines, and closes lines at the end of r.
func readLines(r io.Reader, lines chan<- string) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines <- sc.Text()
	}
}

// chat is one member of a chat: its manager, the members it knows, and a
// reader per connection.
type chat struct {
	h     host.Host
	m     *p2pconn.Manager
	self  identity.Identifier
	addrs []ma.Multiaddr // this node's full multiaddrs
	table *resolver.Static
	out   *cli.Printer

	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool // set by close: connections ending then are ours closing

	mu      sync.Mutex
	conns   map[p2pconn.Connection]bool
	known   map[identity.Identifier][]ma.Multiaddr // members' full multiaddrs
	dialing map[identity.Identifier]bool
}

func newChat(h host.Host, cfg p2pconn.Config, stdout io.Writer) (*chat, error) {
	table := resolver.NewStatic()
	// The table holds the addresses given on the command line and announced
	// by members; the peerstore those libp2p learned by itself.
	m, err := p2pconn.NewManager(h, resolver.NewChain(table, resolver.NewPeerstore(h.Peerstore())), cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &chat{
		h:       h,
		m:       m,
		self:    m.ID(),
		addrs:   cli.FullAddrs(h),
		table:   table,
		out:     cli.NewPrinter(stdout),
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[p2pconn.Connection]bool),
		known:   make(map[identity.Identifier][]ma.Multiaddr),
		dialing: make(map[identity.Identifier]bool),
	}
	c.wg.Go(c.acceptLoop)
	return c, nil
}

// close leaves the chat: every connection closes gracefully, so the others
// see this node leave rather than vanish. Shutdown order: manager (its
// Close waits for the graceful closes), then the chat's goroutines, then the
// host.
func (c *chat) close() {
	c.closing.Store(true)
	_ = c.m.Close()
	c.cancel()
	c.wg.Wait()
	_ = c.h.Close()
}

// banner prints who we are, where we listen, and metricsURL if not empty.
func (c *chat) banner(metricsURL string) {
	c.out.Printf("skipwire chat: you are %s\n", c.self.Short())
	c.out.Printf("  Identifier %s\n", c.self)
	for _, a := range c.addrs {
		c.out.Printf("  listening on %s\n", a)
	}
	if metricsURL != "" {
		c.out.Printf("  metrics at %s\n", metricsURL)
	}
	if len(c.addrs) > 0 {
		c.out.Printf("To join this chat from another terminal, run:\n  %s %s\n", cli.Command("chat"), c.addrs[0])
	}
	c.out.Printf("Type a line and press Enter to send it to everyone; Ctrl-D or Ctrl-C leaves.\n")
}

// acceptLoop tracks every connection a member opens to us.
func (c *chat) acceptLoop() {
	for {
		conn, err := c.m.Accept(c.ctx)
		if err != nil {
			return
		}
		c.track(conn)
	}
}

// connect opens (or returns) the connection to id and tracks it.
func (c *chat) connect(ctx context.Context, id identity.Identifier) (p2pconn.Connection, error) {
	conn, err := c.m.Connect(ctx, id)
	if err != nil {
		return nil, err
	}
	c.track(conn)
	return conn, nil
}

// track starts a new connection's reader and sends it our hello.
// A connection Connect returned may also come from Accept: it is tracked once.
func (c *chat) track(conn p2pconn.Connection) {
	c.mu.Lock()
	if c.conns[conn] || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	c.conns[conn] = true
	c.mu.Unlock()
	c.wg.Go(func() { c.read(conn) })
	ctx, cancel := context.WithTimeout(c.ctx, sendTimeout)
	defer cancel()
	_ = conn.Send(ctx, c.hello(conn.RemoteID()))
}

// hello lists our addresses, then those of the members we know, except to's.
func (c *chat) hello(to identity.Identifier) []byte {
	var b strings.Builder
	b.WriteByte(msgHello)
	for _, a := range c.addrs {
		b.WriteString(a.String() + "\n")
	}
	c.mu.Lock()
	for id, addrs := range c.known {
		if id == to {
			continue
		}
		for _, a := range addrs {
			b.WriteString(a.String() + "\n")
		}
	}
	c.mu.Unlock()
	return []byte(b.String())
}

// read prints the lines conn brings and acts on its hellos, until it dies.
// The member's first hello announces it, with the address it listens on (the
// connection's remote address is the joiner's outgoing port when it dialled
// us). Once the member is gone, it is no longer introduced to others.
func (c *chat) read(conn p2pconn.Connection) {
	from := conn.RemoteID()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		if _, ok := c.m.GetConnection(from); !ok {
			delete(c.known, from)
		}
		c.mu.Unlock()
	}()
	greeted := false
	for {
		msg, err := conn.Next(c.ctx)
		if err != nil {
			if !c.closing.Load() {
				if errors.Is(err, p2pconn.ErrConnectionLost) {
					c.out.Printf("* %s lost (connection lost)\n", from.Short())
				} else {
					c.out.Printf("* %s left\n", from.Short())
				}
			}
			return
		}
		if len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case msgText:
			c.out.Printf("[%s] %s\n", from.Short(), msg[1:])
		case msgHello:
			c.meet(from, string(msg[1:]))
			if !greeted {
				greeted = true
				c.out.Printf("* %s joined (%s)\n", from.Short(), c.listenAddr(from, conn))
			}
		}
	}
}

// meet records the addresses a hello lists and connects to the members we
// are not connected to yet.
func (c *chat) meet(from identity.Identifier, hello string) {
	byPeer := make(map[identity.Identifier][]ma.Multiaddr)
	for _, line := range strings.Fields(hello) {
		info, id, err := cli.ParsePeer(line)
		if err != nil || id == c.self {
			continue
		}
		byPeer[id] = append(byPeer[id], info.Addrs...)
	}
	for id, addrs := range byPeer {
		c.learn(id, addrs)
		if id == from {
			continue
		}
		if _, ok := c.m.GetConnection(id); ok {
			continue
		}
		c.mu.Lock()
		busy := c.dialing[id] || c.ctx.Err() != nil
		c.dialing[id] = true
		c.mu.Unlock()
		if busy {
			continue
		}
		c.wg.Go(func() {
			defer func() {
				c.mu.Lock()
				delete(c.dialing, id)
				c.mu.Unlock()
			}()
			if _, err := c.connect(c.ctx, id); err != nil && c.ctx.Err() == nil {
				c.out.Printf("* could not reach %s, introduced by %s: %s\n", id.Short(), from.Short(), cli.ConnectError(err))
			}
		})
	}
}

// learn records addrs (transport parts, without /p2p) as id's addresses.
func (c *chat) learn(id identity.Identifier, addrs []ma.Multiaddr) {
	c.table.Add(id, addrs...)
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: id.PeerID(), Addrs: addrs})
	if err != nil {
		return
	}
	c.mu.Lock()
	c.known[id] = full
	c.mu.Unlock()
}

// listenAddr returns the first address id's hello listed, or else conn's
// remote address.
func (c *chat) listenAddr(id identity.Identifier, conn p2pconn.Connection) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if addrs := c.known[id]; len(addrs) > 0 {
		return addrs[0].String()
	}
	return conn.RemoteAddr()
}

// say sends line to every member.
func (c *chat) say(ctx context.Context, line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	peers := c.m.ConnectedPeers()
	if len(peers) == 0 {
		c.out.Printf("* nobody else is here yet\n")
		return
	}
	msg := append([]byte{msgText}, line...)
	for _, id := range peers {
		conn, ok := c.m.GetConnection(id)
		if !ok {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err := conn.Send(sctx, msg)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.out.Printf("* could not send to %s: %s\n", id.Short(), cli.OneLine(err))
		}
	}
}

// metricsServer serves Prometheus metrics over HTTP: skipwire's, from the
// registry given as Config.Metrics, then those of prometheus.DefaultGatherer,
// where libp2p registers its own (swarm, identify, event bus...) and
// which holds the Go runtime and process collectors.
type metricsServer struct {
	url  string
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// metricsShutdownTimeout bounds how long close waits for requests in progress.
const metricsShutdownTimeout = 2 * time.Second

// serveMetrics serves reg's metrics at /metrics on ln until close. An error
// that stops the server early is printed to stderr; the chat goes on.
func serveMetrics(ln net.Listener, reg *prometheus.Registry, stderr io.Writer) *metricsServer {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{}))
	s := &metricsServer{
		url:  "http://" + ln.Addr().String() + "/metrics",
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "chat: metrics server stopped: %s\n", cli.OneLine(err))
		}
	}()
	return s
}

// close stops the server: it lets requests in progress finish, for at most
// metricsShutdownTimeout, and returns once the server is stopped.
func (s *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.done
}
