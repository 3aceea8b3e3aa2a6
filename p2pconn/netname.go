package p2pconn

import (
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skipwire/skipwire/internal/netname"
)

// ProtocolFor returns the protocol ID of the skipwire stream in the network
// named name (Config.NetworkName): ProtocolID for "", else
// /skipgraph/<name>/conn/1.0.0. Nodes of different networks, even on one
// libp2p connection, fail to negotiate a stream to each other.
func ProtocolFor(name string) protocol.ID {
	if name == "" {
		return ProtocolID
	}
	return protocol.ID("/skipgraph/" + name + "/conn/1.0.0")
}

// isSkipwireProtocol reports whether p is the skipwire stream of any
// network, so that a host shared by managers of several networks never
// loses one's stream to another's duplicate cleanup.
func isSkipwireProtocol(p protocol.ID) bool {
	s := string(p)
	return p == ProtocolID || strings.HasPrefix(s, "/skipgraph/") && strings.HasSuffix(s, "/conn/1.0.0")
}

// Protocol returns the protocol ID m serves and opens its streams on:
// ProtocolFor(Config.NetworkName).
func (m *Manager) Protocol() protocol.ID { return m.proto }

// validNetworkName reports why name cannot be a Config.NetworkName.
func validNetworkName(name string) error {
	if err := netname.Check(name); err != nil {
		return fmt.Errorf("NetworkName %w", err)
	}
	return nil
}
