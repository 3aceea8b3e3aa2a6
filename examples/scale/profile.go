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

// perConn returns the kinds whose count changed by at least least per
// connection from before to after, per connection, most first.
func perConn[K comparable, V int | int64](before, after map[K]V, conns int, least float64, toGroup func(K, float64) group) []group {
	var out []group
	for k, a := range after {
		if d := float64(a-before[k]) / float64(conns); d >= least {
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

// sites are the live objects of the heap by where they were allocated.
type sites struct {
	Timers map[string]int   // live timers by where they were created
	Heap   map[string]int64 // live bytes by allocation site
	Own    int64            // live bytes allocated with a frame of skipwire's p2pconn on the stack
}

// countSites returns the live objects by where they were allocated, as of
// a garbage collection it runs. Only objects allocated while
// runtime.MemProfileRate was 1 are all there.
//
// A timer is an object allocated by time.NewTimer, time.AfterFunc,
// time.NewTicker or a context deadline; its site is the first frame
// outside the packages time, context and runtime. A heap object's site is
// its first frame outside the runtime and the standard library's generic
// helpers.
func countSites() sites {
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
	out := sites{Timers: map[string]int{}, Heap: map[string]int64{}}
	for _, r := range recs {
		objects, bytes := r.InUseObjects(), r.InUseBytes()
		if objects <= 0 {
			continue
		}
		timer, heap, own := siteOf(r.Stack())
		if timer != "" {
			out.Timers[timer] += int(objects)
		}
		out.Heap[heap] += bytes
		if own {
			out.Own += bytes
		}
	}
	return out
}

// siteOf names an allocation's site, and its timer's if it made one, and
// says whether skipwire's p2pconn is on the stack.
func siteOf(stack []uintptr) (timer, heap string, own bool) {
	frames := runtime.CallersFrames(stack)
	isTimer := false
	for {
		f, more := frames.Next()
		name := f.Function
		where := fmt.Sprintf("%s %s:%d", name, shortFile(f.File), f.Line)
		switch {
		case name == "time.newTimer" || name == "runtime.newTimer":
			isTimer = true
		case isTimer && timer == "" && !hasPrefix(name, "time.", "context.", "runtime."):
			timer = where
		}
		if heap == "" && !hasPrefix(name, "runtime.", "internal/", "bytes.", "strings.", "slices.", "maps.", "fmt.", "sync.", "reflect.", "encoding/") {
			heap = where
		}
		if strings.HasPrefix(name, "github.com/skipwire/skipwire/p2pconn.") {
			own = true
		}
		if !more {
			if heap == "" {
				heap = where
			}
			return timer, heap, own
		}
	}
}

func hasPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
