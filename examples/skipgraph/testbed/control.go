package testbed

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// The control protocol between the testbed and a node in a child process
// (ChildRole), over the child's standard input and output, one JSON object
// a line.
//
// The testbed starts the child with one argument, a childSpec in JSON. The
// child builds its node as the testbed builds its own (a host, a DHT joined
// through the introducer, a manager, a Network, an sg.Node that has not
// joined), then prints "READY <Identifier> <listen address>..."
// (testkit.Ready). From then on:
//
//   - the testbed writes requests to the child's stdin:
//
//     {"id":7,"op":"search","target":123456,"deadline":"2026-01-02T15:04:05.123Z"}
//
//     op is "join" (with "introducer": an Identifier), "search" (with
//     "target"), "leave", "table" or "conns"; the deadline, if any, is the
//     testbed's ctx's. The child runs requests concurrently.
//
//   - the child answers each request, in any order, on its stdout:
//
//     {"id":7,"result":{"Node":{"ID":"…","Key":123400,"MV":…},"Hops":3,"Latency":2100000}}
//     {"id":8,"err":"search 5: skipgraph: no route"}
//
//     and writes events, which have no id: "table" (its routing table,
//     whenever it changed), "sent", "received" and "failed" (the calls of
//     its sg.Observer, for the testbed's Ledger) and "resolved" (one address
//     resolution, for Resolutions):
//
//     {"ev":"sent","from":"…","to":"…","msg":42,"re":0,"kind":"search","at":"2026-01-02T15:04:05.123456789Z"}
//
//   - closing the child's stdin stops it: its node stops without a word to
//     the skip graph, its Network, manager (whose peers see it close), DHT
//     and host close, and it exits 0. SIGKILL crashes it.

// childSpec is what a child needs to build its node.
type childSpec struct {
	Listen     string         `json:"listen"`
	Conn       p2pconn.Config `json:"conn"` // without Metrics
	Node       nodeSpec       `json:"node"`
	Introducer peer.AddrInfo  `json:"introducer"`
	DHTRefresh bool           `json:"dhtRefresh"`
}

// nodeSpec is the part of an sg.Config that crosses to a child: the key,
// the membership vector, the timings and the limits. The Connect options
// and the Observer do not: they are functions and interfaces (the child
// sets its own Observer). A field added to sg.Config is added here too.
type nodeSpec struct {
	Key               sg.Key              `json:"key"`
	MembershipVector  sg.MembershipVector `json:"mv"`
	StabilizeInterval time.Duration       `json:"stabilizeInterval,omitempty"`
	FullCheckEvery    int                 `json:"fullCheckEvery,omitempty"`
	RequestTimeout    time.Duration       `json:"requestTimeout,omitempty"`
	SearchTimeout     time.Duration       `json:"searchTimeout,omitempty"`
	HopTimeout        time.Duration       `json:"hopTimeout,omitempty"`
	MaxHops           int                 `json:"maxHops,omitempty"`
	Backups           int                 `json:"backups,omitempty"`
	MaxSearchWorkers  int                 `json:"maxSearchWorkers,omitempty"`
	GoneFor           time.Duration       `json:"goneFor,omitempty"`
}

func specOf(c sg.Config) nodeSpec {
	return nodeSpec{
		Key: c.Key, MembershipVector: c.MembershipVector,
		StabilizeInterval: c.StabilizeInterval, FullCheckEvery: c.FullCheckEvery,
		RequestTimeout: c.RequestTimeout, SearchTimeout: c.SearchTimeout, HopTimeout: c.HopTimeout,
		MaxHops: c.MaxHops, Backups: c.Backups, MaxSearchWorkers: c.MaxSearchWorkers, GoneFor: c.GoneFor,
	}
}

func (s nodeSpec) config() sg.Config {
	return sg.Config{
		Key: s.Key, MembershipVector: s.MembershipVector,
		StabilizeInterval: s.StabilizeInterval, FullCheckEvery: s.FullCheckEvery,
		RequestTimeout: s.RequestTimeout, SearchTimeout: s.SearchTimeout, HopTimeout: s.HopTimeout,
		MaxHops: s.MaxHops, Backups: s.Backups, MaxSearchWorkers: s.MaxSearchWorkers, GoneFor: s.GoneFor,
	}
}

// Operations of the control protocol.
const (
	opJoin   = "join"
	opSearch = "search"
	opLeave  = "leave"
	opTable  = "table"
	opConns  = "conns"
)

// Events of the control protocol.
const (
	evTable    = "table"
	evSent     = "sent"
	evReceived = "received"
	evFailed   = "failed"
	evResolved = "resolved"
)

// request is a line the testbed writes to a child.
type request struct {
	ID         uint64              `json:"id"`
	Op         string              `json:"op"`
	Deadline   time.Time           `json:"deadline,omitzero"`
	Target     sg.Key              `json:"target,omitempty"`
	Introducer identity.Identifier `json:"introducer,omitzero"`
}

// output is a line a child writes: the answer to a request (ID set) or an
// event (Ev set).
type output struct {
	// An answer.
	ID     uint64     `json:"id,omitempty"`
	Err    string     `json:"err,omitempty"`
	Result *sg.Result `json:"result,omitempty"` // search
	Conns  *connView  `json:"conns,omitempty"`  // conns

	// Table answers "table", and is the "table" event's.
	Table *sg.Table `json:"table,omitempty"`

	// An event.
	Ev string `json:"ev,omitempty"`
	// sent, received and failed: the message from, to, its ID, what it
	// answers, its kind and when.
	From identity.Identifier `json:"from,omitzero"`
	To   identity.Identifier `json:"to,omitzero"`
	Msg  uint64              `json:"msg,omitempty"`
	Re   uint64              `json:"re,omitempty"`
	Kind string              `json:"kind,omitempty"`
	At   time.Time           `json:"at,omitzero"`
	// resolved: where ("peerstore" or "dht"), how long it took, whether it
	// found the peer.
	How  string        `json:"how,omitempty"`
	Took time.Duration `json:"took,omitempty"`
	OK   bool          `json:"ok,omitempty"`
}
