package resolver

import (
	"context"
	"fmt"
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
// Duplicates are ignored. Adding no address is a no-op.
func (s *Static) Add(id identity.Identifier, addrs ...ma.Multiaddr) {
	if len(addrs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.addrs[id]
	for _, a := range addrs {
		if a == nil || containsAddr(cur, a) {
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

// Resolve implements AddressResolver.
func (s *Static) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	if err := ctx.Err(); err != nil {
		return peer.AddrInfo{}, fmt.Errorf("resolve %s: static: %w", id.Short(), err)
	}
	s.mu.RLock()
	addrs := s.addrs[id]
	s.mu.RUnlock()
	if len(addrs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("resolve %s: static: %w", id.Short(), ErrNotFound)
	}
	return peer.AddrInfo{ID: id.PeerID(), Addrs: append([]ma.Multiaddr(nil), addrs...)}, nil
}

func containsAddr(list []ma.Multiaddr, a ma.Multiaddr) bool {
	for _, b := range list {
		if b.Equal(a) {
			return true
		}
	}
	return false
}
