package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/identity"
)

// chain tries its members in order.
type chain []AddressResolver

var (
	_ AddressResolver = chain(nil)
	_ Invalidator     = chain(nil)
)

// NewChain returns a resolver that asks rs in order and returns the first
// answer that names the right peer and has at least one address; a member's
// answer that does not is counted as that member's error. Nil members are
// skipped.
//
// If every member fails, the error is a *ChainError holding each member's
// error in order. It matches ErrNotFound (errors.Is) only when every member
// said not found, so a chain never reports "not found" while a member that
// might know the answer failed for another reason: in a mixed case (say the
// static table said not found and the DHT's network failed) the error
// matches the other members' errors, and not ErrNotFound, so callers treat
// it as worth a retry. A chain of no members fails with ErrNotFound.
//
// When ctx ends the chain stops, without asking the members left, and
// returns an error wrapping ctx.Err() (and not ErrNotFound: the answer is
// incomplete); the errors of the members asked so far are in its text.
//
// The chain implements Invalidator by passing Invalidate to every member that
// implements it.
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
	if len(c) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("resolve %s: empty chain: %w", id.Short(), ErrNotFound)
	}
	errs := make([]error, 0, len(c))
	for i, r := range c {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return peer.AddrInfo{}, stoppedError(id, i, len(c), ctxErr, errs)
		}
		info, err := r.Resolve(ctx, id)
		if err == nil {
			err = checkAnswer(id, info, "chain")
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
	return peer.AddrInfo{}, &ChainError{Errs: errs}
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
		return fmt.Errorf("resolve %s: chain: %w", id.Short(), ctxErr)
	}
	return fmt.Errorf("resolve %s: chain: stopped after %d of %d resolvers: %w (so far: %v)",
		id.Short(), asked, total, ctxErr, errors.Join(errs...))
}

// ChainError is the error of a chain (NewChain) whose every member failed.
type ChainError struct {
	// Errs holds each member's error, in chain order.
	Errs []error
}

// Error returns the members' errors, one per line.
func (e *ChainError) Error() string {
	if err := errors.Join(e.Errs...); err != nil {
		return err.Error()
	}
	return "resolver: chain: no member answered"
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
