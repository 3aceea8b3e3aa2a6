// Package sg is a skip graph (Aspnes and Shah, "Skip Graphs", 2003) on
// skipwire's network layer: nodes with numeric keys and random membership
// vectors, kept in one sorted list per level (level i links the nodes whose
// vectors share their first i bits), search by key from the top level down,
// join level by level, graceful leave, and repair after failures.
//
// A Node talks to other nodes only through a network.Network, on two
// channels (SearchChannel and MaintenanceChannel), and uses its
// p2pconn.ConnectionManager for Connect, GetConnection, Protect, Unprotect
// and Subscribe. It runs on the libp2p Manager and on memnet alike:
//
//	n, _ := network.New(manager, network.Config{})
//	node, err := sg.New(n, sg.Config{Key: 42})
//	if err != nil { ... }
//	err = node.Join(ctx, introducer) // the zero Identifier starts a skip graph
//	r, err := node.Search(ctx, 1000) // r.Node: the greatest key <= 1000
//	err = node.Leave(ctx)            // tells the neighbours
//	node.Close()                     // then close n, then the manager
//
// How it uses the connection layer:
//
//   - Searches are recursive: a Request to self at the origin, a Forward per
//     hop (with p2pconn.WithRetryAttempts(0): a dead hop costs one dial, and
//     the search takes the next best neighbour), and a Reply from the node
//     that has the answer straight to the origin.
//   - Maintenance (reading tables, linking, reaching a neighbour again)
//     retries (Config.MaintenanceConnect) and bounds each Request by
//     Config.RequestTimeout, or by the death of the connection to its
//     target.
//   - A node keeps a connection to each table neighbour and protects it
//     (Protect) while it is one, so idle closing and eviction spare it and
//     the manager reports its end: p2pconn.ErrPeerLeft drops the neighbour
//     for good, p2pconn.ErrConnectionLost drops it at once and checks in the
//     background whether it comes back.
//
// Repair is local and event-driven: a dropped neighbour marks its levels
// for repair; level 0 is found again among the nearest nodes the node knows
// (Config.Backups on each side), the levels above from the ones below.
// Every Config.StabilizeInterval a node also checks that its neighbours
// point back at it. Ideal and Expected say what the tables and the answers
// of a correct skip graph are, for tests.
//
// The Node logs through go-log's subsystem "skipwire/skipgraph"; Config.Observer
// is told of every message, for accounting.
package sg
