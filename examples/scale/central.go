package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/examples/internal/cli"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// centralRole is the central node of one contender, in a process of its
// own: a libp2p host from p2pconn.HostOptions listening on 127.0.0.1 with,
// for skipwire, a Manager whose accepted connections each get a goroutine
// parked in Next, or, for raw libp2p, a stream handler that echoes the
// first byte and then parks in a read. It takes its baseline, prints READY
// with its full multiaddr, and measures when asked (opMeasure).
var centralRole = testkit.Role{Name: "skipwire-scale-central", Serve: serveCentral}

// centralSpec is a central node's argument.
type centralSpec struct {
	Contender string        `json:"contender"`
	Conns     int           `json:"conns"` // the peers that will connect
	Fresh     []string      `json:"fresh"` // the fresh peers' full multiaddrs, for cold Connects
	Transport string        `json:"transport"`
	Keepalive time.Duration `json:"keepalive"`
	Idle      time.Duration `json:"idle"`
	Raise     bool          `json:"raise"`
	Sites     bool          `json:"sites"`
	Profile   string        `json:"profile"`
}

// centralResult is what a central node measured, per connection where it
// says so (one end of each connection: the central node's).
type centralResult struct {
	Contender  string `json:"contender"`
	Negotiated string `json:"negotiated"` // transport, secure channel and muxer

	Conns             int     `json:"conns"`            // inbound connections held when measured
	AliveAfterIdle    int     `json:"alive_after_idle"` // and after the idle period
	BytesPerConn      float64 `json:"bytes_per_conn"`   // heap + stacks
	HeapPerConn       float64 `json:"heap_per_conn"`
	StackPerConn      float64 `json:"stack_per_conn"`
	RSSPerConn        float64 `json:"rss_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"` // the fewest of goroutineSamples
	// GoroutinesPeakPerConn is the most of goroutineSamples: the
	// connections' goroutines and those of a burst of health checks.
	GoroutinesPeakPerConn float64 `json:"goroutines_peak_per_conn"`
	HeapMiB               float64 `json:"heap_mib"` // live heap with the connections
	Goroutines            []group `json:"goroutine_kinds"`
	GoroutineBursts       []group `json:"goroutine_bursts,omitempty"` // the most goroutines against the fewest
	// With -sites: live timers and heap by where they were allocated.
	TimersPerConn  float64 `json:"timers_per_conn,omitempty"`
	Timers         []group `json:"timer_sites,omitempty"`
	HeapSites      []group `json:"heap_sites,omitempty"`        // bytes per connection
	OwnHeapPerConn float64 `json:"own_heap_per_conn,omitempty"` // allocated with p2pconn on the stack

	IdleSeconds    float64 `json:"idle_seconds"`
	IdleCPUSeconds float64 `json:"idle_cpu_seconds"`

	CachedP50Ns   float64    `json:"cached_connect_p50_ns"`
	CachedP99Ns   float64    `json:"cached_connect_p99_ns"`
	CachedMeanNs  float64    `json:"cached_connect_mean_ns"` // one untimed pass over every peer
	CachedAllocs  float64    `json:"cached_connect_allocs"`
	ColdP50Us     float64    `json:"cold_connect_p50_us"`
	ColdP99Us     float64    `json:"cold_connect_p99_us"`
	ColdUs        []float64  `json:"cold_connect_us"`
	ColdErrors    []string   `json:"cold_connect_errors,omitempty"`
	Raised        []string   `json:"raised_limits,omitempty"`
	Limits        []limitUse `json:"limits_in_use"`
	SettleSeconds float64    `json:"settle_seconds"` // from the request until every connection was in
}

// goroutineSamples is how many goroutine profiles, 200 ms apart, the
// goroutine figures come from.
const goroutineSamples = 5

// goroutineSample is one goroutine profile.
type goroutineSample struct {
	kinds map[goroutineKind]int
	total int
	prof  []byte
}

// central is a central node.
type central struct {
	spec    centralSpec
	h       host.Host
	m       *p2pconn.Manager // skipwire only
	proto   protocol.ID
	ctx     context.Context
	held    atomic.Int64   // inbound connections established and not ended
	readers sync.WaitGroup // the goroutines parked in Next or a read

	raised []string
	before snapshot
	kinds0 map[goroutineKind]int
	sites0 sites
}

func serveCentral(ctx context.Context, args []string, stdin io.Reader) (err error) {
	var spec centralSpec
	if len(args) != 1 {
		return errors.New("want one argument: the spec")
	}
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if spec.Sites {
		runtime.MemProfileRate = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &central{spec: spec, ctx: ctx}
	defer func() {
		cancel()
		err = errors.Join(err, c.close())
	}()
	if err := c.start(); err != nil {
		return err
	}
	testkit.Ready(cli.FullAddrs(c.h)[0].String())
	return serve(ctx, stdin, func(ctx context.Context, req request) answer {
		if req.Op != opMeasure {
			return failed(fmt.Errorf("unknown request %q", req.Op))
		}
		res, err := c.measure(ctx, req.Expect)
		if err != nil {
			return failed(err)
		}
		return answer{Central: res}
	})
}

// start starts the host (and the Manager) and takes the baseline.
func (c *central) start() error {
	spec := c.spec
	cfg := p2pconn.Config{MaxConnections: spec.Conns + len(spec.Fresh) + 64, KeepaliveInterval: spec.Keepalive}
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	listen := "/ip4/127.0.0.1/tcp/0"
	if spec.Transport == "quic" {
		listen = "/ip4/127.0.0.1/udp/0/quic-v1"
	}
	c.h, err = libp2p.New(append(p2pconn.HostOptions(cfg), libp2p.Identity(key), libp2p.ListenAddrStrings(listen))...)
	if err != nil {
		return fmt.Errorf("central host: %w", err)
	}
	table := resolver.NewStatic()
	for _, a := range spec.Fresh {
		info, err := peer.AddrInfoFromString(a)
		if err != nil {
			return err
		}
		id, err := identity.FromPeerID(info.ID)
		if err != nil {
			return err
		}
		table.Add(id, info.Addrs...)
	}
	switch spec.Contender {
	case contenderSkipwire:
		if c.m, err = p2pconn.NewManager(c.h, table, cfg); err != nil {
			return err
		}
		c.proto = c.m.Protocol()
		c.readers.Go(c.accept)
	case contenderRaw:
		c.proto = rawProtocol
		c.h.SetStreamHandler(rawProtocol, c.handleRaw)
	default:
		return fmt.Errorf("unknown contender %q", spec.Contender)
	}
	if spec.Raise {
		if c.raised, err = raiseLimits(c.h, c.proto, spec.Conns+len(spec.Fresh)); err != nil {
			return err
		}
	}
	benchkit.Settle(2 * time.Second)
	c.before = takeSnapshot()
	c.kinds0, _ = countGoroutines()
	if spec.Sites {
		c.sites0 = countSites()
	}
	return nil
}

// accept parks a goroutine in Next on each connection a peer opens.
func (c *central) accept() {
	for {
		conn, err := c.m.Accept(c.ctx)
		if err != nil {
			return
		}
		c.held.Add(1)
		c.readers.Go(func() {
			defer c.held.Add(-1)
			readSkipwire(c.ctx, conn)
		})
	}
}

// handleRaw answers a raw stream's first byte, then reads it until it ends
// (the handler's goroutine is the stream's reader).
func (c *central) handleRaw(s network.Stream) {
	if err := echoByte(s); err != nil {
		_ = s.Reset()
		return
	}
	c.held.Add(1)
	defer c.held.Add(-1)
	readRaw(s)
}

// measure waits until expect connections are in, then measures.
func (c *central) measure(ctx context.Context, expect int) (*centralResult, error) {
	res := &centralResult{Contender: c.spec.Contender, Raised: c.raised}
	t0 := time.Now()
	for int(c.held.Load()) < expect && time.Since(t0) < time.Minute {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.SettleSeconds = time.Since(t0).Seconds()
	benchkit.Settle(10 * time.Second)

	// Memory and goroutines.
	after := takeSnapshot()
	// The health loop starts pings in bursts: of goroutineSamples
	// profiles, the one with the fewest goroutines gives those a
	// connection holds, the one with the most the bursts beside them.
	var fewest, most goroutineSample
	for i := range goroutineSamples {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		var g goroutineSample
		g.kinds, g.prof = countGoroutines()
		for _, v := range g.kinds {
			g.total += v
		}
		if i == 0 || g.total < fewest.total {
			fewest = g
		}
		if g.total > most.total {
			most = g
		}
	}
	kinds, prof := fewest.kinds, fewest.prof
	n := int(c.held.Load())
	res.Conns = n
	if n == 0 {
		return nil, fmt.Errorf("no connection came in (%d expected)", expect)
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	res.HeapPerConn = per(after.Heap, c.before.Heap)
	res.StackPerConn = per(after.Stack, c.before.Stack)
	res.BytesPerConn = res.HeapPerConn + res.StackPerConn
	res.RSSPerConn = per(after.RSS, c.before.RSS)
	res.GoroutinesPerConn = float64(fewest.total-c.before.Goroutines) / float64(n)
	res.GoroutinesPeakPerConn = float64(most.total-c.before.Goroutines) / float64(n)
	res.HeapMiB = float64(after.Heap) / (1 << 20)
	toGroup := func(k goroutineKind, d float64) group {
		return group{PerConn: d, Where: k.Where, Owner: k.Owner, Entry: k.Entry}
	}
	res.Goroutines = perConn(c.kinds0, kinds, n, 0.01, toGroup)
	res.GoroutineBursts = perConn(kinds, most.kinds, n, 0.005, toGroup)
	if c.spec.Sites {
		c.sitesPerConn(res, n)
	}
	res.Limits = limitsInUse(c.h, c.proto)
	res.Negotiated = c.negotiated()
	if c.spec.Profile != "" {
		if err := c.writeProfiles(prof); err != nil {
			return nil, err
		}
	}

	// CPU while idle.
	if c.spec.Profile != "" {
		f, err := os.Create(filepath.Join(c.spec.Profile, "cpu-idle-"+c.spec.Contender+".pprof"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	cpu0, w0 := cpuTime(), time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(c.spec.Idle):
	}
	res.IdleCPUSeconds = (cpuTime() - cpu0).Seconds()
	res.IdleSeconds = time.Since(w0).Seconds()
	if c.spec.Profile != "" {
		pprof.StopCPUProfile()
	}
	res.AliveAfterIdle = int(c.held.Load())

	c.cachedConnects(ctx, res)
	c.coldConnects(ctx, res)
	return res, nil
}

// sitesPerConn fills in the live timers and heap per connection by where
// they were allocated.
func (c *central) sitesPerConn(res *centralResult, n int) {
	now := countSites()
	total := 0
	for k, v := range now.Timers {
		total += v - c.sites0.Timers[k]
	}
	res.TimersPerConn = float64(total) / float64(n)
	res.Timers = perConn(c.sites0.Timers, now.Timers, n, 0.01, func(k string, d float64) group {
		return group{PerConn: d, Where: k}
	})
	res.HeapSites = perConn(c.sites0.Heap, now.Heap, n, 32, func(k string, d float64) group {
		return group{PerConn: d, Where: k}
	})
	res.OwnHeapPerConn = float64(now.Own-c.sites0.Own) / float64(n)
}

// negotiated names the transport, secure channel and muxer of one
// connection.
func (c *central) negotiated() string {
	for _, conn := range c.h.Network().Conns() {
		st := conn.ConnState()
		parts := []string{st.Transport, string(st.Security), string(st.StreamMultiplexer)}
		return strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), " ")
	}
	return ""
}

// writeProfiles writes the goroutine profile (text) and a heap profile;
// measure adds the CPU profile of the idle period.
func (c *central) writeProfiles(goroutines []byte) error {
	dir := c.spec.Profile
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(dir, "goroutines-"+c.spec.Contender+".txt")
	if err := os.WriteFile(name, goroutines, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "heap-"+c.spec.Contender+".pprof"))
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
}

// close stops the node: the Manager first (its peers learn that it left),
// then the host.
func (c *central) close() error {
	var err error
	if c.m != nil {
		err = c.m.Close()
	}
	if c.h != nil {
		err = errors.Join(err, c.h.Close())
	}
	c.readers.Wait()
	return err
}
