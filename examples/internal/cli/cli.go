// Package cli holds what the example programs share: flag parsing with the
// Go flag conventions, one-line errors, logging set-up, keys, hosts and peer
// addresses.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Exit codes of the example programs.
const (
	ExitOK    = 0
	ExitFail  = 1 // the program ran, and what it checks failed
	ExitUsage = 2 // bad flags or arguments, or the network could not be used
)

// NewFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage to stderr: usage first (the synopsis lines), then the flags.
func NewFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs. It returns ok false and the exit code when the
// program should stop: 0 for -h, 2 for a bad flag (the flag package has
// already printed the error and the usage).
func Parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return ExitOK, true
	case errors.Is(err, flag.ErrHelp):
		return ExitOK, false
	default:
		return ExitUsage, false
	}
}

// Command returns how to run the example program called name again: "go run
// ./examples/<name>" when it was started with go run (or is a test binary),
// else the path it was started with.
func Command(name string) string {
	self := os.Args[0]
	if strings.Contains(filepath.ToSlash(self), "go-build") {
		return "go run ./examples/" + name
	}
	return self
}

// SetLogLevel sets the level of every go-log logger (libp2p's and
// skipwire's) when level is not empty. Without it, go-log's default holds:
// errors only, or what the GOLOG_LOG_LEVEL environment variable says.
func SetLogLevel(level string) error {
	if level == "" {
		return nil
	}
	if err := logging.SetLogLevel("*", level); err != nil {
		return fmt.Errorf("-log %q: %w", level, err)
	}
	return nil
}

// OneLine formats err on one line: joined errors, which print one per line,
// are separated by "; " instead.
func OneLine(err error) string {
	lines := strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' })
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "; ")
}

// ConnectError describes a failed Connect on one line. When libp2p could not
// dial any address, it names each address and why (such as "connection
// refused"), which says more than the layers of wrapping around it.
func ConnectError(err error) string {
	var dial *swarm.DialError
	if errors.As(err, &dial) && len(dial.DialErrors) > 0 {
		parts := make([]string, len(dial.DialErrors))
		for i, te := range dial.DialErrors {
			parts[i] = fmt.Sprintf("%s: %s", te.Address, OneLine(te.Cause))
		}
		return strings.Join(parts, "; ")
	}
	return OneLine(err)
}

// LoadKey returns the key stored at path, created there if absent, or a
// fresh key if path is empty.
func LoadKey(path string) (crypto.PrivKey, error) {
	if path == "" {
		return identity.GenerateKey()
	}
	return identity.LoadOrCreateKey(path)
}

// NewHost starts a libp2p host with skipwire's recommended options for cfg
// and key, listening on listen, or on nothing if listen is empty (a node
// that only dials).
func NewHost(cfg p2pconn.Config, key crypto.PrivKey, listen string) (host.Host, error) {
	opts := append(p2pconn.HostOptions(cfg), libp2p.Identity(key))
	if listen == "" {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		if _, err := ma.NewMultiaddr(listen); err != nil {
			return nil, fmt.Errorf("bad listen address %q: %s", listen, OneLine(err))
		}
		opts = append(opts, libp2p.ListenAddrStrings(listen))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %s", listen, OneLine(err))
	}
	return h, nil
}

// FullAddrs returns h's addresses with /p2p/<peer id>, the form another node
// dials. Relay addresses are left out.
func FullAddrs(h host.Host) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			continue
		}
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+h.ID().String())))
	}
	return out
}

// ParsePeer parses a full multiaddr, such as
// /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..., into the peer's address and its
// skipwire Identifier. Its errors say what is wrong in words a user can act on.
func ParsePeer(s string) (peer.AddrInfo, identity.Identifier, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, identity.Identifier{}, fmt.Errorf("bad address %q: %s", s, OneLine(err))
	}
	if _, err := a.ValueForProtocol(ma.P_P2P); err != nil {
		return peer.AddrInfo{}, identity.Identifier{}, fmt.Errorf("address %s has no /p2p/<peer id> part: copy the full address the other node printed", s)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return peer.AddrInfo{}, identity.Identifier{}, fmt.Errorf("bad address %q: %s", s, OneLine(err))
	}
	if len(info.Addrs) == 0 {
		return peer.AddrInfo{}, identity.Identifier{}, fmt.Errorf("address %s has no transport part before /p2p/ (such as /ip4/127.0.0.1/tcp/4001)", s)
	}
	id, err := identity.FromPeerID(info.ID)
	if err != nil {
		return peer.AddrInfo{}, identity.Identifier{}, fmt.Errorf("peer %s in %s: %s", info.ID, s, OneLine(err))
	}
	return *info, id, nil
}
