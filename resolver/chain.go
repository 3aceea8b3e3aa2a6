package resolver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
)

// chain tries its members in order.
type chain []AddressResolver

var (
	_ AddressResolver = chain(nil)
	_ Invalidator     = chain(nil)
	_ Fallback        = chain(nil)
)

// NewChain returns a resolver that asks rs in order and returns the first
// answer that names the right peer and has at least one address; a member's
// answer that does not is counted as that member's error. Nil members are
// skipped.
//
// If every member fails, the error is an *Error whose Err is a *ChainError
// holding each member's error in order. It matches ErrNotFound (errors.Is)
// only when every member said not found, so a chain never reports "not
// found" while a member that might know the answer failed for another
// reason: in a mixed case (say the static table said not found and the DHT's
// network failed) the error matches the other members' errors, and not
// ErrNotFound, so callers treat it as worth a retry. A chain of no members
// fails with ErrNotFound.
//
// When ctx ends the chain stops, without asking the members left, and
// returns an error wrapping ctx.Err() (and not ErrNotFound: the answer is
// incomplete); the errors of the members asked so far are in its text.
//
// The chain implements Invalidator by passing Invalidate to every member that
// implements it, and Fallback: when the addresses of an answer did not work,
// ResolveExcept asks the members in order again for an answer with other
// addresses (a member implementing Fallback through its ResolveExcept), so a
// later member gets its turn when an earlier one, such as a peerstore that
// still holds a moved peer's old address, answered with stale addresses.
func NewChain(rs ...AddressResolver) AddressResolver {
	c := make(chain, 0, len(rs))
	for _, r := range rs {
		if r != nil {
			c = append(c, r)
		}
	}
	return c
}

// Resolve implements AddressResolver.
func (c chain) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	return c.resolve(ctx, id, nil)
}

// ResolveExcept implements Fallback: it returns the first member's answer
// that has addresses not in tried, keeping only those.
func (c chain) ResolveExcept(ctx context.Context, id identity.Identifier, tried []ma.Multiaddr) (peer.AddrInfo, error) {
	return c.resolve(ctx, id, tried)
}

// resolve asks the members in order for an answer with addresses not in
// tried (any address when tried is empty).
func (c chain) resolve(ctx context.Context, id identity.Identifier, tried []ma.Multiaddr) (peer.AddrInfo, error) {
	if len(c) == 0 {
		return peer.AddrInfo{}, newError(id, "chain", fmt.Errorf("no member: %w", ErrNotFound))
	}
	errs := make([]error, 0, len(c))
	for i, r := range c {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return peer.AddrInfo{}, stoppedError(id, i, len(c), ctxErr, errs)
		}
		info, err := ask(ctx, r, id, tried)
		if err == nil {
			// The member answered: a wrong answer counts as its error.
			err = answerProblem(id, info)
			if err == nil && len(tried) > 0 {
				if info.Addrs = untried(info.Addrs, tried); len(info.Addrs) == 0 {
					err = errAllTried
				}
			}
			if err != nil {
				err = fmt.Errorf("member %d: %w", i+1, err)
			}
		}
		if err == nil {
			return info, nil
		}
		errs = append(errs, err)
	}
	// A member that failed because ctx ended did not say "not found".
	if ctxErr := ctx.Err(); ctxErr != nil {
		return peer.AddrInfo{}, stoppedError(id, len(c), len(c), ctxErr, errs)
	}
	return peer.AddrInfo{}, newError(id, "chain", &ChainError{Errs: errs})
}

// ask asks r for an answer for id with addresses not in tried: through
// ResolveExcept if r is a Fallback and tried is not empty, else Resolve.
func ask(ctx context.Context, r AddressResolver, id identity.Identifier, tried []ma.Multiaddr) (peer.AddrInfo, error) {
	if fb, ok := r.(Fallback); ok && len(tried) > 0 {
		return fb.ResolveExcept(ctx, id, tried)
	}
	return r.Resolve(ctx, id)
}

// Invalidate implements Invalidator.
func (c chain) Invalidate(id identity.Identifier) {
	for _, r := range c {
		if inv, ok := r.(Invalidator); ok {
			inv.Invalidate(id)
		}
	}
}

func stoppedError(id identity.Identifier, asked, total int, ctxErr error, errs []error) error {
	if len(errs) == 0 {
		return newError(id, "chain", ctxErr)
	}
	return newError(id, "chain", fmt.Errorf("stopped after %d of %d resolvers: %w (so far: %s)",
		asked, total, ctxErr, &ChainError{Errs: errs}))
}

// ChainError is why a chain (NewChain) whose every member failed could not
// resolve an Identifier; the chain returns it as the Err of an *Error.
type ChainError struct {
	// Errs holds each member's error, in chain order.
	Errs []error
}

// Error returns the members' errors on one line, separated by "; ". A
// member's *Error is shortened to "<resolver>: <why>", since the chain's
// *Error already names the Identifier.
func (e *ChainError) Error() string {
	if len(e.Errs) == 0 {
		return "no member answered"
	}
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
		if re, ok := err.(*Error); ok {
			parts[i] = re.Resolver + ": " + re.Err.Error()
		}
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the members' errors for errors.Is and errors.As: all of them
// if every member said not found, else only those that did not, so that the
// error matches ErrNotFound only when every member said not found.
func (e *ChainError) Unwrap() []error {
	var other []error
	for _, err := range e.Errs {
		if !errors.Is(err, ErrNotFound) {
			other = append(other, err)
		}
	}
	if len(other) == 0 {
		return e.Errs
	}
	return other
}
