package main

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/skipwire/skipwire/internal/testkit"
)

// report prints what the run measured, one line per figure.
func (d *demo) report(total time.Duration) {
	line := func(name, format string, args ...any) {
		d.printf("  %-32s %s\n", name, fmt.Sprintf(format, args...))
	}
	n := len(d.tb.Running())
	levels, mean := d.tb.Levels()
	d.printf("\nReport\n")
	line("nodes", "%d at the end: %d joined one by one, then %d crashed, %d left, %d joined during the churn",
		n, d.o.nodes, d.killed, d.left, d.joined)
	if d.o.procs > 0 {
		line("processes", "%d child processes, one node each, besides this one: %d at the start, %d joined during the churn; %d of the %d crashes by SIGKILL",
			d.o.procs+d.joinedApart(), d.o.procs, d.joinedApart(), d.killedApart, d.killed)
	}
	line("levels", "0 to %d hold lists of two or more nodes; a node has neighbours at %.1f levels on average", levels-1, mean)
	line("searches before the churn", "%d/%d correct", d.before.Correct, d.before.Total())
	line("searches during the churn", "%d: %d correct, %d wrong, %d failed (no answer within the search timeout)",
		d.during.Total(), d.during.Correct, d.during.Wrong, d.during.Failed)
	line("searches after the repair", "%d/%d correct", d.after.Correct, d.after.Total())
	hops := append(slices.Clone(d.before.Hops), d.after.Hops...)
	line("hops per search", "mean %.1f, max %d (log2 %d = %.1f)", meanInt(hops), slices.Max(append(hops, 0)), n, math.Log2(float64(n)))
	lat := d.after.Latencies
	line("search latency", "p50 %s, p99 %s (after the repair)", ms(testkit.Percentile(lat, 50)), ms(testkit.Percentile(lat, 99)))
	line("connections per node", "mean %.1f, max %d skipwire connections; %.1f of them to table neighbours, which are protected; the others carried search answers and close after 10 s idle",
		meanInt(d.conns.PerNode), slices.Max(append(d.conns.PerNode, 0)), meanInt(d.conns.Neighbours))
	line("libp2p connections per pair", "%d (the most of any of the %d pairs of hosts that have one; DHT traffic included)", d.conns.MaxPerPair, d.conns.Pairs)
	t := d.ledger
	maint := t.Sent - t.ByKind["search"] - t.ByKind["found"]
	late := ""
	if t.Late > 0 {
		late = fmt.Sprintf("; %d answers came after their requester had given up", t.Late)
	}
	line("messages", "sent %d (%d search hops, %d answers, %d maintenance), lost %d between nodes still running%s",
		t.Sent, t.ByKind["search"], t.ByKind["found"], maint, t.Lost, late)
	line("departure noticed", "crash: p50 %s, max %s; graceful leave: p50 %s, max %s (until no table names the node)",
		ms(testkit.Percentile(d.crashSeen, 50)), ms(testkit.Percentile(d.crashSeen, 100)),
		ms(testkit.Percentile(d.leaveSeen, 50)), ms(testkit.Percentile(d.leaveSeen, 100)))
	line("repair", "%s after the crashes, %s after the leaves, %s after the last join (until every table matches the sorted key list)",
		ms(d.crashFixed), ms(d.leaveFixed), ms(d.joinFixed))
	joins := append(slices.Clone(d.joins), d.churnJoins...)
	line("joins", "p50 %s, max %s (a search through the introducer, then a link at each level)",
		ms(testkit.Percentile(joins, 50)), ms(testkit.Percentile(joins, 100)))
	peerstore, lookups, failed := d.tb.Resolutions().Counts()
	line("address resolution", "%d from the host's peerstore, %d DHT lookups (p50 %s, max %s), %d that found nothing (nodes that had gone)",
		peerstore, len(lookups), ms(testkit.Percentile(lookups, 50)), ms(testkit.Percentile(lookups, 100)), failed)
	line("total time", "%s", ms(total))
}

// joinedApart returns how many of the nodes that joined during the churn
// ran in child processes.
func (d *demo) joinedApart() int {
	n := 0
	for i := d.o.nodes; i < d.tb.Size(); i++ {
		if d.tb.InChild(i) {
			n++
		}
	}
	return n
}

func meanInt(xs []int) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}
