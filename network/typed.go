package network

import (
	"context"
	"fmt"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Handle returns a processor that decodes each message's payload with codec
// and calls f with the message and the value. A payload that does not decode
// is dropped and logged.
func Handle[T any](codec Codec[T], f func(ctx context.Context, m Message, v T)) MessageProcessor {
	return ProcessorFunc(func(ctx context.Context, m Message) {
		v, err := codec.Unmarshal(m.Payload)
		if err != nil {
			log.Warnw("undecodable message dropped", "channel", m.Channel, "from", m.From, "err", err)
			return
		}
		f(ctx, m, v)
	})
}

// Send encodes v with codec and sends it with c.Send.
func Send[T any](ctx context.Context, c Conduit, to identity.Identifier, codec Codec[T], v T, opts ...p2pconn.ConnectOption) error {
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("send to %s on %q: encode: %w", to.Short(), c.Channel(), err)
	}
	return c.Send(ctx, to, b, opts...)
}

// Call encodes req with reqCodec, sends it with c.Request and decodes the
// reply with respCodec.
func Call[Req, Resp any](ctx context.Context, c Conduit, to identity.Identifier, req Req, reqCodec Codec[Req], respCodec Codec[Resp], opts ...p2pconn.ConnectOption) (Resp, error) {
	var zero Resp
	b, err := reqCodec.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("request to %s on %q: encode: %w", to.Short(), c.Channel(), err)
	}
	m, err := c.Request(ctx, to, b, opts...)
	if err != nil {
		return zero, err
	}
	resp, err := respCodec.Unmarshal(m.Payload)
	if err != nil {
		return zero, fmt.Errorf("request to %s on %q: decode the reply from %s: %w", to.Short(), c.Channel(), m.From.Short(), err)
	}
	return resp, nil
}

// Reply encodes v with codec and answers call with c.Reply.
func Reply[T any](ctx context.Context, c Conduit, call CallRef, codec Codec[T], v T) error {
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("reply to %s on %q: encode: %w", call, c.Channel(), err)
	}
	return c.Reply(ctx, call, b)
}

// Serve registers on n, for ch, a processor that answers Requests: it
// decodes each payload with reqCodec, calls f, and replies with f's result
// encoded with respCodec. f runs as a processor does (one sender's messages
// at a time). When f returns an error, or the message is not a call, nothing
// is replied; the error is logged.
func Serve[Req, Resp any](n *Network, ch Channel, reqCodec Codec[Req], respCodec Codec[Resp], f func(ctx context.Context, m Message, req Req) (Resp, error)) (Conduit, error) {
	c := n.Conduit(ch)
	return n.Register(ch, Handle(reqCodec, func(ctx context.Context, m Message, req Req) {
		resp, err := f(ctx, m, req)
		if err != nil {
			log.Debugw("request not answered", "channel", ch, "from", m.From, "err", err)
			return
		}
		if m.Call.IsZero() {
			return
		}
		if err := Reply(ctx, c, m.Call, respCodec, resp); err != nil {
			log.Debugw("reply not sent", "channel", ch, "call", m.Call, "err", err)
		}
	}))
}
