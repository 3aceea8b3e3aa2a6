package network_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/network"
)

func TestCallRefBinary(t *testing.T) {
	call := network.CallRef{Origin: identity.Identifier{1, 2, 3}, ID: 0xdeadbeef}
	b, err := call.MarshalBinary()
	require.NoError(t, err)
	require.Len(t, b, network.CallRefSize)
	require.Equal(t, byte(1), b[0])
	require.Equal(t, []byte{0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef}, b[32:])
	var back network.CallRef
	require.NoError(t, back.UnmarshalBinary(b))
	require.Equal(t, call, back)

	require.Error(t, back.UnmarshalBinary(b[:39]))
	require.Error(t, back.UnmarshalBinary(append(b, 0)))
	zeroID := append([]byte(nil), b...)
	clear(zeroID[32:])
	require.Error(t, back.UnmarshalBinary(zeroID), "a zero ID with an origin")
	require.Equal(t, call, back, "unchanged after an error")
	require.NoError(t, back.UnmarshalBinary(make([]byte, network.CallRefSize)))
	require.True(t, back.IsZero())
	require.False(t, call.IsZero())
	require.NotEmpty(t, call.String())
}

// failing is a codec whose Unmarshal always fails.
type failing struct{}

func (failing) Marshal(v string) ([]byte, error)   { return []byte(v), nil }
func (failing) Unmarshal(b []byte) (string, error) { return "", errors.New("undecodable") }

// TestTyped: Handle, Send, Serve and Call over the raw and protobuf codecs;
// an undecodable payload is dropped.
func TestTyped(t *testing.T) {
	ns := newNodes(t, memEnv.world(t), 2, network.Config{})
	a, b := ns[0], ns[1]
	ctx := testContext(t, opTimeout)

	got := make(chan string, 4)
	register(t, b, "raw", network.Handle(network.Raw(), func(_ context.Context, _ network.Message, v []byte) { got <- string(v) }))
	require.NoError(t, network.Send(ctx, a.n.Conduit("raw"), b.id, network.Raw(), []byte("bytes")))
	require.Equal(t, "bytes", <-got)

	register(t, b, "broken", network.Handle[string](failing{}, func(context.Context, network.Message, string) { got <- "decoded" }))
	require.NoError(t, a.n.Conduit("broken").Send(ctx, b.id, []byte("x")))
	require.NoError(t, network.Send(ctx, a.n.Conduit("raw"), b.id, network.Raw(), []byte("after")))
	require.Equal(t, "after", <-got, "the undecodable message was dropped")

	num := network.Proto[wrapperspb.Int64Value]()
	_, err := network.Serve(b.n, "double", num, num, func(_ context.Context, m network.Message, req *wrapperspb.Int64Value) (*wrapperspb.Int64Value, error) {
		if req.GetValue() < 0 {
			return nil, errors.New("negative")
		}
		return wrapperspb.Int64(2 * req.GetValue()), nil
	})
	require.NoError(t, err)
	resp, err := network.Call(ctx, a.n.Conduit("double"), b.id, wrapperspb.Int64(21), num, num)
	require.NoError(t, err)
	require.Equal(t, int64(42), resp.GetValue())
	short, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	_, err = network.Call(short, a.n.Conduit("double"), b.id, wrapperspb.Int64(-1), num, num)
	require.ErrorIs(t, err, context.DeadlineExceeded, "an error of f sends no reply")

	// A reply that does not decode.
	newEcho(t, b, "echo")
	_, err = network.Call(ctx, a.n.Conduit("echo"), b.id, wrapperspb.Int64(1), num, num)
	require.Error(t, err)
}
