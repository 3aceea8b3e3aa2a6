package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/internal/testkit"
)

// figures are one contender's results: medians over rounds for throughput,
// percentiles over every round trip, the median cold connect.
type figures struct {
	Small1MsgsPerSec float64 `json:"small_1sender_msgs_per_sec,omitempty"`
	Small1MBPerSec   float64 `json:"small_1sender_mb_per_sec,omitempty"`
	Small8MsgsPerSec float64 `json:"small_8senders_msgs_per_sec,omitempty"`
	Small8MBPerSec   float64 `json:"small_8senders_mb_per_sec,omitempty"`
	BigMBPerSec      float64 `json:"throughput_64k_mb_per_sec,omitempty"`
	BigMsgsPerSec    float64 `json:"throughput_64k_msgs_per_sec,omitempty"`
	// Write system calls per message (both ends; Linux only): one per frame
	// means no coalescing.
	Small1Writes   float64 `json:"small_1sender_writes_per_msg,omitempty"`
	Small8Writes   float64 `json:"small_8senders_writes_per_msg,omitempty"`
	BigWrites      float64 `json:"throughput_64k_writes_per_msg,omitempty"`
	RTTP50Micros   float64 `json:"rtt_p50_us,omitempty"`
	RTTP99Micros   float64 `json:"rtt_p99_us,omitempty"`
	ColdConnectUs  float64 `json:"cold_connect_us,omitempty"`
	IdleBytes      float64 `json:"idle_conn_bytes,omitempty"`
	IdleHeapBytes  float64 `json:"idle_conn_heap_bytes,omitempty"`
	IdleStackBytes float64 `json:"idle_conn_stack_bytes,omitempty"`
	IdleGoroutines float64 `json:"idle_conn_goroutines,omitempty"`

	// Samples holds every per-round figure the medians come from.
	Samples map[string][]float64 `json:"samples,omitempty"`

	rtts []time.Duration
	idle []benchkit.IdleResult
}

// report collects the samples of a run and derives the figures and ratios.
type report struct {
	ThroughputBigVsLibp2p float64             `json:"throughput_64k_ratio_vs_libp2p"`
	ThroughputBigVsTCP    float64             `json:"throughput_64k_ratio_vs_tcp"`
	Small8VsTCP           float64             `json:"small_8senders_ratio_vs_tcp"`
	Small8VsLibp2p        float64             `json:"small_8senders_ratio_vs_libp2p"`
	Small1VsTCP           float64             `json:"small_1sender_ratio_vs_tcp"`
	Small1VsLibp2p        float64             `json:"small_1sender_ratio_vs_libp2p"`
	RTTP50VsLibp2p        float64             `json:"rtt_p50_ratio_vs_libp2p"`
	RTTP99VsLibp2p        float64             `json:"rtt_p99_ratio_vs_libp2p"`
	RTTP50VsTCP           float64             `json:"rtt_p50_ratio_vs_tcp"`
	CachedNs              float64             `json:"connect_cached_ns"`
	CachedAllocs          float64             `json:"connect_cached_allocs"`
	ColdConnectVsLibp2p   float64             `json:"cold_connect_ratio_vs_libp2p"`
	IdleBytesVsLibp2p     float64             `json:"idle_conn_bytes_ratio_vs_libp2p"`
	IdleBytesVsBareLibp2p float64             `json:"idle_conn_bytes_ratio_vs_bare_libp2p"`
	IdleHeapVsLibp2p      float64             `json:"idle_conn_heap_ratio_vs_libp2p"`
	IdleGoroutinesPerConn float64             `json:"idle_conn_goroutines_skipwire"`
	Results               map[string]*figures `json:"results"`
	Env                   environment         `json:"env"`
	Notes                 []string            `json:"notes"`
}

func newReport(o options) *report {
	r := &report{Results: map[string]*figures{}, Env: newEnvironment(o)}
	for _, k := range []string{"skipwire", "libp2p", "libp2p_bare", "tcp"} {
		r.Results[k] = &figures{Samples: map[string][]float64{}}
	}
	r.Notes = []string{
		"throughput: fixed message count per sample on a fresh connection (after a 5% warm-up on it), timed from the first send until the receiver has every message; median over rounds",
		"write syscalls: write(2) calls per message during a throughput sample, both ends (from /proc/self/io; Linux only); 1.00 means one system call per frame, fewer means frames were coalesced",
		"raw libp2p: the same uvarint framing on a libp2p stream of the same hosts; frames up to 8 KiB copied behind their header in one stream write, larger ones written as header then payload; header bytes read one by one from the stream, no buffer, no reader goroutine",
		"plain TCP: net.TCPConn, bufio.Writer, 4-byte big-endian length, payload and Flush per message under a mutex; bufio.Reader; no encryption",
		"round trip: 128 B request echoed by the other side; p50/p99 over every round trip of every round",
		"cold connect: skipwire Manager.Connect (resolve, dial, secure channel, yamux, stream, handshake round trip); raw libp2p host.Connect + NewStream + a 1-byte round trip; TCP net.Dial + a 1-byte round trip; median",
		"idle memory: live heap (HeapAlloc) + stack spans (StackInuse) after GC, before and after opening the connections, per connection, both ends (both live in this process), kernel socket buffers not included; median over rounds after two warm-up passes, each baseline taken once the previous connections' garbage is gone (libp2p releases it seconds after the close); the heap part is exact, the stack part approximate (the runtime caches freed stacks); libp2p and tcp have a goroutine parked in a read on each end, libp2p_bare has none",
	}
	return r
}

func (r *report) fig(key string) *figures { return r.Results[key] }

func (r *report) addThroughput(key string, sc scenario, res benchkit.ThroughputResult) {
	f := r.fig(key)
	msgs := float64(sc.count) / res.Elapsed.Seconds()
	f.Samples[sc.key+"_msgs_per_sec"] = append(f.Samples[sc.key+"_msgs_per_sec"], msgs)
	f.Samples[sc.key+"_mb_per_sec"] = append(f.Samples[sc.key+"_mb_per_sec"], msgs*float64(sc.size)/1e6)
	if res.Syscalls.Writes > 0 {
		f.Samples[sc.key+"_writes_per_msg"] = append(f.Samples[sc.key+"_writes_per_msg"], res.Syscalls.Writes)
	}
}

func (r *report) addRTTs(key string, rtts []time.Duration) {
	f := r.fig(key)
	f.rtts = append(f.rtts, rtts...)
	f.Samples["rtt_p50_us"] = append(f.Samples["rtt_p50_us"], micros(testkit.Percentile(rtts, 50)))
}

func (r *report) addConnect(key string, d time.Duration) {
	f := r.fig(key)
	f.Samples["cold_connect_us"] = append(f.Samples["cold_connect_us"], micros(d))
}

func (r *report) addIdle(key string, res benchkit.IdleResult) {
	f := r.fig(key)
	f.idle = append(f.idle, res)
	f.Samples["idle_conn_bytes"] = append(f.Samples["idle_conn_bytes"], res.Bytes)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// finish turns the samples into figures and ratios.
func (r *report) finish() {
	for _, f := range r.Results {
		s := f.Samples
		f.Small1MsgsPerSec, f.Small1MBPerSec = median(s["small1_msgs_per_sec"]), median(s["small1_mb_per_sec"])
		f.Small8MsgsPerSec, f.Small8MBPerSec = median(s["small8_msgs_per_sec"]), median(s["small8_mb_per_sec"])
		f.BigMsgsPerSec, f.BigMBPerSec = median(s["big_msgs_per_sec"]), median(s["big_mb_per_sec"])
		f.Small1Writes, f.Small8Writes, f.BigWrites = median(s["small1_writes_per_msg"]), median(s["small8_writes_per_msg"]), median(s["big_writes_per_msg"])
		f.RTTP50Micros, f.RTTP99Micros = micros(testkit.Percentile(f.rtts, 50)), micros(testkit.Percentile(f.rtts, 99))
		f.ColdConnectUs = median(s["cold_connect_us"])
		pick := func(get func(benchkit.IdleResult) float64) float64 {
			xs := make([]float64, len(f.idle))
			for i, x := range f.idle {
				xs[i] = get(x)
			}
			return median(xs)
		}
		f.IdleBytes = pick(func(x benchkit.IdleResult) float64 { return x.Bytes })
		f.IdleHeapBytes = pick(func(x benchkit.IdleResult) float64 { return x.Heap })
		f.IdleStackBytes = pick(func(x benchkit.IdleResult) float64 { return x.Stack })
		f.IdleGoroutines = pick(func(x benchkit.IdleResult) float64 { return x.Goroutines })
	}
	sw, raw, bare, tcp := r.fig("skipwire"), r.fig("libp2p"), r.fig("libp2p_bare"), r.fig("tcp")
	r.ThroughputBigVsLibp2p = ratio(sw.BigMBPerSec, raw.BigMBPerSec)
	r.ThroughputBigVsTCP = ratio(sw.BigMBPerSec, tcp.BigMBPerSec)
	r.Small8VsTCP = ratio(sw.Small8MsgsPerSec, tcp.Small8MsgsPerSec)
	r.Small8VsLibp2p = ratio(sw.Small8MsgsPerSec, raw.Small8MsgsPerSec)
	r.Small1VsTCP = ratio(sw.Small1MsgsPerSec, tcp.Small1MsgsPerSec)
	r.Small1VsLibp2p = ratio(sw.Small1MsgsPerSec, raw.Small1MsgsPerSec)
	r.RTTP50VsLibp2p = ratio(sw.RTTP50Micros, raw.RTTP50Micros)
	r.RTTP99VsLibp2p = ratio(sw.RTTP99Micros, raw.RTTP99Micros)
	r.RTTP50VsTCP = ratio(sw.RTTP50Micros, tcp.RTTP50Micros)
	r.ColdConnectVsLibp2p = ratio(sw.ColdConnectUs, raw.ColdConnectUs)
	r.IdleBytesVsLibp2p = ratio(sw.IdleBytes, raw.IdleBytes)
	r.IdleBytesVsBareLibp2p = ratio(sw.IdleBytes, bare.IdleBytes)
	r.IdleHeapVsLibp2p = ratio(sw.IdleHeapBytes, raw.IdleHeapBytes)
	r.IdleGoroutinesPerConn = sw.IdleGoroutines
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "skipwire bench: %s %s/%s, %d CPUs (GOMAXPROCS %d), %d rounds, %.0f s\nlibp2p hosts: p2pconn.HostOptions, loopback TCP, -security %s: %s\n\n",
		e.GoVersion, e.OS, e.Arch, e.CPUs, e.GOMAXPROCS, e.Rounds, e.Seconds, e.Security, e.Negotiated)

	sw, raw, tcp, bare := r.fig("skipwire"), r.fig("libp2p"), r.fig("tcp"), r.fig("libp2p_bare")
	row := func(name, unit string, get func(*figures) float64, format string) {
		fmt.Fprintf(w, "%-28s %-12s", name, unit)
		for _, f := range []*figures{sw, raw, tcp} {
			fmt.Fprintf(w, " %14s", fmt.Sprintf(format, get(f)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-28s %-12s %14s %14s %14s\n", "figure", "unit", skipwire.label, rawLibp2p.label, plainTCP.label)
	fmt.Fprintln(w, strings.Repeat("-", 28+1+12+3*15))
	row("128 B, 1 sender", "msgs/s", func(f *figures) float64 { return f.Small1MsgsPerSec }, "%.0f")
	row("128 B, 1 sender", "MB/s", func(f *figures) float64 { return f.Small1MBPerSec }, "%.1f")
	row("128 B, 8 senders", "msgs/s", func(f *figures) float64 { return f.Small8MsgsPerSec }, "%.0f")
	row("128 B, 8 senders", "MB/s", func(f *figures) float64 { return f.Small8MBPerSec }, "%.1f")
	row("64 KiB, 1 sender", "msgs/s", func(f *figures) float64 { return f.BigMsgsPerSec }, "%.0f")
	row("64 KiB, 1 sender", "MB/s", func(f *figures) float64 { return f.BigMBPerSec }, "%.1f")
	if sw.Small8Writes > 0 {
		row("write syscalls, 128 B x1", "per msg", func(f *figures) float64 { return f.Small1Writes }, "%.2f")
		row("write syscalls, 128 B x8", "per msg", func(f *figures) float64 { return f.Small8Writes }, "%.2f")
		row("write syscalls, 64 KiB", "per msg", func(f *figures) float64 { return f.BigWrites }, "%.2f")
	}
	row("round trip 128 B, p50", "us", func(f *figures) float64 { return f.RTTP50Micros }, "%.1f")
	row("round trip 128 B, p99", "us", func(f *figures) float64 { return f.RTTP99Micros }, "%.1f")
	row("cold connect, median", "us", func(f *figures) float64 { return f.ColdConnectUs }, "%.0f")
	row("idle connection", "bytes", func(f *figures) float64 { return f.IdleBytes }, "%.0f")
	row("  of which heap", "bytes", func(f *figures) float64 { return f.IdleHeapBytes }, "%.0f")
	row("  of which stacks", "bytes", func(f *figures) float64 { return f.IdleStackBytes }, "%.0f")
	row("idle connection", "goroutines", func(f *figures) float64 { return f.IdleGoroutines }, "%.2f")
	fmt.Fprintf(w, "%-28s %-12s %14s %14.0f\n", "idle, no reader goroutines", "bytes", "", bare.IdleBytes)
	fmt.Fprintf(w, "%-28s %-12s %14.1f   (%g allocs/op)\n", "Connect, already connected", "ns/op", r.CachedNs, r.CachedAllocs)

	fmt.Fprintf(w, "\n%-44s %8s  %-10s\n", "ratio (skipwire / baseline)", "value", "target")
	fmt.Fprintln(w, strings.Repeat("-", 44+2+8+2+10+6))
	check := func(name string, v float64, op string, target float64) {
		verdict, tgt := "", ""
		switch op {
		case ">=":
			tgt = fmt.Sprintf(">= %.2f", target)
			verdict = pass(v >= target)
		case "<=":
			tgt = fmt.Sprintf("<= %.2f", target)
			verdict = pass(v <= target)
		}
		fmt.Fprintf(w, "%-44s %8.3f  %-10s %s\n", name, v, tgt, verdict)
	}
	check("64 KiB throughput vs raw libp2p", r.ThroughputBigVsLibp2p, ">=", 0.95)
	check("64 KiB throughput vs plain TCP", r.ThroughputBigVsTCP, "", 0)
	check("128 B msgs/s, 8 senders, vs plain TCP", r.Small8VsTCP, ">=", 1.0)
	check("128 B msgs/s, 8 senders, vs raw libp2p", r.Small8VsLibp2p, "", 0)
	check("128 B msgs/s, 1 sender, vs plain TCP", r.Small1VsTCP, "", 0)
	check("128 B msgs/s, 1 sender, vs raw libp2p", r.Small1VsLibp2p, "", 0)
	check("round trip p50 vs raw libp2p", r.RTTP50VsLibp2p, "<=", 1.1)
	check("round trip p99 vs raw libp2p", r.RTTP99VsLibp2p, "", 0)
	check("round trip p50 vs plain TCP", r.RTTP50VsTCP, "", 0)
	check("cold connect vs raw libp2p", r.ColdConnectVsLibp2p, "<=", 1.2)
	check("idle bytes/conn vs raw libp2p (with readers)", r.IdleBytesVsLibp2p, "<=", 1.2)
	check("idle heap/conn vs raw libp2p (with readers)", r.IdleHeapVsLibp2p, "", 0)
	check("idle bytes/conn vs bare libp2p (no readers)", r.IdleBytesVsBareLibp2p, "", 0)
	cached := pass(r.CachedNs <= 1000 && r.CachedAllocs == 0)
	fmt.Fprintf(w, "%-44s %8.1f  %-10s %s\n", "Connect, already connected (ns, 0 allocs)", r.CachedNs, "<= 1000", cached)

	fmt.Fprintln(w, "\nhow the figures are taken:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

func pass(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}
