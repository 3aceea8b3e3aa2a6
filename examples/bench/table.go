package main

import (
	"fmt"
	"io"
	"strings"
)

// writeTable writes the report as text: the figures of every contender
// (medians over rounds), the ratios with their spread and targets, the
// fan-in figure, and how the figures are taken.
func (r *report) writeTable(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "skipwire bench: %s %s/%s, %d CPUs (GOMAXPROCS %d), %d rounds (idle memory %d), %.0f s\nlibp2p hosts: p2pconn.HostOptions, loopback TCP, -security %s: %s\n\n",
		e.GoVersion, e.OS, e.Arch, e.CPUs, e.GOMAXPROCS, e.Rounds, e.IdleRounds, e.Seconds, e.Security, e.Negotiated)

	const nameW, unitW, colW = 26, 10, 11
	fmt.Fprintf(w, "%-*s %-*s", nameW, "figure (median of rounds)", unitW, "unit")
	for _, c := range columns {
		fmt.Fprintf(w, " %*s", colW, c.label)
	}
	fmt.Fprintf(w, "\n%s\n", strings.Repeat("-", nameW+1+unitW+len(columns)*(colW+1)))
	row := func(name, unit, key, format string) {
		fmt.Fprintf(w, "%-*s %-*s", nameW, name, unitW, unit)
		for _, c := range columns {
			cell := ""
			if f := r.Results[c.key]; len(f.Samples[key]) > 0 {
				cell = fmt.Sprintf(format, f.get(key))
			}
			fmt.Fprintf(w, " %*s", colW, cell)
		}
		fmt.Fprintln(w)
	}
	row("128 B, 1 sender", "msgs/s", "small_1sender_msgs_per_sec", "%.0f")
	row("128 B, 1 sender", "MB/s", "small_1sender_mb_per_sec", "%.1f")
	row("128 B, 8 senders", "msgs/s", "small_8senders_msgs_per_sec", "%.0f")
	row("128 B, 8 senders", "MB/s", "small_8senders_mb_per_sec", "%.1f")
	row("64 KiB, 1 sender", "msgs/s", "throughput_64k_msgs_per_sec", "%.0f")
	row("64 KiB, 1 sender", "MB/s", "throughput_64k_mb_per_sec", "%.1f")
	row("write syscalls, 128 B x1", "per msg", "small_1sender_writes_per_msg", "%.2f")
	row("write syscalls, 128 B x8", "per msg", "small_8senders_writes_per_msg", "%.2f")
	row("write syscalls, 64 KiB", "per msg", "throughput_64k_writes_per_msg", "%.2f")
	row("round trip 128 B, p50", "us", "rtt_p50_us", "%.1f")
	row("round trip 128 B, p99", "us", "rtt_p99_us", "%.1f")
	row("cold connect", "us", "cold_connect_us", "%.0f")
	row("idle connection", "bytes", "idle_conn_bytes", "%.0f")
	row("  of which heap", "bytes", "idle_conn_heap_bytes", "%.0f")
	row("  of which stacks", "bytes", "idle_conn_stack_bytes", "%.0f")
	row("idle connection", "goroutines", "idle_conn_goroutines", "%.2f")
	if bare := r.Results["libp2p_bare"]; len(bare.Samples["idle_conn_bytes"]) > 0 {
		fmt.Fprintf(w, "%-*s %-*s", nameW, "idle, no reader goroutines", unitW, "bytes")
		for _, c := range columns {
			cell := ""
			if c.key == rawLibp2p.key {
				cell = fmt.Sprintf("%.0f", bare.get("idle_conn_bytes"))
			}
			fmt.Fprintf(w, " %*s", colW, cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-*s %-*s %*.1f   (%g allocs/op)\n", nameW, "Connect, already connected", unitW, "ns/op", colW, r.CachedNs, r.CachedAllocs)

	r.writeRatios(w)
	r.writeFanIn(w)

	fmt.Fprintln(w, "\nhow the figures are taken:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

// writeRatios writes the ratios: median of the per-round values, spread,
// target and verdict, a flag where the spread exceeds noisyPct, and with
// -quick which ratios cannot be trusted to quickPct.
func (r *report) writeRatios(w io.Writer) {
	const nameW = 47
	fmt.Fprintf(w, "\n%-*s %8s %9s  %-9s\n", nameW, "ratio, per round (median of rounds)", "value", "spread", "target")
	fmt.Fprintln(w, strings.Repeat("-", nameW+1+8+1+9+2+9+20))
	informative := false
	for _, c := range comparisons {
		q := r.Ratios[c.key]
		if q == nil {
			continue
		}
		if c.op == "" && !informative {
			informative = true
			r.writeCached(w, nameW)
			fmt.Fprintln(w, "informative, no second-stage target:")
		}
		value, spread := fmt.Sprintf("%.3f", q.Value), "n/a"
		switch {
		case c.diff:
			value = fmt.Sprintf("%+.2f", q.Value)
			if q.Spread != nil {
				spread = fmt.Sprintf("±%.2f", *q.Spread)
			}
		case q.SpreadPct != nil:
			spread = fmt.Sprintf("±%.1f%%", *q.SpreadPct)
		}
		verdict := ""
		if q.OK != nil {
			verdict = pass(*q.OK)
		}
		if q.Noisy {
			verdict += fmt.Sprintf("  spread > %d%%", noisyPct)
		}
		fmt.Fprintf(w, "%-*s %8s %9s  %-9s %s\n", nameW, c.name, value, spread, q.Target, verdict)
	}
	if !informative {
		r.writeCached(w, nameW)
	}
	if r.Env.Quick {
		fmt.Fprintf(w, "\n-quick: a quick ratio is within %d%% of a full run's only where its spread is within ±%d%%.\n", quickPct, quickPct)
		if len(r.QuickUntrusted) == 0 {
			fmt.Fprintf(w, "Every ratio's spread is within ±%d%%.\n", quickPct)
		} else {
			fmt.Fprintf(w, "Not to be trusted to %d%% (spread over ±%d%%, or unknown from one round):\n", quickPct, quickPct)
			for _, key := range r.QuickUntrusted {
				for _, c := range comparisons {
					if c.key == key {
						fmt.Fprintf(w, "  %s\n", c.name)
					}
				}
			}
		}
	}
}

// writeCached writes the row of Connect to a connected peer.
func (r *report) writeCached(w io.Writer, nameW int) {
	fmt.Fprintf(w, "%-*s %8.1f %9s  %-9s %s\n", nameW, "Connect, already connected (ns, 0 allocs)", r.CachedNs, "", "<= 1000", pass(r.CachedNs <= 1000 && r.CachedAllocs == 0))
}

// writeFanIn writes the fan-in figure, with the spread over rounds.
func (r *report) writeFanIn(w io.Writer) {
	f := r.FanIn
	if len(f.Samples["msgs_per_sec"]) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfan-in through network: %d peers -> 1 node, 128 B, %d messages per peer and round\n", f.Peers, f.PerPeer)
	fmt.Fprintf(w, "%-44s %-8s %10s %9s\n", "figure (median of rounds)", "unit", "value", "spread")
	fmt.Fprintln(w, strings.Repeat("-", 44+1+8+1+10+1+9))
	row := func(name, unit, key, format string) {
		spread := "n/a"
		if half, ok := halfIQR(f.Samples[key]); ok && f.get(key) != 0 {
			spread = fmt.Sprintf("±%.1f%%", half/f.get(key)*100)
		}
		fmt.Fprintf(w, "%-44s %-8s %10s %9s\n", name, unit, fmt.Sprintf(format, f.get(key)), spread)
	}
	row("messages processed", "msgs/s", "msgs_per_sec", "%.0f")
	row("queueing delay (Send to processor), p50", "us", "delay_p50_us", "%.0f")
	row("queueing delay (Send to processor), p99", "us", "delay_p99_us", "%.0f")
}

func pass(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}
