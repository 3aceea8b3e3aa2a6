package testkit

import (
	"context"
	"testing"
	"time"
)

// Context returns a context that ends after d, or when the test ends,
// whichever comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
