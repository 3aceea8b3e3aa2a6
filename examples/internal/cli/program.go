package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Program is an example program's body: it runs with args (without the
// program name) and the given streams until it is done or ctx ends, and
// returns the exit status. Tests call it in-process.
type Program func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// Main runs p with the process's arguments and streams, and exits with its
// status. The first interrupt (Ctrl-C) or SIGTERM ends p's ctx, so that it
// can stop cleanly; a second one kills the process.
func Main(p Program) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	os.Exit(p(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Printer serialises lines written by several goroutines. It is safe for
// concurrent use.
type Printer struct {
	mu sync.Mutex
	w  io.Writer // guarded by mu
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w} }

// Printf formats as fmt.Fprintf does and writes the result in one piece.
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}
