package network

import (
	"context"
	"slices"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Defaults are what every call of a conduit gets unless it says otherwise,
// so that call sites do not repeat them.
type Defaults struct {
	// Timeout bounds each call (Send, Request, Reply, Forward) on top of its
	// own ctx: the earlier deadline wins. 0: no bound but the ctx.
	Timeout time.Duration
	// Connect are applied before each call's own options, which therefore
	// win, when a call must open a connection: for example
	// p2pconn.WithRetryAttempts(0) so that routing fails fast.
	Connect []p2pconn.ConnectOption
}

// WithDefaults returns a conduit on c's channel whose calls get d:
//
//	search := network.WithDefaults(n.Conduit("search"), network.Defaults{
//		Timeout: 2 * time.Second,
//		Connect: []p2pconn.ConnectOption{p2pconn.WithRetryAttempts(0)},
//	})
//	answer, err := search.Request(context.Background(), next, query) // at most 2 s
func WithDefaults(c Conduit, d Defaults) Conduit {
	return &defaulted{c: c, d: Defaults{Timeout: d.Timeout, Connect: slices.Clone(d.Connect)}}
}

// defaulted is a Conduit with Defaults.
type defaulted struct {
	c Conduit
	d Defaults
}

func (c *defaulted) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.d.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.d.Timeout)
}

func (c *defaulted) opts(opts []p2pconn.ConnectOption) []p2pconn.ConnectOption {
	if len(c.d.Connect) == 0 {
		return opts
	}
	return append(slices.Clip(c.d.Connect), opts...)
}

func (c *defaulted) Channel() Channel { return c.c.Channel() }

func (c *defaulted) Send(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.c.Send(ctx, to, payload, c.opts(opts)...)
}

func (c *defaulted) Request(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) (Message, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.c.Request(ctx, to, payload, c.opts(opts)...)
}

func (c *defaulted) Reply(ctx context.Context, call CallRef, payload []byte) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.c.Reply(ctx, call, payload)
}

func (c *defaulted) Forward(ctx context.Context, to identity.Identifier, call CallRef, payload []byte, opts ...p2pconn.ConnectOption) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.c.Forward(ctx, to, call, payload, c.opts(opts)...)
}
