package p2pconn_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/p2pconn"
)

func TestDefaultConfig(t *testing.T) {
	d := p2pconn.DefaultConfig()
	require.NoError(t, d.Validate())
	require.Equal(t, 10*time.Second, d.ConnectTimeout)
	require.Equal(t, 15*time.Second, d.KeepaliveInterval)
	require.Equal(t, 10*time.Second, d.KeepaliveTimeout)
	require.Equal(t, 1000, d.MaxConnections)
	require.Equal(t, 3, d.RetryAttempts)
	require.Equal(t, time.Second, d.RetryDelay)
	require.Equal(t, 4<<20, d.MaxMessageSize)
	require.Equal(t, 5*time.Second, d.CloseTimeout)

	// Zero means default, except RetryAttempts where it means no retry.
	z := p2pconn.Config{}.WithDefaults()
	require.Equal(t, 0, z.RetryAttempts)
	z.RetryAttempts = d.RetryAttempts
	require.Equal(t, d, z)

	// KeepaliveTimeout follows a short KeepaliveInterval.
	require.Equal(t, time.Second, p2pconn.Config{KeepaliveInterval: time.Second}.WithDefaults().KeepaliveTimeout)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string // named in the error
		cfg   p2pconn.Config
	}{
		{"ConnectTimeout", p2pconn.Config{ConnectTimeout: -1}},
		{"KeepaliveInterval", p2pconn.Config{KeepaliveInterval: -1}},
		{"KeepaliveTimeout", p2pconn.Config{KeepaliveTimeout: -1}},
		{"MaxConnections", p2pconn.Config{MaxConnections: -1}},
		{"RetryAttempts", p2pconn.Config{RetryAttempts: -1}},
		{"RetryDelay", p2pconn.Config{RetryDelay: -time.Second}},
		{"MaxRetryDelay", p2pconn.Config{MaxRetryDelay: -time.Second}},
		{"MaxMessageSize", p2pconn.Config{MaxMessageSize: -1}},
		{"CloseTimeout", p2pconn.Config{CloseTimeout: -1}},
		{"ReceiveBuffer", p2pconn.Config{ReceiveBuffer: -1}},
		{"MaxMessageSize", p2pconn.Config{MaxMessageSize: p2pconn.MaxMessageSizeLimit + 1}},
		{"MaxRetryDelay", p2pconn.Config{RetryDelay: time.Minute, MaxRetryDelay: time.Second}},
		{"HandshakeRate", p2pconn.Config{HandshakeRate: -1}},
		{"HandshakeRate", p2pconn.Config{HandshakeRate: math.NaN()}},
		{"MessageRate", p2pconn.Config{MessageRate: math.Inf(1)}},
		{"HandshakeBurst", p2pconn.Config{HandshakeRate: 1, HandshakeBurst: -1}},
		{"HandshakeBurst", p2pconn.Config{HandshakeBurst: 4}},
		{"MessageBurst", p2pconn.Config{MessageBurst: 4}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	require.NoError(t, p2pconn.Config{RetryDelay: time.Minute}.Validate(), "MaxRetryDelay defaults to at least RetryDelay")
}

// TestConfigRateDefaults: no rate limit by default; a rate without a burst
// gets the default burst.
func TestConfigRateDefaults(t *testing.T) {
	d := p2pconn.DefaultConfig()
	require.Zero(t, d.HandshakeRate)
	require.Zero(t, d.HandshakeBurst)
	require.Zero(t, d.MessageRate)
	require.Zero(t, d.MessageBurst)
	require.Equal(t, p2pconn.DefaultHandshakeBurst, p2pconn.Config{HandshakeRate: 0.5}.WithDefaults().HandshakeBurst)
	require.Equal(t, 200, p2pconn.Config{MessageRate: 200}.WithDefaults().MessageBurst, "one second's worth")
	require.Equal(t, 1, p2pconn.Config{MessageRate: 0.2}.WithDefaults().MessageBurst)
	require.NoError(t, p2pconn.Config{HandshakeRate: 1, HandshakeBurst: 3, MessageRate: 1e6}.Validate())
}
