package resolver

import (
	"context"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
)

// Static resolves Identifiers from a table the application maintains. The zero
// value is not usable; call NewStatic. Its methods are safe for concurrent use.
type Static struct {
	mu    sync.RWMutex
	addrs map[identity.Identifier][]ma.Multiaddr
}

var _ AddressResolver = (*Static)(nil)

// NewStatic returns an empty Static resolver.
func NewStatic() *Static {
	return &Static{addrs: make(map[identity.Identifier][]ma.Multiaddr)}
}

// Add records addrs for id, after any addresses already known for it.
// Duplicates and empty addresses are ignored; adding no address is a no-op.
// Addresses are stored as given: unlike Load, Add does not check or strip a
// trailing /p2p component.
func (s *Static) Add(id identity.Identifier, addrs ...ma.Multiaddr) {
	if len(addrs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(id, addrs)
}

func (s *Static) addLocked(id identity.Identifier, addrs []ma.Multiaddr) {
	cur := s.addrs[id]
	for _, a := range addrs {
		if len(a) == 0 || ma.Contains(cur, a) {
			continue
		}
		cur = append(cur, a)
	}
	if len(cur) > 0 {
		s.addrs[id] = cur
	}
}

// Remove forgets every address of id.
func (s *Static) Remove(id identity.Identifier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.addrs, id)
}

// Addrs returns a copy of the addresses known for id, in the order they were
// added, or nil if there are none.
func (s *Static) Addrs(id identity.Identifier) []ma.Multiaddr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.addrs[id])
}

// Len returns the number of Identifiers with at least one address.
func (s *Static) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.addrs)
}

// Resolve implements AddressResolver. It returns a copy of the table's
// addresses for id, or an error wrapping ErrNotFound if there are none.
func (s *Static) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, newError(id, "static", err)
	}
	addrs := s.Addrs(id)
	if len(addrs) == 0 {
		return peer.AddrInfo{}, newError(id, "static", ErrNotFound)
	}
	return peer.AddrInfo{ID: id.PeerID(), Addrs: addrs}, nil
}
