package network

import (
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// NewWithoutCapabilities starts a Network whose OPEN announces no
// capabilities, as a Network of a version that predates them does.
func NewWithoutCapabilities(m p2pconn.ConnectionManager, cfg Config) (*Network, error) {
	return newNetwork(m, cfg, 0)
}

// WindowOf returns the window n grants peer on ch: Config.Window until the
// peer sent DATA on ch, more once it grew; 0 without a connection to peer.
func (n *Network) WindowOf(peer identity.Identifier, ch Channel) int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, l := range n.links {
		if l.peer != peer {
			continue
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if f := l.st.in[string(ch)]; f != nil {
			return f.window
		}
		return l.st.window
	}
	return 0
}

// Granted returns the room n's channel ch granted beyond Config.Window, over
// all senders.
func (n *Network) Granted(ch Channel) int {
	return int(n.registrationOf(ch).granted.Load())
}
