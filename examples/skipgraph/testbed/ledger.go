package testbed

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
)

// Ledger records the skip-graph messages of every node (it is each node's
// sg.Observer): what was sent, to whom and when, and what arrived. A message
// is lost if its sender committed it (a Send, Forward or Reply returned
// nil, or a Request got its reply), both ends still run, and it never
// arrived, unless it is an answer to a request its requester had given up
// on (the network drops those, and counts them): that one is late, not
// lost. It is safe for concurrent use.
type Ledger struct {
	mu           sync.Mutex
	sentMsgs     map[msgKey]sentMsg
	receivedMsgs map[msgKey]arrival
	delivered    int // messages compacted away: sent and received
	byKind       map[string]int
	failed       []failedRequest
	gaveUp       map[msgKey]bool // requests and searches without an answer, by requester and ID
}

type msgKey struct {
	from identity.Identifier
	id   uint64
}

type sentMsg struct {
	to   identity.Identifier
	re   uint64
	kind string
	at   time.Time
}

type arrival struct {
	by   identity.Identifier
	kind string
	at   time.Time
}

type failedRequest struct {
	key msgKey
	to  identity.Identifier
	at  time.Time
}

// compactAt is the size of the sent map at which delivered messages are
// folded into a count.
const compactAt = 200_000

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{sentMsgs: make(map[msgKey]sentMsg), receivedMsgs: make(map[msgKey]arrival), byKind: make(map[string]int), gaveUp: make(map[msgKey]bool)}
}

// Observer returns the sg.Observer of node self.
func (l *Ledger) Observer(self identity.Identifier) sg.Observer { return observer{l: l, self: self} }

type observer struct {
	l    *Ledger
	self identity.Identifier
}

func (o observer) Sent(to identity.Identifier, id, re uint64, kind string) {
	o.l.sent(o.self, to, id, re, kind, time.Now())
}

func (o observer) Received(from identity.Identifier, id uint64, kind string) {
	o.l.received(o.self, from, id, kind, time.Now())
}

func (o observer) RequestFailed(to identity.Identifier, id uint64, _ string, _ error) {
	o.l.requestFailed(o.self, to, id, time.Now())
}

// sent records message id of node from to node to, committed at the time
// at; re is the request it answers, if any.
func (l *Ledger) sent(from, to identity.Identifier, id, re uint64, kind string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sentMsgs[msgKey{from, id}] = sentMsg{to: to, re: re, kind: kind, at: at}
	l.byKind[kind]++
	if len(l.sentMsgs) >= compactAt {
		l.compactLocked()
	}
}

// received records that message id of node from, of that kind, arrived
// at node by, at the time at.
func (l *Ledger) received(by, from identity.Identifier, id uint64, kind string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.receivedMsgs[msgKey{from, id}] = arrival{by: by, kind: kind, at: at}
}

// requestFailed records that request id of node from to node to got no
// answer (to == from: a search from that node).
func (l *Ledger) requestFailed(from, to identity.Identifier, id uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gaveUp[msgKey{from, id}] = true
	if to != from {
		l.failed = append(l.failed, failedRequest{key: msgKey{from, id}, to: to, at: at})
	}
}

// compactLocked folds the messages that arrived into a count.
func (l *Ledger) compactLocked() {
	for k := range l.sentMsgs {
		if _, ok := l.receivedMsgs[k]; ok {
			delete(l.sentMsgs, k)
			delete(l.receivedMsgs, k)
			l.delivered++
		}
	}
}

// Totals sums a ledger.
type Totals struct {
	Sent int // messages committed by their sender
	// ByKind counts the messages sent by kind (see sg.Observer).
	ByKind map[string]int
	// Lost: committed before the cut-off, between two nodes that still run,
	// never arrived.
	Lost int
	// Late: answers that arrived after their requester had given up
	// (dropped by its network layer, which counts them).
	Late int
	// Unanswered: Requests between two nodes that still run that got no
	// reply (counted once, whatever the reason); NeverArrived of them were
	// not seen by the receiver either (lost, or never committed: a Request's
	// error does not say which).
	Unanswered, NeverArrived int
	// Examples describes up to 5 lost messages.
	Examples []string
}

func (t Totals) String() string {
	return fmt.Sprintf("sent %d, lost %d, answers too late %d, requests unanswered %d (%d not received)", t.Sent, t.Lost, t.Late, t.Unanswered, t.NeverArrived)
}

// Totals counts the ledger: alive says which nodes still run; messages
// sent after before are not judged (they may be on their way).
func (l *Ledger) Totals(alive func(identity.Identifier) bool, before time.Time) Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := Totals{Sent: len(l.sentMsgs) + l.delivered, ByKind: maps.Clone(l.byKind)}
	for k, s := range l.sentMsgs {
		if _, ok := l.receivedMsgs[k]; ok || s.at.After(before) || !alive(k.from) || !alive(s.to) {
			continue
		}
		if s.re != 0 && l.gaveUp[msgKey{s.to, s.re}] {
			t.Late++
			continue
		}
		t.Lost++
		if len(t.Examples) < 5 {
			t.Examples = append(t.Examples, fmt.Sprintf("%s %d from %s to %s at %s", s.kind, k.id, k.from.Short(), s.to.Short(), s.at.Format("15:04:05.000")))
		}
	}
	for _, f := range l.failed {
		if f.at.After(before) || !alive(f.key.from) || !alive(f.to) {
			continue
		}
		t.Unanswered++
		if _, ok := l.receivedMsgs[f.key]; !ok {
			t.NeverArrived++
		}
	}
	return t
}

// Traffic counts the skip-graph messages of the given kinds (every kind if
// none is given; see sg.Observer) that node id took part in after since:
// committed to it, received by it, and committed by it. Messages compacted
// away (more than 200,000 sent) are not counted.
func (l *Ledger) Traffic(id identity.Identifier, since time.Time, kinds ...string) (to, by, from int) {
	counts := func(kind string) bool { return len(kinds) == 0 || slices.Contains(kinds, kind) }
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, s := range l.sentMsgs {
		if s.at.Before(since) || !counts(s.kind) {
			continue
		}
		if s.to == id {
			to++
		}
		if k.from == id {
			from++
		}
	}
	for _, a := range l.receivedMsgs {
		if a.by == id && !a.at.Before(since) && counts(a.kind) {
			by++
		}
	}
	return to, by, from
}
