package testkit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/testkit"
)

// Roles of the children these tests start.
var (
	// argsRole reports its arguments and one environment variable.
	argsRole = testkit.Role{Name: "args", Run: func(ctx context.Context, args []string) error {
		testkit.Ready(append(args, os.Getenv("TESTKIT_TEST_VAR"))...)
		<-ctx.Done()
		return nil
	}}
	// echoRole echoes lines on a loopback TCP port it reports.
	echoRole = testkit.Role{Name: "echo", Run: runEcho}
	// failRole fails before it is ready.
	failRole = testkit.Role{Name: "fail", Run: func(context.Context, []string) error {
		return errors.New("cannot start")
	}}
	// stubbornRole ignores the request to stop.
	stubbornRole = testkit.Role{Name: "stubborn", Run: func(context.Context, []string) error {
		testkit.Ready()
		select {}
	}}
	// serveRole answers each line its parent writes with the line in upper
	// case, and says "bye" once its ctx ends.
	serveRole = testkit.Role{Name: "serve", Serve: runServe}
	// unregisteredRole is not passed to ChildMain.
	unregisteredRole = testkit.Role{Name: "unregistered", Run: func(context.Context, []string) error { return nil }}
)

func TestMain(m *testing.M) {
	testkit.ChildMain(argsRole, echoRole, failRole, stubbornRole, serveRole)
	goleak.VerifyTestMain(m)
}

func runEcho(ctx context.Context, _ []string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	testkit.Ready(l.Addr().String())
	for {
		c, err := l.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintln(c, sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}

func runServe(ctx context.Context, _ []string, stdin io.Reader) error {
	testkit.Ready()
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		fmt.Println(strings.ToUpper(sc.Text()))
	}
	<-ctx.Done() // ended by the end of stdin
	fmt.Println("bye")
	return nil
}

// TestChildServe drives a Serve role through its stdin and reads its
// answers with Lines; closing stdin (Stop) ends its ctx.
func TestChildServe(t *testing.T) {
	lines := make(chan string, 10)
	c := testkit.StartChild(t, serveRole, testkit.ChildOptions{Lines: func(line []byte) { lines <- string(line) }})
	for _, s := range []string{"one", "two"} {
		_, err := fmt.Fprintln(c.Stdin(), s)
		require.NoError(t, err)
		select {
		case got := <-lines:
			require.Equal(t, strings.ToUpper(s), got)
		case <-time.After(30 * time.Second):
			t.Fatalf("no answer to %q", s)
		}
	}
	require.NoError(t, c.Stop(10*time.Second))
	require.Equal(t, "bye", <-lines, "every line is passed on before the child is seen to exit")
	_, err := fmt.Fprintln(c.Stdin(), "three")
	require.Error(t, err, "stdin is closed")
}

func TestChildReadyArgsEnv(t *testing.T) {
	c := testkit.StartChild(t, argsRole, testkit.ChildOptions{
		Args: []string{"a", "b"},
		Env:  []string{"TESTKIT_TEST_VAR=c"},
	})
	require.Equal(t, []string{"a", "b", "c"}, c.Ready)
	require.NotZero(t, c.Pid())
	require.NoError(t, c.Stop(10*time.Second))
	require.NoError(t, c.Stop(time.Second), "Stop again")
	require.Error(t, c.Freeze(), "signal to an exited child")
}

// TestChildFreezeThaw checks that a frozen child answers nothing until it is
// thawed, and that its connection survives.
func TestChildFreezeThaw(t *testing.T) {
	c := testkit.StartChild(t, echoRole, testkit.ChildOptions{})
	require.Len(t, c.Ready, 1)
	conn, err := net.Dial("tcp", c.Ready[0])
	require.NoError(t, err)
	defer conn.Close()
	r := bufio.NewReader(conn)
	ask := func(line string, wait time.Duration) (string, error) {
		require.NoError(t, conn.SetDeadline(time.Now().Add(wait)))
		if _, err := fmt.Fprintln(conn, line); err != nil {
			return "", err
		}
		return r.ReadString('\n')
	}
	got, err := ask("one", 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one\n", got)

	require.NoError(t, c.Freeze())
	_, err = ask("two", 300*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a frozen child does not answer")
	require.True(t, ne.Timeout(), "a frozen child does not answer: %v", err)

	require.NoError(t, c.Thaw())
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "the thawed child answers what it was sent while frozen")
}

func TestChildKill(t *testing.T) {
	c := testkit.StartChild(t, echoRole, testkit.ChildOptions{})
	require.NoError(t, c.Freeze())
	require.NoError(t, c.Kill())
	select {
	case <-c.Exited():
	default:
		t.Fatal("Kill returned before the child exited")
	}
	require.Error(t, c.Stop(time.Second), "a killed child did not exit cleanly")
	require.Error(t, c.Kill(), "Kill of an exited child")
}

func TestChildStopKillsStubbornChild(t *testing.T) {
	c := testkit.StartChild(t, stubbornRole, testkit.ChildOptions{})
	start := time.Now()
	err := c.Stop(200 * time.Millisecond)
	require.ErrorContains(t, err, "killed")
	require.Less(t, time.Since(start), 10*time.Second)
	<-c.Exited()
}

// fakeT records the failure of a helper instead of failing the test; its
// FailNow ends the goroutine, as testing.T's does.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	failed   string
	cleanups []func()
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed += fmt.Sprintf(format, args...)
}

func (f *fakeT) FailNow() { runtime.Goexit() }

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// startFailing runs StartChild for role with a fakeT and returns the failure.
func startFailing(t *testing.T, role testkit.Role) string {
	f := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testkit.StartChild(f, role, testkit.ChildOptions{})
	}()
	<-done
	for _, fn := range f.cleanups {
		fn()
	}
	return f.failed
}

func TestChildExitsBeforeReady(t *testing.T) {
	require.Contains(t, startFailing(t, failRole), "exited before it was ready")
	require.Contains(t, startFailing(t, unregisteredRole), "exited before it was ready")
}

func TestContext(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = testkit.Context(t, time.Hour)
		deadline, ok := ctx.Deadline()
		require.True(t, ok)
		require.WithinDuration(t, time.Now().Add(time.Hour), deadline, time.Minute)
		require.NoError(t, ctx.Err())
	})
	require.ErrorIs(t, ctx.Err(), context.Canceled, "the ctx ends with its test")
	require.ErrorIs(t, testkit.Context(t, time.Nanosecond).Err(), context.DeadlineExceeded)
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		ds := make([]time.Duration, len(xs))
		for i, x := range xs {
			ds[i] = time.Duration(x) * time.Millisecond
		}
		return ds
	}
	ten := ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1) // unsorted on purpose
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ten, 0, time.Millisecond},
		{"p10", ten, 10, time.Millisecond},
		{"p11 rounds up", ten, 11, 2 * time.Millisecond},
		{"p50", ten, 50, 5 * time.Millisecond},
		{"p90", ten, 90, 9 * time.Millisecond},
		{"p99", ten, 99, 10 * time.Millisecond},
		{"p100 is the maximum", ten, 100, 10 * time.Millisecond},
		{"p50 of two", ms(1, 2), 50, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.ds)
			require.Equal(t, tc.want, testkit.Percentile(tc.ds, tc.p))
			require.Equal(t, before, fmt.Sprint(tc.ds), "the samples are not modified")
		})
	}
}

func TestNewHost(t *testing.T) {
	a := testkit.NewHost(t, nil, "")
	b := testkit.NewHost(t, nil, testkit.LoopbackQUIC)
	require.NotEqual(t, a.ID(), b.ID(), "fresh keys")
	require.Len(t, a.Addrs(), 1)
	require.Contains(t, a.Addrs()[0].String(), "/ip4/127.0.0.1/tcp/")
	require.Contains(t, b.Addrs()[0].String(), "/ip4/127.0.0.1/udp/")
	ctx := testkit.Context(t, 30*time.Second)
	require.NoError(t, a.Connect(ctx, b.Peerstore().PeerInfo(b.ID())))
	require.Len(t, a.Network().ConnsToPeer(b.ID()), 1)
}

// TestForEach: every index is visited once, never more than limit at a time.
func TestForEach(t *testing.T) {
	for _, limit := range []int{0, 1, 3, 100} {
		var mu sync.Mutex
		seen := make(map[int]int)
		running, most := 0, 0
		testkit.ForEach(50, limit, func(i int) {
			mu.Lock()
			seen[i]++
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		})
		require.Len(t, seen, 50)
		for i, n := range seen {
			require.Equal(t, 1, n, "index %d", i)
		}
		require.LessOrEqual(t, most, max(limit, 1), "limit %d", limit)
		require.Zero(t, running)
	}
	require.Equal(t, 4*runtime.GOMAXPROCS(0), testkit.Parallel())
}
