package resolver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/identity"
)

// maxLineLen bounds one line of a static table, so a file that is not a table
// (or is hostile) cannot make Load buffer it whole.
const maxLineLen = 64 << 10

// LineError reports a line of a static table that Load could not use.
type LineError struct {
	Line int   // 1-based line number
	Err  error // what is wrong with it
}

// Error implements error.
func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// Unwrap returns the cause, so errors.Is finds identity.ErrInvalid (a bad
// identifier) or ErrPeerMismatch (an address naming another peer).
func (e *LineError) Unwrap() error {
	return e.Err
}

// Load reads a static table from r and adds its entries to s, after any
// addresses already known. The format is one node per line:
//
//	# comment: from a field starting with '#' to the end of the line
//	<identifier> <multiaddr> [<multiaddr>...]
//
// where <identifier> is 64 hexadecimal characters (identity.Parse) and each
// <multiaddr> is a transport address such as /ip4/10.0.0.7/tcp/4001, or, for a
// node behind NAT, the address of its relay followed by
// /p2p/<relay peer ID>/p2p-circuit. An address may end in /p2p/<peer ID>; that
// peer ID must be the Identifier's own, and it is stored without that
// component. Fields are separated by spaces or tabs;
// blank lines are ignored; one Identifier may appear on several lines.
//
// Load is all or nothing: if any line is wrong it adds nothing and returns a
// *LineError naming the first wrong line and what is wrong with it (bad
// identifier, bad multiaddr, missing address, peer ID mismatch). Errors from r
// are returned wrapped.
func (s *Static) Load(r io.Reader) error {
	type entry struct {
		id    identity.Identifier
		addrs []ma.Multiaddr
	}
	var entries []entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	line := 0
	for sc.Scan() {
		line++
		id, addrs, err := parseLine(sc.Text())
		if err != nil {
			return &LineError{Line: line, Err: err}
		}
		if len(addrs) > 0 {
			entries = append(entries, entry{id, addrs})
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{Line: line + 1, Err: fmt.Errorf("longer than %d bytes", maxLineLen)}
		}
		return fmt.Errorf("resolver: read static table after line %d: %w", line, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		s.addLocked(e.id, e.addrs)
	}
	return nil
}

// LoadStaticFile returns a Static holding the table in the file at path, in the
// format Load reads. Errors name the file, and the line if one is wrong.
func LoadStaticFile(path string) (*Static, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: load static table: %w", err)
	}
	defer f.Close()
	s := NewStatic()
	if err := s.Load(f); err != nil {
		return nil, fmt.Errorf("resolver: load static table %s: %w", path, err)
	}
	return s, nil
}

// parseLine parses one line of a static table. A blank or comment line yields
// no addresses and no error.
func parseLine(text string) (identity.Identifier, []ma.Multiaddr, error) {
	// A byte order mark some editors write at the start of a file.
	fields := strings.Fields(strings.TrimPrefix(text, "\ufeff"))
	for i, f := range fields {
		if strings.HasPrefix(f, "#") {
			fields = fields[:i]
			break
		}
	}
	if len(fields) == 0 {
		return identity.Identifier{}, nil, nil
	}
	id, err := identity.Parse(fields[0])
	if err != nil {
		return identity.Identifier{}, nil, fmt.Errorf("bad identifier: %w", err)
	}
	if len(fields) == 1 {
		return identity.Identifier{}, nil, fmt.Errorf("missing address: identifier %s has none", id.Short())
	}
	want := id.PeerID()
	addrs := make([]ma.Multiaddr, 0, len(fields)-1)
	for _, f := range fields[1:] {
		a, err := ma.NewMultiaddr(f)
		if err != nil {
			return identity.Identifier{}, nil, fmt.Errorf("bad multiaddr %q: %w", truncate(f), err)
		}
		transport, p := peer.SplitAddr(a)
		if p != "" && p != want {
			return identity.Identifier{}, nil, fmt.Errorf("multiaddr %q names peer %s, not %s (identifier %s): %w",
				truncate(f), p, want, id.Short(), ErrPeerMismatch)
		}
		if len(transport) == 0 {
			return identity.Identifier{}, nil, fmt.Errorf("bad multiaddr %q: no transport address before /p2p", truncate(f))
		}
		addrs = append(addrs, transport)
	}
	return id, addrs, nil
}

// truncate shortens s for error messages so hostile input cannot flood logs.
func truncate(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
