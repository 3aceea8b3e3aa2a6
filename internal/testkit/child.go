package testkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Role is something the test binary can do as a child process: Run is
// called in the child with the arguments StartChild was given. Run announces
// readiness with Ready, then runs until ctx ends (the parent stopped the
// child or went away) and returns; a non-nil error is printed and makes the
// child exit 1.
//
// A role the parent drives after it is ready sets Serve instead of Run:
// Serve also gets the child's standard input, which carries what the parent
// writes to Child.Stdin, and answers on standard output (after Ready), which
// the parent reads with ChildOptions.Lines. Serve must keep reading stdin:
// its ctx ends, as Run's does, when the parent closes stdin or dies, once a
// read of stdin returns that end (io.EOF).
type Role struct {
	Name  string
	Run   func(ctx context.Context, args []string) error
	Serve func(ctx context.Context, args []string, stdin io.Reader) error
}

// roleEnv names the role a re-executed test binary runs.
const roleEnv = "SKIPWIRE_TESTKIT_ROLE"

// readyPrefix starts the line Ready prints.
const readyPrefix = "READY"

// ChildMain makes this process a child if StartChild started it: it runs the
// role StartChild named (one of roles) and exits. In any other process it
// returns at once. Call it first in TestMain, with every role the package's
// tests start.
func ChildMain(roles ...Role) {
	name, ok := os.LookupEnv(roleEnv)
	if !ok {
		return
	}
	os.Exit(runChild(name, roles))
}

func runChild(name string, roles []Role) int {
	for _, r := range roles {
		if r.Name != name {
			continue
		}
		// The parent closes our stdin to stop us; so does its death.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		if r.Serve != nil {
			err = r.Serve(ctx, childArgs(), endReader{r: os.Stdin, end: cancel})
		} else {
			go func() {
				_, _ = io.Copy(io.Discard, os.Stdin)
				cancel()
			}()
			err = r.Run(ctx, childArgs())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "child: role %q not passed to testkit.ChildMain\n", name)
	return 2
}

// endReader calls end once a read of r fails: the end of a Serve role's
// stdin ends its ctx.
type endReader struct {
	r   io.Reader
	end context.CancelFunc
}

func (e endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.end()
	}
	return n, err
}

// childArgs returns the arguments after "--" on the command line.
func childArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

// Ready tells the parent that the child is ready and passes it fields (which
// must not contain white space): StartChild returns once a child called it,
// with the fields in Child.Ready. Call it once, from the child.
func Ready(fields ...string) {
	fmt.Println(strings.Join(append([]string{readyPrefix}, fields...), " "))
}

// ChildOptions are the optional settings of StartChild.
type ChildOptions struct {
	// Args are passed to the role's Run.
	Args []string
	// Env is added to the child's environment (KEY=value entries).
	Env []string
	// Wrap is a command prefix that runs the child, e.g.
	// {"ip", "netns", "exec", "ns1"}. It must exec the test binary in the
	// same process, so that signals reach the child.
	Wrap []string
	// StartTimeout bounds the wait for Ready. Default 60 s.
	StartTimeout time.Duration
	// Lines, if set, is called with every line the child writes to its
	// standard output after the READY line, in order, from one goroutine,
	// and before Exited is closed. The slice is valid only during the call.
	// Lines of up to MaxLineSize bytes are read whole; a longer line ends
	// the reading (what follows is discarded).
	Lines func(line []byte)
}

// MaxLineSize is the longest line of a child's standard output that Launch
// reads.
const MaxLineSize = 4 << 20

// Child is a child process that called Ready.
type Child struct {
	// Cmd is the running command; use it for what Child offers no method for.
	Cmd *exec.Cmd
	// Ready holds the fields the child passed to Ready.
	Ready []string

	stdin  io.WriteCloser
	exited chan struct{} // closed once Cmd.Wait returned
	err    error         // Cmd.Wait's result, set before exited is closed
}

// StartChild runs the test binary again as a child process playing role,
// and returns once the child called Ready (see Launch); the test fails if
// the child does not. When the test ends, a child still running is stopped
// (Stop with 10 s), and the test fails if it does not exit cleanly.
func StartChild(t testing.TB, role Role, opts ChildOptions) *Child {
	t.Helper()
	c, err := Launch(role, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		select {
		case <-c.exited:
			return // the test ended it and judged how
		default:
		}
		if err := c.Stop(10 * time.Second); err != nil {
			t.Errorf("child %s (pid %d) at the end of the test: %v", role.Name, c.Pid(), err)
		}
	})
	return c
}

// Launch runs this program again as a child process playing role, and
// returns once the child called Ready. It fails, killing the child, if the
// child exits or takes more than opts.StartTimeout before that. The child's
// standard error goes to this process's standard error. Launch needs no
// test: a program whose main calls ChildMain first starts children with it
// too. The caller stops the child (Stop or Kill).
func Launch(role Role, opts ChildOptions) (*Child, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	args := append(append([]string{}, opts.Wrap...), os.Args[0], "-test.run=^$", "--")
	args = append(args, opts.Args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role.Name), opts.Env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("child %s: %w", role.Name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("child %s: %w", role.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("child %s: %w", role.Name, err)
	}
	c := &Child{Cmd: cmd, stdin: stdin, exited: make(chan struct{})}

	// Read stdout to its end, so that the child never blocks on a full pipe;
	// the first READY line is the answer. Wait only once stdout is drained,
	// as exec.Cmd requires.
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, MaxLineSize)
		sent := false
		for sc.Scan() {
			if sent {
				if opts.Lines != nil {
					opts.Lines(sc.Bytes())
				}
				continue
			}
			if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == readyPrefix {
				ready <- f[1:]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		c.err = cmd.Wait()
		close(c.exited)
	}()
	select {
	case c.Ready = <-ready:
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("child %s exited before it was ready: %w", role.Name, c.err)
	case <-time.After(opts.StartTimeout):
		_ = c.Kill()
		return nil, fmt.Errorf("child %s not ready after %s: killed", role.Name, opts.StartTimeout)
	}
}

// Pid returns the child's process ID.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Stdin returns the write end of the child's standard input: what a Serve
// role reads. Writes fail once the child has exited or Stop has closed it;
// a write blocks while the pipe is full (the child does not read).
func (c *Child) Stdin() io.Writer { return c.stdin }

// Freeze stops the child's process (SIGSTOP): it neither runs nor reads its
// sockets until Thaw, while the kernel keeps its connections open. It
// returns once every thread of the child has stopped (a signal is delivered
// asynchronously), at most 10 s after sending it.
func (c *Child) Freeze() error {
	if err := c.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := allStopped(c.Pid())
		switch {
		case err != nil:
			return fmt.Errorf("freeze: %w", err)
		case stopped:
			return nil
		case time.Now().After(deadline):
			return errors.New("freeze: child not stopped 10 s after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of process pid is stopped, from
// /proc/<pid>/task/*/stat (the state follows the command name in
// parentheses: T for stopped).
func allStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, err
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return false, err
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return false, fmt.Errorf("unexpected %s", stat)
		}
		if state := stat[i+2]; state != 'T' {
			return false, nil
		}
	}
	return true, nil
}

// Thaw resumes a frozen child (SIGCONT).
func (c *Child) Thaw() error { return c.signal(syscall.SIGCONT) }

// Kill kills the child (SIGKILL) and waits until it has exited.
func (c *Child) Kill() error {
	if err := c.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-c.exited
	return nil
}

// Stop asks the child to stop (thaws it and closes its stdin, which ends
// its Run's ctx) and waits for it to exit, at most timeout; then it kills
// it. It returns the child's exit error (nil for a clean exit 0), or an
// error saying it had to be killed. Once the child has exited, Stop returns
// its exit error at once.
func (c *Child) Stop(timeout time.Duration) error {
	_ = c.signal(syscall.SIGCONT)
	_ = c.stdin.Close()
	select {
	case <-c.exited:
		return c.err
	case <-time.After(timeout):
	}
	_ = c.Kill()
	return fmt.Errorf("child did not exit within %s after its stdin closed: killed: %w", timeout, c.err)
}

// Exited returns a channel closed once the child has exited.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// signal sends sig to the child, unless it has exited.
func (c *Child) signal(sig syscall.Signal) error {
	select {
	case <-c.exited:
		return fmt.Errorf("signal %s: %w", sig, os.ErrProcessDone)
	default:
	}
	err := c.Cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	return err
}
