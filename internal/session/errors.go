package session

import "errors"

// ErrAckAhead is returned, wrapped, when the remote acknowledges or announces
// more messages than were sent: a protocol violation.
var ErrAckAhead = errors.New("session: count ahead of the messages sent")

// ErrCountBehind is returned, wrapped, when the remote announces, at the
// start of a new stream, fewer messages than it had already acknowledged: a
// protocol violation (a receiver's count never goes back within a session).
var ErrCountBehind = errors.New("session: count behind the messages acknowledged")
