package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/skipwire/skipwire/internal/testkit"
)

// peerProcs are the processes hosting the peers.
type peerProcs struct {
	procs []*proc
	fresh []string // the fresh peers' full multiaddrs
}

// startPeers starts o.procs processes holding o.n idle peers between them,
// and one more holding o.cold fresh peers: the central node's cold
// Connects go to a process that the idle peers' health checks do not load.
func startPeers(ctx context.Context, o options) (*peerProcs, error) {
	ps := &peerProcs{procs: make([]*proc, o.procs+1)}
	errs := make([]error, len(ps.procs))
	var wg sync.WaitGroup
	for i := range ps.procs {
		spec := peersSpec{Peers: o.n / o.procs, Transport: o.transport, Workers: o.workers, Keepalive: o.keepalive}
		if i < o.n%o.procs {
			spec.Peers++
		}
		if i == o.procs {
			spec.Peers, spec.Fresh = 0, o.cold
		}
		// Starting a host takes a few ms of CPU; allow for a busy machine.
		start := time.Minute + time.Duration(spec.Peers+spec.Fresh)*20*time.Millisecond
		wg.Go(func() { ps.procs[i], errs[i] = launch(peersRole, spec, o.logLevel, start) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(fmt.Errorf("starting the peers: %w", err), ps.stop())
	}
	ps.fresh = ps.procs[o.procs].child.Ready
	if len(ps.fresh) != o.cold {
		return nil, errors.Join(fmt.Errorf("the fresh peers' process announced %d peers, want %d", len(ps.fresh), o.cold), ps.stop())
	}
	return ps, ctx.Err()
}

// stop stops every peers process, waiting for their hosts to close.
func (ps *peerProcs) stop() error {
	errs := make([]error, len(ps.procs))
	var wg sync.WaitGroup
	for i, p := range ps.procs {
		if p != nil {
			wg.Go(func() { errs[i] = p.stop(5 * time.Minute) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// callAll sends req to every peers process at once and returns their
// answers.
func (ps *peerProcs) callAll(ctx context.Context, req request) ([]*peersAnswer, error) {
	out := make([]*peersAnswer, len(ps.procs))
	errs := make([]error, len(ps.procs))
	var wg sync.WaitGroup
	for i, p := range ps.procs {
		wg.Go(func() {
			a, err := p.call(ctx, req)
			out[i], errs[i] = a.Peers, err
			if err == nil && a.Peers == nil {
				errs[i] = fmt.Errorf("%s: process %d gave no answer", req.Op, p.child.Pid())
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// rss returns the peers processes' resident set size, summed (Linux).
func (ps *peerProcs) rss() uint64 {
	var sum uint64
	for _, p := range ps.procs {
		sum += rss(strconv.Itoa(p.child.Pid()))
	}
	return sum
}

// contenderResult is one contender's run.
type contenderResult struct {
	Name    string         `json:"name"`
	Central *centralResult `json:"central"`
	// The peers' side of establishing the connections.
	Connected      int      `json:"connected"`
	Failed         int      `json:"failed"`
	Errors         []string `json:"errors,omitempty"`
	ConnectSeconds float64  `json:"connect_seconds"` // until every peer had connected (or failed)
	PeerConnectP50 float64  `json:"peer_connect_p50_ms"`
	PeerConnectP99 float64  `json:"peer_connect_p99_ms"`
	PeersRSSMiB    float64  `json:"peers_rss_mib"` // the peers processes, connected
	LeftAfterDrop  int      `json:"left_after_drop,omitempty"`
}

// runContender starts name's central node, connects every peer to it,
// has it measure, then stops it and disconnects the peers.
func runContender(ctx context.Context, o options, name string, ps *peerProcs, progress func(string, ...any)) (_ *contenderResult, err error) {
	spec := centralSpec{
		Contender: name, Conns: o.n, Fresh: ps.fresh, Transport: o.transport, Keepalive: o.keepalive,
		Idle: o.idle, Raise: o.raise, Sites: o.sites, Profile: o.profile,
	}
	progress("%s: starting the central node", name)
	c, err := launch(centralRole, spec, o.logLevel, time.Minute)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			err = errors.Join(err, c.stop(2*time.Minute))
		}
	}()
	if len(c.child.Ready) != 1 {
		return nil, fmt.Errorf("central node's READY %v: want its address", c.child.Ready)
	}
	r := &contenderResult{Name: name}

	progress("%s: connecting %d peers", name, o.n)
	t0 := time.Now()
	answers, err := ps.callAll(ctx, request{Op: opConnect, Mode: name, Target: c.child.Ready[0], Messages: o.messages})
	if err != nil {
		return nil, err
	}
	r.ConnectSeconds = time.Since(t0).Seconds()
	var took []time.Duration
	for _, a := range answers {
		r.Connected += a.OK
		r.Failed += a.Failed
		for _, e := range a.Errors {
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, e)
			}
		}
		for _, ms := range a.Connects {
			took = append(took, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	r.PeerConnectP50 = ms(testkit.Percentile(took, 50))
	r.PeerConnectP99 = ms(testkit.Percentile(took, 99))
	r.PeersRSSMiB = float64(ps.rss()) / (1 << 20)
	progress("%s: %d connected, %d failed in %.1f s; measuring (idle %s)", name, r.Connected, r.Failed, r.ConnectSeconds, o.idle)

	a, err := c.call(ctx, request{Op: opMeasure, Expect: r.Connected})
	if err != nil {
		return nil, err
	}
	if a.Central == nil {
		return nil, errors.New("the central node gave no figures")
	}
	r.Central = a.Central

	progress("%s: stopping the central node", name)
	stopped = true
	if err := c.stop(2 * time.Minute); err != nil {
		return nil, fmt.Errorf("stopping the central node: %w", err)
	}
	answers, err = ps.callAll(ctx, request{Op: opDrop})
	if err != nil {
		return nil, err
	}
	for _, a := range answers {
		r.LeftAfterDrop += a.Left
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
