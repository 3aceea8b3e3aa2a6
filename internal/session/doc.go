// Package session keeps the delivery state of one skipwire connection, one
// half per direction, so that messages survive the loss of a stream: an [Out]
// for the messages this side sends, an [In] for those it receives. Both are
// pure state machines: no goroutines, no I/O, no locks and no clock reads (the
// caller passes the time in). p2pconn feeds them events and acts on their
// decisions; it guards each with its own lock.
//
// # Numbering
//
// The messages of each direction are numbered 1, 2, 3... in the order the
// sender commits them. The numbers never travel with the messages: the
// receiver counts what it receives, and a stream carries the messages in
// order, so the k-th message a receiver has received is message k. A message
// is acknowledged once it is in the receiver's queue; an acknowledgement is
// cumulative: "I have messages 1..n", sent as the count n.
//
// # State and invariants
//
// An Out holds three numbers: acked (the highest count the remote
// acknowledged), sent (the number of messages committed) and, implicitly,
// the payloads of messages acked+1..sent, which it keeps until they are
// acknowledged. An In holds the number of messages received and the count it
// last sent back. At every moment
//
//	out.Acked() <= in.Count() <= out.Sent()
//
// for the two halves of one direction (the remote's In and the local Out, or
// the other way round): nothing is acknowledged before it arrives, and
// nothing arrives that was not committed. A count from the remote that breaks
// this (an ack above Sent, a resumption count below Acked) is a protocol
// violation: [ErrAckAhead], [ErrCountBehind].
//
// Each pending message costs its length plus [Overhead] bytes against the
// sender's limit, and while the caller commits only when [Out.Room] allows,
//
//	Out.PendingBytes() + Overhead*Out.PendingCount() <= limit
//
// unless a single message larger than the limit is pending, alone. The
// memory an Out holds is about its limit plus a few chunks of storage.
//
// # How p2pconn drives it
//
// Sending: a Send waits (up to its ctx) until [Out.Room] allows its message,
// then [Out.Add] commits it and the frame is written. An ACK control frame
// from the remote goes to [Out.Ack], which frees room and wakes the waiting
// Sends; an error there is a protocol violation that ends the connection.
//
// Receiving: each message that enters the queue goes to [In.Received]; when
// it returns true, or once the time [In.Deadline] returned has come (one
// timer, checked with [In.Due]), [In.Take] gives the count to write in an ACK
// frame. Reading a batch of frames and taking once after it keeps to one ACK
// frame per batch.
//
// Resuming: when a stream is lost, both halves stay. The handshake of the
// new stream carries, from each side, [In.Announce]: how many messages it has
// received, which also serves as an acknowledgement. Each side checks the
// remote's count with [Out.CheckCount] and passes it to [Out.Resend], writes
// the messages it yields first, in order, and then goes on with new ones; the
// receiver goes on counting, so the first message on the new stream is
// message in.Count()+1. Nothing is delivered twice, and nothing is skipped.
//
// Ending: when a session ends for good (the resumption window passed, or the
// remote was lost for good), [Out.Pending] is exactly the messages never
// acknowledged, for the error the application gets.
package session
