// Package netname checks the names of skipwire networks. A network name
// keeps overlays that share hosts or a DHT apart: p2pconn turns it into the
// protocol ID of the skipwire stream (p2pconn.ProtocolFor) and resolver into
// the protocol prefix of the Kademlia DHT (resolver.DHTProtocolPrefixFor), so
// both check names the same way, here.
package netname

import "fmt"

// MaxLen is the longest network name, in bytes.
const MaxLen = 64

// Check returns nil if name can name a network, else an error that starts
// with the quoted name and says what is wrong, for the caller to prefix with
// the field it came from. A name is up to MaxLen ASCII letters, digits, '.',
// '_' or '-'; "" names the default network.
func Check(name string) error {
	if len(name) > MaxLen {
		return fmt.Errorf("%.16q... is longer than %d bytes", name, MaxLen)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%q: %q is not a letter, digit, '.', '_' or '-'", name, r)
		}
	}
	return nil
}
