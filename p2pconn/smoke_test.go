package p2pconn_test

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
)

func TestSmoke(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			a, b := c.node(testConfig()), c.node(testConfig())
			ctx := testkit.Context(t, 10*time.Second)
			ca, err := a.m.Connect(ctx, b.id)
			require.NoError(t, err)
			require.NoError(t, ca.Send(ctx, []byte("hello")))
			cb, err := b.m.Accept(ctx)
			require.NoError(t, err)
			msg, err := cb.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "hello", string(msg))
			require.NoError(t, cb.Send(ctx, []byte("world")))
			msg, err = ca.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "world", string(msg))
			got, err := b.m.Connect(ctx, a.id)
			require.NoError(t, err)
			require.Same(t, cb, got)
			require.NoError(t, ca.Close())
			_, err = cb.Next(ctx)
			require.ErrorIs(t, err, io.EOF)
		})
	}
}
