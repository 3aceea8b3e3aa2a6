package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/internal/cli/clitest"
)

// binDir holds the chat binary, built once by chatBinary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skipwire-chat-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// chatBinary builds the program once per test run.
func chatBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "chat")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// waitTime bounds every wait for a line or an exit.
const waitTime = 15 * time.Second

// proc is one chat process with its stdin and the lines of its stdout.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited and its output is read

	mu      sync.Mutex
	pending []string      // stdout lines not yet matched by expect
	all     []string      // every stdout line, for failure messages
	stderr  bytes.Buffer  // guarded by mu through lockedWriter
	more    chan struct{} // signalled when a line arrives
}

// start runs the chat binary with args; it is killed, if still running, when
// the test ends.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{}), more: make(chan struct{}, 1)}
	p.cmd = exec.Command(chatBinary(t), args...)
	p.cmd.Stderr = lockedWriter{p}
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.pending = append(p.pending, sc.Text())
			p.all = append(p.all, sc.Text())
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default:
			}
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stderr.Write(b)
}

// output returns everything the process printed so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("--- %s stdout:\n%s\n--- %s stderr:\n%s", p.name, strings.Join(p.all, "\n"), p.name, p.stderr.String())
}

// expect waits for a stdout line matching pattern, in any order relative to
// the other lines, consumes it and returns its submatches.
func (p *proc) expect(pattern string) []string {
	p.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(waitTime)
	for {
		if m := p.take(re); m != nil {
			return m
		}
		select {
		case <-p.more:
		case <-p.done: // every line has been read
			if m := p.take(re); m != nil {
				return m
			}
			p.t.Fatalf("%s exited without printing a line matching %q\n%s", p.name, pattern, p.output())
		case <-deadline:
			p.t.Fatalf("%s printed no line matching %q within %s\n%s", p.name, pattern, waitTime, p.output())
		}
	}
}

// take removes and returns the submatches of the first pending line that
// matches re, or nil.
func (p *proc) take(re *regexp.Regexp) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, l := range p.pending {
		if m := re.FindStringSubmatch(l); m != nil {
			p.pending = append(p.pending[:i], p.pending[i+1:]...)
			return m
		}
	}
	return nil
}

// say types a line.
func (p *proc) say(line string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.t, err)
}

// wait waits for the process to exit and checks its status is 0.
func (p *proc) wait() {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTime):
		p.t.Fatalf("%s did not exit\n%s", p.name, p.output())
	}
	require.Equal(p.t, 0, p.cmd.ProcessState.ExitCode(), p.output())
}

// quit closes stdin (Ctrl-D) and waits for a clean exit.
func (p *proc) quit() {
	p.t.Helper()
	require.NoError(p.t, p.stdin.Close())
	p.expect(`^\* leaving$`)
	p.wait()
}

// interrupt sends Ctrl-C and waits for a clean exit.
func (p *proc) interrupt() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(os.Interrupt))
	p.expect(`^\* leaving$`)
	p.wait()
}

// banner reads the start-up lines: the short Identifier, the full one, and
// the address.
func (p *proc) banner() (short, full, addr string) {
	p.t.Helper()
	short = p.expect(`^skipwire chat: you are ([0-9a-f]{8})$`)[1]
	full = p.expect(`^  Identifier ([0-9a-f]{64})$`)[1]
	addr = p.expect(`^  listening on (/ip4/\S+/p2p/12D3KooW\S+)$`)[1]
	require.True(p.t, strings.HasPrefix(full, short))
	return short, full, addr
}

func TestChat(t *testing.T) {
	keys := t.TempDir()
	a := start(t, "a", "-key", filepath.Join(keys, "a.key"))
	aID, aFull, aAddr := a.banner()
	// The exact command to join, run as printed.
	cmdLine := a.expect(`^  (\S+ /ip4/\S+)$`)[1]
	join := strings.Fields(cmdLine)
	require.Equal(t, chatBinary(t), join[0])
	require.Equal(t, aAddr, join[1])

	b := start(t, "b", join[1:]...)
	bID, _, bAddr := b.banner()
	// Each announces the other with the address it listens on (for a, not
	// b's outgoing port).
	b.expect(`^\* ` + aID + ` joined \(` + regexp.QuoteMeta(aAddr) + `\)$`)
	a.expect(`^\* ` + bID + ` joined \(` + regexp.QuoteMeta(bAddr) + `\)$`)

	// Lines go both ways, printed with the sender's short Identifier.
	a.say("hello from a")
	b.expect(`^\[` + aID + `\] hello from a$`)
	b.say("hello from b, with ünïcode")
	a.expect(`^\[` + bID + `\] hello from b, with ünïcode$`)

	// C joins through B and meets A, whom B introduces.
	c := start(t, "c", bAddr)
	cID, _, _ := c.banner()
	c.expect(`^\* ` + bID + ` joined`)
	c.expect(`^\* ` + aID + ` joined`)
	a.expect(`^\* ` + cID + ` joined`)
	b.expect(`^\* ` + cID + ` joined`)
	c.say("hello from c")
	a.expect(`^\[` + cID + `\] hello from c$`)
	b.expect(`^\[` + cID + `\] hello from c$`)
	a.say("hi c")
	c.expect(`^\[` + aID + `\] hi c$`)

	// B leaves at end of input, C with Ctrl-C: the others see them leave.
	b.quit()
	a.expect(`^\* ` + bID + ` left$`)
	c.expect(`^\* ` + bID + ` left$`)

	// D joins through A, who introduces C but no longer B.
	d := start(t, "d", aAddr)
	dID, _, _ := d.banner()
	d.expect(`^\* ` + aID + ` joined`)
	d.expect(`^\* ` + cID + ` joined`)
	d.quit()
	a.expect(`^\* ` + dID + ` left$`)
	c.expect(`^\* ` + dID + ` left$`)
	require.NotContains(t, d.output(), "could not reach", "a member who left was introduced")
	c.interrupt()
	a.expect(`^\* ` + cID + ` left$`)
	a.say("anyone?")
	a.expect(`^\* nobody else is here yet$`)
	a.quit()

	// The key file keeps A's Identifier.
	a2 := start(t, "a again", "-key", filepath.Join(keys, "a.key"))
	_, full, _ := a2.banner()
	require.Equal(t, aFull, full)
	a2.quit()
}

// TestMetrics runs a chat with -metrics on a free port, reads the URL it
// prints, and follows its counters while a second chat joins and a line is
// sent; the server is gone once the chat has left.
func TestMetrics(t *testing.T) {
	a := start(t, "a", "-metrics", "127.0.0.1:0")
	aID, _, aAddr := a.banner()
	url := a.expect(`^  metrics at (http://127\.0\.0\.1:[1-9][0-9]*/metrics)$`)[1]
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	body := scrape(t, client, url)
	require.Contains(t, body, "skipwire_connections")
	require.Contains(t, body, "go_goroutines", "the Go collectors are served too")
	require.Equal(t, 0, metric(t, body, `skipwire_messages_total{direction="out"}`))

	b := start(t, "b", aAddr)
	bID, _, _ := b.banner()
	a.expect(`^\* ` + bID + ` joined`)
	b.expect(`^\* ` + aID + ` joined`)
	var before int // messages a sent so far: its hello to b
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		body := scrape(c, client, url)
		assert.Equal(c, 1, metric(c, body, `skipwire_connections{direction="inbound"}`), "b's connection")
		before = metric(c, body, `skipwire_messages_total{direction="out"}`)
		assert.Equal(c, 1, before, "the hello a sent b")
	}, waitTime, 20*time.Millisecond)

	a.say("hello b")
	b.expect(`^\[` + aID + `\] hello b$`)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		body := scrape(c, client, url)
		assert.Equal(c, before+1, metric(c, body, `skipwire_messages_total{direction="out"}`), "the line a sent")
	}, waitTime, 20*time.Millisecond)

	b.quit()
	a.quit()
	_, err := client.Get(url)
	require.Error(t, err, "the metrics server stops with the chat")
}

// scrape returns the body of a GET of url, which must answer 200. t may be
// the *assert.CollectT of an EventuallyWithT.
func scrape(t require.TestingT, client *http.Client, url string) string {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

// metric returns the value of the integer sample named series (the metric
// name and its labels, as printed) in a Prometheus text body. t may be the
// *assert.CollectT of an EventuallyWithT.
func metric(t require.TestingT, body, series string) int {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, "no sample %s in\n%s", series, body)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// TestErrors runs the program in-process: bad arguments and unreachable
// peers give one clear line on stderr and exit status 2.
func TestErrors(t *testing.T) {
	closedPort, id := clitest.UnreachablePeer(t)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not a multiaddr", []string{"127.0.0.1:4001"}, `chat: bad address "127.0.0.1:4001"`},
		{"no peer ID", []string{"/ip4/127.0.0.1/tcp/4001"}, "has no /p2p/<peer id> part"},
		{"unreachable", []string{closedPort}, "chat: cannot reach " + id.Short() + ": /ip4/127.0.0.1/tcp/1: "},
		{"bad listen address", []string{"-listen", "127.0.0.1"}, `chat: bad listen address "127.0.0.1"`},
		{"bad key file", []string{"-key", t.TempDir()}, "chat: identity: read key"},
		{"bad metrics address", []string{"-metrics", "localhost"}, "chat: -metrics: listen tcp: address localhost: missing port in address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := clitest.Run(t, run, waitTime, strings.NewReader(""), tc.args...)
			require.Equal(t, 2, code, "stdout: %s\nstderr: %s", out, errOut)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		})
	}

	t.Run("help", func(t *testing.T) {
		code, _, errOut := clitest.Run(t, run, waitTime, strings.NewReader(""), "-h")
		require.Equal(t, 0, code)
		require.Contains(t, errOut, "Usage:")
		require.Contains(t, errOut, "-key string")
	})
}
