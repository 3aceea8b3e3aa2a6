package p2pconn

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// maxNetworkName is the longest Config.NetworkName.
const maxNetworkName = 64

// ProtocolFor returns the protocol ID of the skipwire stream in the network
// named name (Config.NetworkName): ProtocolID for "", else
// /skipgraph/<name>/conn/1.0.0.
func ProtocolFor(name string) protocol.ID {
	if name == "" {
		return ProtocolID
	}
	return protocol.ID("/skipgraph/" + name + "/conn/1.0.0")
}

// validNetworkName reports why name cannot be a Config.NetworkName.
func validNetworkName(name string) error {
	if len(name) > maxNetworkName {
		return fmt.Errorf("NetworkName %.16q... is longer than %d bytes", name, maxNetworkName)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("NetworkName %q: %q is not a letter, digit, '.', '_' or '-'", name, r)
		}
	}
	return nil
}
