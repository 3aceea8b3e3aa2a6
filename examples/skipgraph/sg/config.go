package sg

import (
	"errors"
	"fmt"
	"time"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Config says how a node takes part in the skip graph. Zero fields take
// their defaults, except Key, which is the node's key as given.
type Config struct {
	// Key is the node's key; unique in the skip graph.
	Key Key

	// MembershipVector is the node's random bits. Zero: drawn at random
	// (RandomMembershipVector).
	MembershipVector MembershipVector

	// StabilizeInterval is how often a node checks, beyond the events that
	// prompt a repair at once, that its level-0 neighbours and one other
	// level point back at it, and that its neighbours are still connected.
	// Default 1 s; each check costs up to four small Requests.
	StabilizeInterval time.Duration

	// FullCheckEvery makes every n-th check re-derive every level of the
	// table from the one below (a scan along each list). Default 10.
	FullCheckEvery int

	// RequestTimeout bounds each maintenance Request (reading a neighbour's
	// table, linking, leaving), its connection's retries included.
	// Default 3 s.
	RequestTimeout time.Duration

	// SearchTimeout bounds a search, from the first hop to the answer.
	// Default 5 s.
	SearchTimeout time.Duration

	// HopTimeout bounds the Forward of a search to the next node, connection
	// included (a neighbour's connection is normally open). Default 2 s.
	HopTimeout time.Duration

	// MaxHops ends a search that has not found its answer after that many
	// hops (routing tables in flux). Default 128.
	MaxHops int

	// Backups is how many nodes nearest in key order a node remembers on
	// each side, beyond its level-0 neighbours: routing skips to them when
	// a neighbour fails, and repair looks there first. Default 4.
	Backups int

	// MaxSearchWorkers bounds the searches a node routes at once; beyond,
	// searches wait in the network layer's queues (push back). Default 64.
	MaxSearchWorkers int

	// GoneFor is how long a node remembers that a peer failed or left, so
	// that stale tables elsewhere do not bring it back. A message from the
	// peer that proves it alive (a link) clears it sooner. Default 1 min.
	GoneFor time.Duration

	// RoutingConnect are the options of the Connects a search makes to its
	// next hop, and repair to the candidates it tries in turn. Default:
	// p2pconn.WithRetryAttempts(0): a dead hop costs one failed dial (or
	// nothing, within the manager's UnreachableFor), and the search takes
	// the next best route. A hop that fails is dropped from the table at
	// once, and checked again in the background with MaintenanceConnect.
	RoutingConnect []p2pconn.ConnectOption

	// MaintenanceConnect are the options of the Connects that maintenance
	// makes: reading a neighbour's table, linking, keeping neighbours
	// connected, and checking whether a dropped peer can be reached after
	// all. Default: p2pconn.WithRetryAttempts(2) and
	// p2pconn.IgnoreRecentFailure(): three dials before giving up, even if
	// a search's fail-fast dial failed just before (the manager would
	// otherwise wait out its UnreachableFor).
	MaintenanceConnect []p2pconn.ConnectOption

	// Observer, if set, is told of every message the node sends to or
	// receives from another node, for accounting. Its methods must not
	// block.
	Observer Observer
}

// Observer is told of the skip graph's messages between nodes. Each message
// has an ID unique among its sender's messages, so a ledger matches what a
// node sent with what another received by (sender, ID). kind names the
// message: "search" (a hop), "found" (an answer), "find", "getTable",
// "table", "link", "linkReply", "leave" or "leaveAck".
type Observer interface {
	// Sent: a message to node to was committed to the connection (a Send,
	// Forward or Reply returned nil, or a Request got its reply). re is,
	// for an answer, the ID its requester gave the request (for a search's
	// answer, the search's ID at its origin), else 0.
	Sent(to identity.Identifier, id, re uint64, kind string)
	// Received: a message from node from reached the skip-graph code (a
	// processor, or a Request's reply).
	Received(from identity.Identifier, id uint64, kind string)
	// RequestFailed: a Request with that ID to node to, or a search this
	// node started (to is then the node itself), got no answer: err says
	// why. An answer that comes later is dropped: it was not lost. Whether
	// the request itself arrived is the receiver's to say (Received).
	RequestFailed(to identity.Identifier, id uint64, kind string, err error)
}

// Defaults of Config.
const (
	DefaultStabilizeInterval = time.Second
	DefaultFullCheckEvery    = 10
	DefaultRequestTimeout    = 3 * time.Second
	DefaultSearchTimeout     = 5 * time.Second
	DefaultHopTimeout        = 2 * time.Second
	DefaultMaxHops           = 128
	DefaultBackups           = 4
	DefaultMaxSearchWorkers  = 64
	DefaultGoneFor           = time.Minute
)

// ErrInvalidConfig is returned, wrapped, by New for a Config that cannot
// work.
var ErrInvalidConfig = errors.New("skipgraph: invalid config")

// Validate reports whether c can be used.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"StabilizeInterval", c.StabilizeInterval},
		{"RequestTimeout", c.RequestTimeout},
		{"SearchTimeout", c.SearchTimeout},
		{"HopTimeout", c.HopTimeout},
		{"GoneFor", c.GoneFor},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s is negative (%s)", ErrInvalidConfig, d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"FullCheckEvery", c.FullCheckEvery},
		{"MaxHops", c.MaxHops},
		{"Backups", c.Backups},
		{"MaxSearchWorkers", c.MaxSearchWorkers},
	} {
		if n.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrInvalidConfig, n.name, n.v)
		}
	}
	if c.Backups > 255 {
		return fmt.Errorf("%w: Backups %d exceeds 255", ErrInvalidConfig, c.Backups)
	}
	if c.MaxHops > 65535 {
		return fmt.Errorf("%w: MaxHops %d exceeds 65535", ErrInvalidConfig, c.MaxHops)
	}
	return nil
}

func (c Config) withDefaults() Config {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.StabilizeInterval, DefaultStabilizeInterval)
	set(&c.RequestTimeout, DefaultRequestTimeout)
	set(&c.SearchTimeout, DefaultSearchTimeout)
	set(&c.HopTimeout, DefaultHopTimeout)
	set(&c.GoneFor, DefaultGoneFor)
	setInt(&c.FullCheckEvery, DefaultFullCheckEvery)
	setInt(&c.MaxHops, DefaultMaxHops)
	setInt(&c.Backups, DefaultBackups)
	setInt(&c.MaxSearchWorkers, DefaultMaxSearchWorkers)
	if c.MembershipVector == 0 {
		c.MembershipVector = RandomMembershipVector()
	}
	if c.RoutingConnect == nil {
		c.RoutingConnect = []p2pconn.ConnectOption{p2pconn.WithRetryAttempts(0)}
	}
	if c.MaintenanceConnect == nil {
		c.MaintenanceConnect = []p2pconn.ConnectOption{p2pconn.WithRetryAttempts(2), p2pconn.IgnoreRecentFailure()}
	}
	return c
}
