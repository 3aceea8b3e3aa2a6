package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
)

// figures are one contender's results: for each figure, the value of each
// round (Samples, in round order) and their median.
type figures struct {
	Samples map[string][]float64
	Medians map[string]float64
}

// MarshalJSON writes the medians as the object's fields and every round's
// value under "samples".
func (f *figures) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(f.Medians)+1)
	for k, v := range f.Medians {
		out[k] = v
	}
	out["samples"] = f.Samples
	return json.Marshal(out)
}

func (f *figures) add(key string, v float64) { f.Samples[key] = append(f.Samples[key], v) }

// get returns the median of figure key; 0 if there is none.
func (f *figures) get(key string) float64 { return f.Medians[key] }

// ratio is a comparison of two contenders on one figure, made in every round
// from that round's samples.
type ratio struct {
	// Value is the median of the per-round values.
	Value float64 `json:"value"`
	// Spread is half the interquartile range of the per-round values, in
	// their unit; SpreadPct is the same as a percentage of Value. Both are
	// null with fewer than two rounds.
	Spread    *float64 `json:"spread"`
	SpreadPct *float64 `json:"spread_pct"`
	// Rounds holds the value of each round.
	Rounds []float64 `json:"rounds"`
	// Target is the second-stage target ("" for an informative ratio) and
	// OK whether Value meets it.
	Target string `json:"target,omitempty"`
	OK     *bool  `json:"ok,omitempty"`
	// Noisy: the spread exceeds noisyPct.
	Noisy bool `json:"noisy,omitempty"`
}

// noisyPct is the spread, in percent, above which a ratio is flagged; with
// -quick, quickPct is the spread above which a quick figure cannot be
// trusted to be within that much of a full run's.
const (
	noisyPct = 15
	quickPct = 10
)

// fanInFigures is the fan-in figure: many peers sending to one node through
// network.
type fanInFigures struct {
	Peers   int `json:"peers"`
	PerPeer int `json:"messages_per_peer"`
	*figures
}

// report collects the samples of a run and derives the figures and ratios.
type report struct {
	Ratios       map[string]*ratio   `json:"ratios"`
	CachedNs     float64             `json:"connect_cached_ns"`
	CachedAllocs float64             `json:"connect_cached_allocs"`
	Results      map[string]*figures `json:"results"`
	FanIn        fanInFigures        `json:"fan_in"`
	// QuickUntrusted lists, in a -quick run, the ratios whose spread exceeds
	// quickPct (or is unknown).
	QuickUntrusted []string    `json:"quick_untrusted,omitempty"`
	Env            environment `json:"env"`
	Notes          []string    `json:"notes"`
}

func newFigures() *figures {
	return &figures{Samples: map[string][]float64{}, Medians: map[string]float64{}}
}

func newReport(o options) *report {
	r := &report{Ratios: map[string]*ratio{}, Results: map[string]*figures{}, Env: newEnvironment(o)}
	for _, c := range columns {
		r.Results[c.key] = newFigures()
	}
	r.Results["libp2p_bare"] = newFigures()
	r.FanIn.figures = newFigures()
	r.Notes = notes
	return r
}

func (r *report) addThroughput(key string, sc scenario, res benchkit.ThroughputResult) {
	f := r.Results[key]
	msgs := float64(sc.count) / res.Elapsed.Seconds()
	f.add(sc.key+"_msgs_per_sec", msgs)
	f.add(sc.key+"_mb_per_sec", msgs*float64(sc.size)/1e6)
	if res.Syscalls.Known {
		f.add(sc.key+"_writes_per_msg", res.Syscalls.Writes)
	}
}

func (r *report) addRTTs(key string, rtts []time.Duration) {
	f := r.Results[key]
	f.add("rtt_p50_us", micros(testkit.Percentile(rtts, 50)))
	f.add("rtt_p99_us", micros(testkit.Percentile(rtts, 99)))
}

// addConnects records one round's cold connects: their median.
func (r *report) addConnects(key string, took []time.Duration) {
	us := make([]float64, len(took))
	for i, d := range took {
		us[i] = micros(d)
	}
	r.Results[key].add("cold_connect_us", median(us))
}

func (r *report) addIdle(key string, res benchkit.IdleResult) {
	f := r.Results[key]
	f.add("idle_conn_bytes", res.Bytes)
	f.add("idle_conn_heap_bytes", res.Heap)
	f.add("idle_conn_stack_bytes", res.Stack)
	f.add("idle_conn_goroutines", res.Goroutines)
}

func (r *report) addFanIn(res benchkit.FanInResult) {
	f := r.FanIn.figures
	f.add("msgs_per_sec", float64(res.Messages)/res.Elapsed.Seconds())
	f.add("delay_p50_us", micros(testkit.Percentile(res.Delays, 50)))
	f.add("delay_p99_us", micros(testkit.Percentile(res.Delays, 99)))
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// comparison defines a ratio: figure of contender num over the same figure
// of contender den, round by round (or, with diff, num minus den).
type comparison struct {
	key      string // JSON key
	name     string // table row
	num, den string // contender keys
	figure   string
	diff     bool
	op       string // ">=", "<=", or "" for an informative ratio
	target   float64
}

// comparisons are the ratios of the report, in the table's order: first
// those with a second-stage target (ARCHITECTURE.md, "Performance
// targets"), then informative ones.
var comparisons = []comparison{
	{key: "throughput_64k_vs_libp2p", name: "64 KiB MB/s, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "throughput_64k_mb_per_sec", op: ">=", target: 1.0},
	{key: "small_8senders_vs_libp2p_combining", name: "128 B x8 msgs/s, skipwire / combining",
		num: "skipwire", den: "libp2p_combining", figure: "small_8senders_msgs_per_sec", op: ">=", target: 0.9},
	{key: "rtt_p50_vs_libp2p", name: "round trip p50, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "rtt_p50_us", op: "<=", target: 1.05},
	{key: "network_request_vs_connection_rtt_p50", name: "network Request p50 / Connection's",
		num: "network", den: "skipwire", figure: "rtt_p50_us", op: "<=", target: 1.1},
	{key: "network_small_8senders_vs_connection", name: "128 B x8 msgs/s, network / Connection",
		num: "network", den: "skipwire", figure: "small_8senders_msgs_per_sec", op: ">=", target: 0.9},
	{key: "acks_small_8senders_on_vs_off", name: "128 B x8 msgs/s, acks on / off",
		num: "skipwire", den: "skipwire_noack", figure: "small_8senders_msgs_per_sec", op: ">=", target: 0.95},
	{key: "acks_throughput_64k_on_vs_off", name: "64 KiB MB/s, acks on / off",
		num: "skipwire", den: "skipwire_noack", figure: "throughput_64k_mb_per_sec", op: ">=", target: 0.95},
	{key: "acks_rtt_p50_on_vs_off", name: "round trip p50, acks on / off",
		num: "skipwire", den: "skipwire_noack", figure: "rtt_p50_us", op: "<=", target: 1.05},
	{key: "cold_connect_vs_libp2p", name: "cold connect, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "cold_connect_us", op: "<=", target: 1.1},
	{key: "idle_conn_bytes_vs_libp2p", name: "idle bytes/conn, skipwire / libp2p with readers",
		num: "skipwire", den: "libp2p", figure: "idle_conn_bytes", op: "<=", target: 1.1},
	{key: "idle_conn_goroutines_more_than_libp2p", name: "idle goroutines/conn, skipwire - libp2p",
		num: "skipwire", den: "libp2p", figure: "idle_conn_goroutines", diff: true, op: "<=", target: 1},

	{key: "throughput_64k_vs_tcp", name: "64 KiB MB/s, skipwire / plain TCP",
		num: "skipwire", den: "tcp", figure: "throughput_64k_mb_per_sec"},
	{key: "small_8senders_vs_tcp", name: "128 B x8 msgs/s, skipwire / plain TCP",
		num: "skipwire", den: "tcp", figure: "small_8senders_msgs_per_sec"},
	{key: "small_8senders_vs_libp2p", name: "128 B x8 msgs/s, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "small_8senders_msgs_per_sec"},
	{key: "combining_small_8senders_vs_libp2p", name: "128 B x8 msgs/s, combining / raw libp2p",
		num: "libp2p_combining", den: "libp2p", figure: "small_8senders_msgs_per_sec"},
	{key: "combining_small_8senders_vs_tcp", name: "128 B x8 msgs/s, combining / plain TCP",
		num: "libp2p_combining", den: "tcp", figure: "small_8senders_msgs_per_sec"},
	{key: "small_1sender_vs_libp2p", name: "128 B x1 msgs/s, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "small_1sender_msgs_per_sec"},
	{key: "small_1sender_vs_tcp", name: "128 B x1 msgs/s, skipwire / plain TCP",
		num: "skipwire", den: "tcp", figure: "small_1sender_msgs_per_sec"},
	{key: "rtt_p99_vs_libp2p", name: "round trip p99, skipwire / raw libp2p",
		num: "skipwire", den: "libp2p", figure: "rtt_p99_us"},
	{key: "rtt_p50_vs_tcp", name: "round trip p50, skipwire / plain TCP",
		num: "skipwire", den: "tcp", figure: "rtt_p50_us"},
	{key: "idle_conn_heap_vs_libp2p", name: "idle heap/conn, skipwire / libp2p with readers",
		num: "skipwire", den: "libp2p", figure: "idle_conn_heap_bytes"},
	{key: "idle_conn_bytes_vs_bare_libp2p", name: "idle bytes/conn, skipwire / libp2p, no readers",
		num: "skipwire", den: "libp2p_bare", figure: "idle_conn_bytes"},
}

// finish turns the samples into medians and ratios.
func (r *report) finish() {
	for _, f := range append(slices.Collect(maps.Values(r.Results)), r.FanIn.figures) {
		for k, xs := range f.Samples {
			f.Medians[k] = median(xs)
		}
	}
	for _, c := range comparisons {
		num, den := r.Results[c.num].Samples[c.figure], r.Results[c.den].Samples[c.figure]
		var rounds []float64
		for i := range min(len(num), len(den)) {
			switch {
			case c.diff:
				rounds = append(rounds, round3(num[i]-den[i]))
			case den[i] != 0:
				rounds = append(rounds, math.Round(num[i]/den[i]*1e4)/1e4)
			}
		}
		if len(rounds) == 0 {
			continue
		}
		q := &ratio{Value: round3(median(rounds)), Rounds: rounds}
		if half, ok := halfIQR(rounds); ok {
			half = round3(half)
			q.Spread = &half
			if q.Value != 0 {
				pct := math.Round(half/math.Abs(q.Value)*1000) / 10
				q.SpreadPct = &pct
				q.Noisy = pct > noisyPct
			}
		}
		if c.op != "" {
			ok := c.op == ">=" && q.Value >= c.target || c.op == "<=" && q.Value <= c.target
			q.Target, q.OK = c.targetText(), &ok
		}
		r.Ratios[c.key] = q
		if r.Env.Quick && (q.SpreadPct == nil && !c.diff || q.SpreadPct != nil && *q.SpreadPct > quickPct) {
			r.QuickUntrusted = append(r.QuickUntrusted, c.key)
		}
	}
}

// targetText writes c's target: ">= 0.90", or "<= +1" for a difference.
func (c comparison) targetText() string {
	if c.diff {
		return fmt.Sprintf("%s +%g", c.op, c.target)
	}
	return fmt.Sprintf("%s %.2f", c.op, c.target)
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
