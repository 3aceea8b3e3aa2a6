package network

import (
	"context"
	"fmt"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// conduit is the Conduit of a Network on one channel.
type conduit struct {
	n  *Network
	ch Channel
}

var _ Conduit = (*conduit)(nil)

func (c *conduit) Channel() Channel { return c.ch }

func (c *conduit) Send(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) error {
	if err := checkChannel(c.ch); err != nil {
		return fmt.Errorf("send to %s on %q: %w", to.Short(), c.ch, err)
	}
	if err := c.n.send(ctx, c.ch, to, CallRef{}, false, payload, opts); err != nil {
		return fmt.Errorf("send to %s on %q: %w", to.Short(), c.ch, err)
	}
	return nil
}

func (c *conduit) Request(ctx context.Context, to identity.Identifier, payload []byte, opts ...p2pconn.ConnectOption) (Message, error) {
	if err := checkChannel(c.ch); err != nil {
		return Message{}, fmt.Errorf("request to %s on %q: %w", to.Short(), c.ch, err)
	}
	m, err := c.n.request(ctx, c.ch, to, payload, opts)
	if err != nil {
		return Message{}, fmt.Errorf("request to %s on %q: %w", to.Short(), c.ch, err)
	}
	return m, nil
}

func (c *conduit) Reply(ctx context.Context, call CallRef, payload []byte) error {
	if err := checkChannel(c.ch); err != nil {
		return fmt.Errorf("reply to %s on %q: %w", call, c.ch, err)
	}
	if err := c.n.reply(ctx, c.ch, call, payload); err != nil {
		return fmt.Errorf("reply to %s on %q: %w", call, c.ch, err)
	}
	return nil
}

func (c *conduit) Forward(ctx context.Context, to identity.Identifier, call CallRef, payload []byte, opts ...p2pconn.ConnectOption) error {
	if err := checkChannel(c.ch); err != nil {
		return fmt.Errorf("forward %s to %s on %q: %w", call, to.Short(), c.ch, err)
	}
	if !call.IsZero() && (call.ID == 0 || call.Origin == (identity.Identifier{})) {
		return fmt.Errorf("forward %s to %s on %q: a call needs an origin and a non-zero ID", call, to.Short(), c.ch)
	}
	if err := c.n.send(ctx, c.ch, to, call, true, payload, opts); err != nil {
		return fmt.Errorf("forward %s to %s on %q: %w", call, to.Short(), c.ch, err)
	}
	return nil
}
