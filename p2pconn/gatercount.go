package p2pconn

import (
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
)

// refusals counts the connections a gater refused, by direction, and
// reports them as the Prometheus counter
//
//	skipwire_gater_refusals_total{gater, direction}
//
// where gater names the list ("allow_list", "deny_list") and direction is
// "inbound" (a connection the remote opened, closed after the secure
// handshake) or "outbound" (a dial this host did not make, or closed after
// the secure handshake).
type refusals struct {
	inbound, outbound atomic.Uint64
	desc              *prometheus.Desc
}

func newRefusals(gater string) refusals {
	return refusals{desc: prometheus.NewDesc("skipwire_gater_refusals_total",
		"Connections refused by a skipwire connection gater, by direction.",
		[]string{"direction"}, prometheus.Labels{"gater": gater})}
}

// refuse counts one refusal in direction dir, unless ok; it returns ok.
func (r *refusals) refuse(dir network.Direction, ok bool) bool {
	if !ok {
		if dir == network.DirInbound {
			r.inbound.Add(1)
		} else {
			r.outbound.Add(1)
		}
	}
	return ok
}

func (r *refusals) describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *refusals) collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(r.inbound.Load()), "inbound")
	ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(r.outbound.Load()), "outbound")
}
