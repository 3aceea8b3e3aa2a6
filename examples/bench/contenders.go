package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/p2p/security/noise"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// contender is one way of sending messages between two nodes.
type contender struct {
	key   string // JSON key
	label string // table column
	// open opens a link and returns how long the opener took: the whole
	// dial, secure channel, muxer, stream and first round trip. Nil for the
	// network layer, which runs benchkit.Nets instead.
	open benchkit.Opener
	// noAcks runs the contender on the pair of nodes whose Managers have
	// acknowledgements and resumption off.
	noAcks bool
}

// The contenders, on the same benchkit nodes:
//   - skipwire: Manager.Connect on one side, Manager.Accept on the other, and
//     Connection.Send / Connection.Next with the run's (cancellable) context;
//   - skipwire without acknowledgements: the same on two nodes whose
//     Managers have p2pconn.Config{ResumeWindow: -1}: no acknowledgements, no
//     resumption, what acknowledgements cost;
//   - network: a network.Network on each of the skipwire Managers, Conduit.Send
//     to a processor, Conduit.Request answered with Conduit.Reply;
//   - raw libp2p: the same framing written straight on a libp2p stream, read
//     without a buffer or a reader goroutine: the limit skipwire can reach;
//   - raw libp2p with a combining writer: concurrent senders' frames
//     coalesced into one stream write: the ceiling for 8 senders;
//   - plain TCP: the seed design. A 4-byte big-endian length, the payload and
//     a flush per message through a bufio.Writer; no encryption.
var (
	skipwire     = contender{key: "skipwire", label: "skipwire", open: benchkit.OpenSkipwire}
	noAcks       = contender{key: "skipwire_noack", label: "no acks", open: benchkit.OpenSkipwire, noAcks: true}
	networkLayer = contender{key: "network", label: "network"}
	rawLibp2p    = contender{key: "libp2p", label: "raw libp2p", open: benchkit.OpenRaw}
	combining    = contender{key: "libp2p_combining", label: "combining", open: benchkit.OpenRawCombining}
	plainTCP     = contender{key: "tcp", label: "plain TCP", open: benchkit.OpenTCP}

	// columns are the contenders of the table, in its order.
	columns = []contender{skipwire, noAcks, networkLayer, rawLibp2p, combining, plainTCP}
)

// nodeConfig is the configuration of every node of a run: a Manager with
// cfg, hosts with the secure channel sec, and a plain TCP listener.
func nodeConfig(cfg p2pconn.Config, sec libp2p.Option) benchkit.NodeConfig {
	return benchkit.NodeConfig{Manager: cfg, HostOptions: []libp2p.Option{sec}, TCP: true}
}

// securityOption selects the hosts' secure channel. "tls" keeps HostOptions
// as it is: TLS 1.3 is offered first and Noise second, so TLS is used.
// "noise" removes TLS, leaving Noise.
func securityOption(name string) (libp2p.Option, error) {
	switch name {
	case "tls":
		return func(*libp2p.Config) error { return nil }, nil
	case "noise":
		return func(c *libp2p.Config) error {
			c.SecurityTransports = slices.DeleteFunc(c.SecurityTransports, func(s config.Security) bool { return s.ID != noise.ID })
			if len(c.SecurityTransports) == 0 {
				return errors.New("p2pconn.HostOptions offers no Noise transport")
			}
			return nil
		}, nil
	default:
		return nil, fmt.Errorf("unknown security %q: want tls or noise", name)
	}
}
