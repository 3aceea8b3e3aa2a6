package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// yamuxStreamWindow is what go-yamux reserves in the resource manager for
// every stream it opens or accepts (its initial receive window), whether
// or not data ever arrives.
const yamuxStreamWindow = 256 << 10

// raiseLimits raises the central node's resource-manager limits that
// p2pconn.HostOptions leaves below what conns connections, each with one
// long-lived stream of proto, need; it never lowers one. HostOptions sizes
// the system's connection, stream, file-descriptor and memory limits, and
// skipwire's protocol's streams, to MaxConnections, so for skipwire this
// raises nothing; the raw baseline's protocol keeps libp2p's defaults,
// which scale with the machine's memory:
//
//   - a protocol's inbound streams (ProtocolDefault, 1265 with 24 GiB of
//     RAM): the long-lived stream of each connection counts there;
//   - the system's memory (1/8 of RAM): yamux reserves 256 KiB for each
//     stream's receive window, so conns streams reserve conns x 256 KiB,
//     plus the short streams of pings and identify beside them.
//
// It returns one line per limit it raised.
func raiseLimits(h host.Host, proto protocol.ID, conns int) ([]string, error) {
	rm := h.Network().ResourceManager()
	var raised []string
	streams := conns + 64
	err := rm.ViewProtocol(proto, func(s network.ProtocolScope) error {
		return raise(s, "protocol "+string(proto), func(l *rcmgr.BaseLimit) []string {
			var what []string
			if l.StreamsInbound < streams {
				what = append(what, fmt.Sprintf("inbound streams %d -> %d", l.StreamsInbound, streams))
				l.StreamsInbound = streams
			}
			if l.StreamsOutbound < streams {
				what = append(what, fmt.Sprintf("outbound streams %d -> %d", l.StreamsOutbound, streams))
				l.StreamsOutbound = streams
			}
			if l.Streams < streams {
				what = append(what, fmt.Sprintf("streams %d -> %d", l.Streams, streams))
				l.Streams = streams
			}
			return what
		}, &raised)
	})
	if err != nil {
		return nil, err
	}
	// Room for a second stream on every connection at once (a ping or an
	// identify beside the long-lived one).
	memory := int64(2*conns+256) * yamuxStreamWindow
	err = rm.ViewSystem(func(s network.ResourceScope) error {
		return raise(s, "system", func(l *rcmgr.BaseLimit) []string {
			if l.Memory >= memory {
				return nil
			}
			what := fmt.Sprintf("memory %s -> %s", mib(l.Memory), mib(memory))
			l.Memory = memory
			return []string{what}
		}, &raised)
	})
	return raised, err
}

// raise applies change to s's limit and notes what it changed in raised.
func raise(s network.ResourceScope, name string, change func(*rcmgr.BaseLimit) []string, raised *[]string) error {
	sl, ok := s.(rcmgr.ResourceScopeLimiter)
	if !ok {
		return fmt.Errorf("%s: the resource manager's scope (%T) has no settable limit", name, s)
	}
	l := baseLimit(sl.Limit())
	what := change(&l)
	if len(what) == 0 {
		return nil
	}
	sl.SetLimit(&l)
	*raised = append(*raised, name+": "+strings.Join(what, ", "))
	return nil
}

// baseLimit copies any limit into a BaseLimit.
func baseLimit(l rcmgr.Limit) rcmgr.BaseLimit {
	return rcmgr.BaseLimit{
		Streams:         l.GetStreamTotalLimit(),
		StreamsInbound:  l.GetStreamLimit(network.DirInbound),
		StreamsOutbound: l.GetStreamLimit(network.DirOutbound),
		Conns:           l.GetConnTotalLimit(),
		ConnsInbound:    l.GetConnLimit(network.DirInbound),
		ConnsOutbound:   l.GetConnLimit(network.DirOutbound),
		FD:              l.GetFDLimit(),
		Memory:          l.GetMemoryLimit(),
	}
}

// limitUse is what a resource-manager scope holds against its limits.
type limitUse struct {
	Scope          string `json:"scope"`
	StreamsIn      int    `json:"streams_inbound"`
	StreamsInLimit int    `json:"streams_inbound_limit"`
	ConnsIn        int    `json:"conns_inbound,omitempty"`
	ConnsInLimit   int    `json:"conns_inbound_limit,omitempty"`
	FD             int    `json:"fd,omitempty"`
	FDLimit        int    `json:"fd_limit,omitempty"`
	Memory         int64  `json:"memory"`
	MemoryLimit    int64  `json:"memory_limit"`
}

func (u limitUse) String() string {
	s := fmt.Sprintf("%s: inbound streams %d of %d", u.Scope, u.StreamsIn, u.StreamsInLimit)
	if u.ConnsInLimit > 0 {
		s += fmt.Sprintf(", inbound conns %d of %d, fds %d of %d", u.ConnsIn, u.ConnsInLimit, u.FD, u.FDLimit)
	}
	return s + fmt.Sprintf(", memory %s of %s", mib(u.Memory), mib(u.MemoryLimit))
}

// useOf returns what s holds against its limits.
func useOf(name string, s network.ResourceScope) limitUse {
	st := s.Stat()
	u := limitUse{Scope: name, StreamsIn: st.NumStreamsInbound, ConnsIn: st.NumConnsInbound, FD: st.NumFD, Memory: st.Memory}
	if sl, ok := s.(rcmgr.ResourceScopeLimiter); ok {
		l := sl.Limit()
		u.StreamsInLimit = l.GetStreamLimit(network.DirInbound)
		u.ConnsInLimit = l.GetConnLimit(network.DirInbound)
		u.FDLimit = l.GetFDLimit()
		u.MemoryLimit = l.GetMemoryLimit()
	}
	return u
}

// limitsInUse returns what the system scope and proto's scope hold.
func limitsInUse(h host.Host, proto protocol.ID) []limitUse {
	rm := h.Network().ResourceManager()
	var out []limitUse
	_ = rm.ViewSystem(func(s network.ResourceScope) error {
		out = append(out, useOf("system", s))
		return nil
	})
	_ = rm.ViewProtocol(proto, func(s network.ProtocolScope) error {
		u := useOf("protocol "+string(proto), s)
		u.ConnsInLimit = 0 // a protocol has no connections
		out = append(out, u)
		return nil
	})
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// fdsWanted is the open-file limit the run needs: a socket per connection
// in the central node (TCP), and the peers' sockets in their processes,
// with room for the rest.
func fdsWanted(o options) uint64 {
	return uint64(o.n+o.cold) + 4096
}

// raiseFDLimit raises this process's open-file limit (RLIMIT_NOFILE) to
// want, the hard limit too if need be (as root, up to fs.nr_open); the
// children inherit it. It returns the limit before and the limit in force.
func raiseFDLimit(want uint64) (before, now uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("open-file limit: %w", err)
	}
	if rl.Cur >= want {
		return rl.Cur, rl.Cur, nil
	}
	if rl.Max < want {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if nrOpen, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				want = min(want, nrOpen)
			}
		}
		next := syscall.Rlimit{Cur: want, Max: max(want, rl.Max)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err == nil {
			return rl.Cur, next.Cur, nil
		}
		want = rl.Max // not allowed: as far as the hard limit goes
	}
	next := syscall.Rlimit{Cur: want, Max: rl.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		return rl.Cur, rl.Cur, errors.Join(fmt.Errorf("open-file limit %d -> %d", rl.Cur, want), err)
	}
	return rl.Cur, want, nil
}
