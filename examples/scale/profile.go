package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skipwire/skipwire/internal/benchkit"
)

// snapshot is the process's memory at one moment, after garbage collection.
type snapshot struct {
	benchkit.MemStats
	RSS uint64 // resident set size (Linux: VmRSS), 0 where unknown
}

func takeSnapshot() snapshot {
	return snapshot{MemStats: benchkit.ReadMem(), RSS: rss("self")}
}

// rss returns the resident set size of process pid ("self": this one)
// from /proc, or 0.
func rss(pid string) uint64 {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime returns the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A goroutine kind is the goroutines that wait in the same place.
type goroutineKind struct {
	Where string // the first frame outside the runtime: where it waits
	Owner string // skipwire's or this program's frames, if any: the innermost and the outermost
	Entry string // the outermost frame: what it runs
}

// group is how many goroutines (or timers) of one kind a connection adds.
type group struct {
	PerConn float64 `json:"per_conn"`
	Where   string  `json:"where"`           // where it waits (a timer: where it was created)
	Owner   string  `json:"owner,omitempty"` // skipwire's or this program's frames: the innermost ... the outermost
	Entry   string  `json:"entry,omitempty"` // the goroutine's outermost frame
}

// String describes g on one line, with shorter package paths.
func (g group) String() string {
	s := short(g.Where)
	if g.Owner != "" && g.Owner != g.Where {
		s += "  <-  " + short(g.Owner)
	}
	if g.Entry != "" && g.Entry != g.Owner && g.Entry != g.Where {
		s += "  [" + short(g.Entry) + "]"
	}
	return s
}

// short drops the common prefixes of package paths.
func short(frame string) string {
	for _, p := range []string{"github.com/skipwire/skipwire/", "github.com/libp2p/go-libp2p/p2p/", "github.com/libp2p/"} {
		frame = strings.ReplaceAll(frame, p, "")
	}
	return frame
}

// countGoroutines returns the goroutines of each kind, from the goroutine
// profile, and the profile itself (pprof debug=1 text).
func countGoroutines() (map[goroutineKind]int, []byte) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	counts := map[goroutineKind]int{}
	var n int
	var frames []string
	flush := func() {
		if n > 0 && len(frames) > 0 {
			counts[kindOf(frames)] += n
		}
		n, frames = 0, frames[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "#\t"):
			// #	0x4a1b2c	pkg.fn+0x2c	/path/to/file.go:123
			f := strings.Fields(line)
			if len(f) == 4 {
				fn, _, _ := strings.Cut(f[2], "+0x")
				frames = append(frames, fn+" "+shortFile(f[3]))
			}
		default:
			if c, _, ok := strings.Cut(line, " @ "); ok {
				flush()
				n, _ = strconv.Atoi(c)
			}
		}
	}
	flush()
	return counts, buf.Bytes()
}

// kindOf names a stack: its first frame outside the runtime and the
// standard library's synchronisation (where the goroutine waits), its
// first frame of skipwire or this program, and its outermost frame.
func kindOf(frames []string) goroutineKind {
	k := goroutineKind{Where: frames[0], Entry: frames[len(frames)-1]}
	for _, f := range frames {
		if !isRuntimeFrame(f) {
			k.Where = f
			break
		}
	}
	// The innermost and the outermost frame of skipwire or this program,
	// closures (such as the wrapper that starts a goroutine) left out of
	// the outermost unless there is nothing else.
	var inner, outer string
	for _, f := range frames {
		if !strings.HasPrefix(f, "github.com/skipwire/") && !strings.HasPrefix(f, "main.") {
			continue
		}
		if inner == "" {
			inner = f
		}
		if fn, _, _ := strings.Cut(f, " "); !strings.Contains(fn, ".func") || outer == "" {
			outer = f
		}
	}
	switch {
	case inner == outer:
		k.Owner = inner
	default:
		k.Owner = inner + " ... " + outer
	}
	return k
}

func isRuntimeFrame(f string) bool {
	for _, p := range []string{"runtime.", "internal/", "sync.", "syscall.", "time.Sleep", "io.", "bufio.", "bytes.", "net.(*conn)", "net.(*netFD)", "net.(*TCPConn)", "crypto/tls."} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// shortFile keeps the last two elements of a source path and the line.
func shortFile(p string) string {
	dir, file := path.Split(p)
	return path.Join(path.Base(dir), file)
}

// perConn returns the kinds whose count changed by at least 1% of conns
// from before to after, per connection, most first.
func perConn[K comparable](before, after map[K]int, conns int, toGroup func(K, float64) group) []group {
	var out []group
	for k, a := range after {
		if d := float64(a-before[k]) / float64(conns); d >= 0.01 {
			out = append(out, toGroup(k, d))
		}
	}
	slices.SortFunc(out, func(a, b group) int {
		if a.PerConn != b.PerConn {
			if a.PerConn > b.PerConn {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Where, b.Where)
	})
	return out
}

// timerSite is where live timers were created: the first frame outside
// the packages time, context and runtime.
type timerSite string

// countTimers returns the live timers (objects allocated by time.NewTimer,
// time.AfterFunc, time.NewTicker and context deadlines) by where they were
// created. It needs runtime.MemProfileRate = 1 from the start, and counts
// as of the last garbage collection.
func countTimers() map[timerSite]int {
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, false)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	out := map[timerSite]int{}
	for _, r := range recs {
		live := int(r.InUseObjects())
		if live <= 0 {
			continue
		}
		if site, ok := timerSiteOf(r.Stack()); ok {
			out[site] += live
		}
	}
	return out
}

// timerSiteOf reports whether the allocation at stack made a timer, and
// where.
func timerSiteOf(stack []uintptr) (timerSite, bool) {
	frames := runtime.CallersFrames(stack)
	timer := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "time.newTimer" || f.Function == "runtime.newTimer":
			timer = true
		case timer && !strings.HasPrefix(f.Function, "time.") && !strings.HasPrefix(f.Function, "context.") && !strings.HasPrefix(f.Function, "runtime."):
			return timerSite(fmt.Sprintf("%s %s:%d", f.Function, shortFile(f.File), f.Line)), true
		}
		if !more {
			return "", false
		}
	}
}
