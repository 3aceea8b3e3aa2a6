package natlab

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/skipwire/skipwire/internal/testkit"
)

// Result is what the dialing node measured in one scenario. Times are
// taken in the dialer's process.
type Result struct {
	Scenario string
	NAT      string

	// Connect is how long Connect by Identifier took: resolution (a static
	// table of /p2p-circuit addresses), the relayed dial and the skipwire
	// handshake.
	Connect time.Duration
	// FirstEcho runs from the start of Connect to the echo of the first
	// message: time to the first message through the relay, there and back.
	FirstEcho time.Duration
	// Path is the skipwire connection's RemoteAddr after Connect;
	// PathAtEnd once the scenario is over ("" if the connection is dead).
	Path, PathAtEnd string
	// LimitData and LimitDuration are the limits the relay announced on the
	// relayed connection (per direction; 0 for none).
	LimitData     int64
	LimitDuration time.Duration
	// DialerCloses tells whether the dialer has the smaller Identifier, so
	// that it is the side that closes duplicate libp2p connections.
	DialerCloses bool

	// Numbered messages: Sent counts the Sends that returned nil, Echoed
	// the echoes that came back; Lost are the numbers never echoed,
	// Duplicated those echoed twice, Reordered those echoed out of order.
	Sent, Echoed, Lost, Duplicated, Reordered int
	SendErr, NextErr                          string

	// Direct is the first direct (not relayed) libp2p connection to the
	// peer, if one appeared; Punches are the hole-punch attempts the
	// dialer took part in (it is DCUtR's receiver: the dialed node, which
	// got the relayed connection, starts them).
	Direct  *Direct
	Punches []Punch

	// Round trips: skipwire messages on the skipwire connection (echoed by
	// the peer), and libp2p pings on the relayed and on the direct libp2p
	// connection (32 bytes each way).
	RTTSkipwire, RTTPingRelayed, RTTPingDirect []time.Duration

	// ConnsAtEnd are the libp2p connections to the peer at the end, by
	// remote address.
	ConnsAtEnd []string

	// Limit is set by the scenarios that drive a relayed connection into
	// the relay's limits.
	Limit *LimitHit
}

// Direct is a direct libp2p connection that hole punching opened.
type Direct struct {
	// After runs from the opening of the relayed connection.
	After     time.Duration
	Transport string // "tcp" or "quic-v1"
	Addr      string
	// Lifetime is how long it stayed open, if it closed before the end.
	Lifetime time.Duration
	Closed   bool
}

// Punch is one hole-punch attempt.
type Punch struct {
	Success bool
	Took    time.Duration
	Err     string
}

// LimitHit is how a relayed connection ended at the relay's limits.
type LimitHit struct {
	// SentBytes is the payload of the Sends that returned nil;
	// EchoedBytes the payload that came back.
	SentBytes, EchoedBytes int64
	// After runs from the opening of the relayed connection to the first
	// error.
	After time.Duration
	// Err is the first error, of Send or of Next; Lost tells whether it
	// matches p2pconn.ErrConnectionLost.
	Err  string
	Lost bool
	// SendErr is the error of the first Send that failed, SendAfter when
	// (from the opening of the relayed connection); every Send before it
	// returned nil.
	SendErr   string
	SendAfter time.Duration
	// RelayLimit tells whether that Send failed with p2pconn.ErrRelayLimit:
	// skipwire stopped short of the relay's limits.
	RelayLimit bool
}

// Problems returns what makes r fail sc, if anything.
func (r *Result) Problems(sc Scenario) []string {
	var p []string
	if !strings.Contains(r.Path, "/p2p-circuit") {
		p = append(p, fmt.Sprintf("the skipwire connection is not relayed: %q", r.Path))
	}
	if sc.Kind != Exchange {
		if r.Limit == nil || r.Limit.Err == "" {
			p = append(p, "the relayed connection never failed at the relay's limits")
		} else if !r.Limit.RelayLimit {
			p = append(p, fmt.Sprintf("no Send failed with ErrRelayLimit before the relay's limits: %s", r.Limit.Err))
		}
		return p
	}
	if r.Lost > 0 || r.Duplicated > 0 || r.Reordered > 0 || r.Echoed != r.Sent || r.Sent == 0 {
		p = append(p, fmt.Sprintf("%d sent, %d echoed: %d lost, %d duplicated, %d out of order (send error %q, next error %q)",
			r.Sent, r.Echoed, r.Lost, r.Duplicated, r.Reordered, r.SendErr, r.NextErr))
	}
	switch {
	case sc.WantDirect == "" && r.Direct != nil:
		p = append(p, fmt.Sprintf("a direct connection appeared (%s) where hole punching should fail", r.Direct.Addr))
	case sc.WantDirect == "" && !r.punchFailed():
		p = append(p, "no hole-punch attempt failed")
	case sc.WantDirect != "" && r.Direct == nil:
		p = append(p, fmt.Sprintf("no direct connection (hole punches: %v)", r.Punches))
	case sc.WantDirect != "" && r.Direct.Transport != sc.WantDirect:
		p = append(p, fmt.Sprintf("direct connection over %s, want %s", r.Direct.Transport, sc.WantDirect))
	}
	relayed := strings.Contains(r.PathAtEnd, "/p2p-circuit")
	switch {
	case r.PathAtEnd == "":
		p = append(p, "the skipwire connection is dead at the end")
	case sc.WantDirect == "" && !relayed:
		p = append(p, fmt.Sprintf("the skipwire connection at the end is not on the relay: %q", r.PathAtEnd))
	case sc.WantDirect != "" && relayed:
		p = append(p, fmt.Sprintf("the skipwire connection did not move to the direct connection: %q", r.PathAtEnd))
	case sc.WantDirect != "" && (len(r.ConnsAtEnd) != 1 || r.Direct != nil && r.Direct.Closed):
		p = append(p, fmt.Sprintf("libp2p connections to the peer at the end: %v, want the direct one only", r.ConnsAtEnd))
	}
	return p
}

func (r *Result) punchFailed() bool {
	for _, x := range r.Punches {
		if !x.Success {
			return true
		}
	}
	return false
}

// Lines returns r's figures, one per line, for a person to read.
func (r *Result) Lines() []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	med := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%s (p90 %s, n=%d)", ms(testkit.Percentile(ds, 50)), ms(testkit.Percentile(ds, 90)), len(ds))
	}
	out := []string{
		fmt.Sprintf("NAT %s; relayed path %s", r.NAT, r.Path),
		fmt.Sprintf("relay limits announced: %s per direction, %s", kib(r.LimitData), r.LimitDuration),
		fmt.Sprintf("Connect by Identifier (static table of /p2p-circuit addresses): %s; first message through the relay (there and back): %s",
			ms(r.Connect), ms(r.FirstEcho)),
	}
	if l := r.Limit; l != nil {
		out[2] = fmt.Sprintf("Connect by Identifier through the relay: %s", ms(r.Connect))
		if l.RelayLimit {
			out = append(out, fmt.Sprintf("Send stopped short of the relay's limits %s after the relayed connection opened (ErrRelayLimit): %s",
				l.SendAfter.Round(time.Millisecond), l.SendErr))
		} else {
			out = append(out, fmt.Sprintf("connection ended %s after the relayed connection opened (ErrConnectionLost: %v): %s",
				l.After.Round(time.Millisecond), l.Lost, l.Err))
		}
		sends := "no Send failed"
		if l.SendErr != "" {
			sends = fmt.Sprintf("the first Send failed after %s: %s", l.SendAfter.Round(time.Millisecond), l.SendErr)
		}
		out = append(out, fmt.Sprintf("Sends that returned nil: %s; echoed: %s; %s", kib(l.SentBytes), kib(l.EchoedBytes), sends))
		if r.LimitData > 0 && l.SentBytes > r.LimitData {
			out = append(out, fmt.Sprintf("at least %s of them never crossed the relay (it relays %s per direction, framing and encryption included), without an error to their Send",
				kib(l.SentBytes-r.LimitData), kib(r.LimitData)))
		}
		return out
	}
	out = append(out, fmt.Sprintf("numbered messages: %d sent, %d echoed, %d lost, %d duplicated, %d out of order",
		r.Sent, r.Echoed, r.Lost, r.Duplicated, r.Reordered))
	for i, x := range r.Punches {
		s := "failed: " + strings.Join(strings.Fields(x.Err), " ")
		if x.Success {
			s = "succeeded"
		}
		out = append(out, fmt.Sprintf("hole punch %d: %s in %s", i+1, s, ms(x.Took)))
	}
	closer := "dialed node"
	if r.DialerCloses {
		closer = "dialer"
	}
	if d := r.Direct; d != nil {
		life := "still open at the end"
		if d.Closed {
			life = fmt.Sprintf("closed %s after it opened (the %s has the smaller Identifier and closes duplicates)", ms(d.Lifetime), closer)
		}
		out = append(out, fmt.Sprintf("direct connection (%s) %s after the relayed one: %s", d.Transport, ms(d.After), life))
	} else {
		out = append(out, "no direct connection")
	}
	out = append(out,
		fmt.Sprintf("round trip, skipwire message (on its path at the end): %s", med(r.RTTSkipwire)),
		fmt.Sprintf("round trip, libp2p ping: relayed %s, direct %s", med(r.RTTPingRelayed), med(r.RTTPingDirect)),
		fmt.Sprintf("skipwire connection at the end: %s", r.PathAtEnd),
		fmt.Sprintf("libp2p connections to the peer at the end: %d %v", len(r.ConnsAtEnd), r.ConnsAtEnd),
	)
	return out
}

// Summary returns the main figures of the Exchange results in rs as a
// table, one scenario per column.
func Summary(rs []*Result) []string {
	var cols []*Result
	for _, r := range rs {
		if r != nil && r.Limit == nil {
			cols = append(cols, r)
		}
	}
	if len(cols) == 0 {
		return nil
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	p50 := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return ms(testkit.Percentile(ds, 50))
	}
	rows := []struct {
		name string
		cell func(r *Result) string
	}{
		{"", func(r *Result) string { return r.Scenario }},
		{"first message through the relay", func(r *Result) string { return ms(r.FirstEcho) }},
		{"direct path after the relayed one", func(r *Result) string {
			if r.Direct == nil {
				if r.punchFailed() {
					return "none (punch failed)"
				}
				return "none"
			}
			return ms(r.Direct.After) + " " + r.Direct.Transport
		}},
		{"direct connection closed after", func(r *Result) string {
			if r.Direct == nil || !r.Direct.Closed {
				return "-"
			}
			return ms(r.Direct.Lifetime)
		}},
		{"round trip, skipwire", func(r *Result) string { return p50(r.RTTSkipwire) }},
		{"round trip, ping relayed", func(r *Result) string { return p50(r.RTTPingRelayed) }},
		{"round trip, ping direct", func(r *Result) string { return p50(r.RTTPingDirect) }},
		{"skipwire connection at the end", func(r *Result) string {
			if strings.Contains(r.PathAtEnd, "/p2p-circuit") {
				return "relayed"
			}
			return "direct"
		}},
		{"messages: sent/lost/duplicated", func(r *Result) string {
			return fmt.Sprintf("%d/%d/%d", r.Sent, r.Lost, r.Duplicated)
		}},
	}
	out := make([]string, len(rows))
	for i, row := range rows {
		line := fmt.Sprintf("%-34s", row.name)
		for _, r := range cols {
			line += fmt.Sprintf("  %-20s", row.cell(r))
		}
		out[i] = strings.TrimRight(line, " ")
	}
	return out
}

func kib(n int64) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}

// writeResult writes r to the file at path, as JSON.
func writeResult(path string, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// readResult reads what writeResult wrote.
func readResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("result %s: %w", path, err)
	}
	return &r, nil
}
