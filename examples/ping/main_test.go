package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/internal/cli/clitest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fullAddr matches the multiaddr the listener prints.
var fullAddr = regexp.MustCompile(`/ip4/\S+/p2p/12D3KooW\S+`)

// startListener runs the listener in-process and returns the address it
// prints. When the test ends it is stopped, and must have exited 0.
func startListener(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, nil, nil, w, &stderr)
		w.Close()
		done <- code
	}()
	addrc := make(chan string, 1)
	read := make(chan struct{})
	go func() { // reads every line until the listener exits
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if a := fullAddr.FindString(sc.Text()); a != "" {
				select {
				case addrc <- a:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			require.Equal(t, 0, code, "listener exit status; stderr: %s", stderr.String())
		case <-time.After(10 * time.Second):
			t.Error("listener did not stop")
		}
		<-read
	})

	select {
	case a := <-addrc:
		return a
	case code := <-done:
		t.Fatalf("listener exited with %d; stderr: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the listener printed no address")
	}
	return ""
}

func runPing(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return clitest.Run(t, run, 20*time.Second, nil, args...)
}

func TestPing(t *testing.T) {
	addr := startListener(t)
	code, out, errOut := runPing(t, "-c", "5", "-i", "10ms", "-s", "100", addr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Empty(t, errOut)
	require.Equal(t, 5, strings.Count(out, "100 bytes from "), out)
	for _, seq := range []string{"seq=1 ", "seq=5 "} {
		require.Contains(t, out, seq)
	}
	require.Regexp(t, `5 messages sent, 5 received, 0% loss; rtt min/avg/max/mdev = [0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+ ms`, out)
}

// TestPingTwice pings a listener twice with one key file: the client's
// Identifier survives, and the listener serves both runs.
func TestPingTwice(t *testing.T) {
	addr := startListener(t)
	key := t.TempDir() + "/client.key"
	for range 2 {
		code, out, errOut := runPing(t, "-c", "2", "-i", "1ms", "-key", key, addr)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		require.Contains(t, out, "2 messages sent, 2 received, 0% loss")
	}
}

func TestErrors(t *testing.T) {
	closedPort, id := clitest.UnreachablePeer(t)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not a multiaddr", []string{"localhost:4001"}, `bad address "localhost:4001"`},
		{"unknown protocol", []string{"/ip4/127.0.0.1/tpc/4001/p2p/" + id.PeerID().String()}, "bad address"},
		{"no peer ID", []string{"/ip4/127.0.0.1/tcp/4001"}, "has no /p2p/<peer id> part"},
		{"unreachable", []string{"-c", "1", closedPort}, "cannot reach " + id.Short() + ": /ip4/127.0.0.1/tcp/1: "},
		{"two addresses", []string{closedPort, closedPort}, "one address at most"},
		{"small size", []string{"-s", "4", closedPort}, "-s 4: size must be between"},
		{"bad flag", []string{"-c", "many"}, `invalid value "many" for flag -c`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runPing(t, tc.args...)
			require.Equal(t, 2, code)
			first, _, _ := strings.Cut(errOut, "\n")
			require.Contains(t, first, tc.want, "stderr: %s", errOut)
			if tc.name != "bad flag" { // the flag package adds the usage
				require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		code, out, errOut := runPing(t, "-h")
		require.Equal(t, 0, code)
		require.Empty(t, out)
		require.Contains(t, errOut, "Usage:")
		require.Contains(t, errOut, "-c int")
	})
}

// TestPeerLeaves stops the listener in the middle of a run: the client says
// why it stopped and exits 1.
func TestPeerLeaves(t *testing.T) {
	lctx, stopListener := context.WithCancel(context.Background())
	defer stopListener()
	lr, lw := io.Pipe()
	ldone := make(chan int, 1)
	go func() {
		ldone <- run(lctx, nil, nil, lw, io.Discard)
		lw.Close()
	}()
	sc := bufio.NewScanner(lr)
	addr := ""
	for addr == "" && sc.Scan() {
		addr = fullAddr.FindString(sc.Text())
	}
	require.NotEmpty(t, addr)
	go func() {
		for sc.Scan() {
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, w := io.Pipe()
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-c", "1000", "-i", "5ms", addr}, nil, w, &errOut)
		w.Close()
	}()
	var out strings.Builder
	csc := bufio.NewScanner(r)
	for csc.Scan() {
		out.WriteString(csc.Text() + "\n")
		if strings.Contains(csc.Text(), "seq=3 ") {
			stopListener()
		}
	}
	require.Equal(t, 1, <-done, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	require.Equal(t, 0, <-ldone)
	// The listener's manager closed: the peer left (p2pconn.ErrPeerLeft).
	require.Contains(t, errOut.String(), "remote node left")
	require.Regexp(t, `\d+ messages sent, \d+ received`, out.String())
}
