package testbed

import (
	"time"

	"github.com/skipwire/skipwire/identity"
)

// trimEvery is how often the trimmer looks at the hosts' connections.
const trimEvery = 2 * time.Second

// trim closes, every trimEvery until stop is closed, the libp2p connections
// of every running host that are older than after, carry no stream, and
// lead to a peer the host's manager has no skipwire connection with: those
// a DHT lookup opened, or that carried a search's answer and went idle.
//
// libp2p's connection manager does the same, but only above its high
// watermark (p2pconn.HostOptions puts it at MaxConnections, 1000 by
// default) and for connections older than a minute. With hundreds of hosts
// in one process, each lookup's dials pile up faster than that: at 256
// nodes the process ran out of file descriptors (TCP takes one per end of
// a connection) before the joins were done.
func (tb *Testbed) trim(after time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, i := range tb.c.RunningNodes() {
			h, m := tb.c.Host(i), tb.c.Manager(i)
			for _, conn := range h.Network().Conns() {
				if time.Since(conn.Stat().Opened) < after || len(conn.GetStreams()) > 0 {
					continue
				}
				id, err := identity.FromPeerID(conn.RemotePeer())
				if err != nil {
					continue
				}
				if _, ok := m.GetConnection(id); ok {
					continue
				}
				_ = conn.Close()
			}
		}
	}
}
