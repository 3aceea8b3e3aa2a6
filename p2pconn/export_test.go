package p2pconn

import (
	"context"

	"github.com/skipwire/skipwire/identity"
)

// SetTestHookBeforeConfirm sets a function run when an opener has read ACCEPT
// and is about to send CONFIRM, and returns a function that removes it.
func SetTestHookBeforeConfirm(f func(attempt context.Context)) (reset func()) {
	testHookBeforeConfirm = f
	return func() { testHookBeforeConfirm = nil }
}

// SpeakVersion1 makes m send and read the version-1 handshake only, as a
// node of the first protocol version does. Call it before m connects.
func SpeakVersion1(m *Manager) { m.version1.Store(true) }

// SetTestHookSubscribed sets a function run by Subscribe once the
// subscription is registered, before it returns, and returns a function that
// removes it.
func SetTestHookSubscribed(f func()) (reset func()) {
	testHookSubscribed = f
	return func() { testHookSubscribed = nil }
}

// DialWaiters returns how many Connects wait for the dial to id in progress.
func (m *Manager) DialWaiters(id identity.Identifier) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if st := m.peers[id]; st != nil && st.dial != nil {
		return st.dial.waiters
	}
	return 0
}

// ResendHeld returns the bytes c's resend buffer holds (session.Out.Held),
// or -1 if c does not acknowledge.
func ResendHeld(c Connection) int {
	cc := c.(*conn)
	if cc.ack == nil {
		return -1
	}
	cc.ack.mu.Lock()
	defer cc.ack.mu.Unlock()
	return cc.ack.out.Held()
}
