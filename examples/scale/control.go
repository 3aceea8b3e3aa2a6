package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/skipwire/skipwire/internal/testkit"
)

// The program talks to its children over their standard input and output,
// one JSON object a line: a request down, one answer up, in turn.

// request is what this process asks a child.
type request struct {
	Op string `json:"op"` // opConnect, opDrop or opMeasure
	// Mode is the contender the peers connect as (opConnect).
	Mode string `json:"mode,omitempty"`
	// Target is the central node's full multiaddr (opConnect).
	Target string `json:"target,omitempty"`
	// Messages is how many 128-byte messages each peer sends once
	// connected (opConnect).
	Messages int `json:"messages,omitempty"`
	// Expect is how many connections the peers made (opMeasure).
	Expect int `json:"expect,omitempty"`
}

const (
	opConnect = "connect" // peers: connect each peer to Target, as Mode
	opDrop    = "drop"    // peers: close every connection, wait until none is left
	opMeasure = "measure" // central: wait for Expect connections, measure, answer a centralResult
)

// answer is a child's reply; Err is set when the request failed.
type answer struct {
	Err string `json:"err,omitempty"`
	// A peers process's answer to opConnect and opDrop.
	Peers *peersAnswer `json:"peers,omitempty"`
	// A central node's answer to opMeasure.
	Central *centralResult `json:"central,omitempty"`
}

// proc is a child process that answers requests.
type proc struct {
	child *testkit.Child
	lines chan []byte
}

// launch starts role with spec (JSON) as its argument and returns once it
// called testkit.Ready.
func launch(role testkit.Role, spec any, logLevel string, start time.Duration) (*proc, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	p := &proc{lines: make(chan []byte, 1)}
	var env []string
	if logLevel != "" {
		env = append(env, "GOLOG_LOG_LEVEL="+logLevel)
	}
	c, err := testkit.Launch(role, testkit.ChildOptions{
		Args:         []string{string(js)},
		Env:          env,
		StartTimeout: start,
		Lines: func(line []byte) {
			p.lines <- append([]byte(nil), line...)
		},
	})
	if err != nil {
		return nil, err
	}
	p.child = c
	return p, nil
}

// call sends req and waits for the answer, the end of ctx or the end of
// the child.
func (p *proc) call(ctx context.Context, req request) (answer, error) {
	var a answer
	line, err := json.Marshal(req)
	if err != nil {
		return a, err
	}
	if _, err := p.child.Stdin().Write(append(line, '\n')); err != nil {
		return a, fmt.Errorf("%s: process %d: %w", req.Op, p.child.Pid(), err)
	}
	select {
	case line := <-p.lines:
		if err := json.Unmarshal(line, &a); err != nil {
			return a, fmt.Errorf("%s: process %d answered %q: %w", req.Op, p.child.Pid(), line, err)
		}
		if a.Err != "" {
			return a, fmt.Errorf("%s: process %d: %s", req.Op, p.child.Pid(), a.Err)
		}
		return a, nil
	case <-p.child.Exited():
		return a, fmt.Errorf("%s: process %d exited", req.Op, p.child.Pid())
	case <-ctx.Done():
		return a, fmt.Errorf("%s: process %d: %w", req.Op, p.child.Pid(), ctx.Err())
	}
}

// stop closes the child's stdin, which ends it, and waits up to timeout.
func (p *proc) stop(timeout time.Duration) error {
	if err := p.child.Stop(timeout); err != nil {
		return fmt.Errorf("process %d: %w", p.child.Pid(), err)
	}
	return nil
}

// serve is a child's side: it reads requests from stdin and writes what
// handle returns to stdout, until stdin ends.
func serve(ctx context.Context, stdin io.Reader, handle func(context.Context, request) answer) error {
	dec := json.NewDecoder(stdin)
	enc := json.NewEncoder(os.Stdout)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		if err := enc.Encode(handle(ctx, req)); err != nil {
			return err
		}
	}
}

// failed returns the answer of a request that failed with err.
func failed(err error) answer {
	return answer{Err: strings.ReplaceAll(err.Error(), "\n", "; ")}
}
