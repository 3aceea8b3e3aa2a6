package natlab

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

// The lab's addresses. The "internet" is 172.16.0.0/24, which manet counts
// as private: the lab's processes count it as public (see treatAsPublic).
// Nothing joins the lab's namespaces to the host's, so no address of the
// lab is ever seen outside them.
const (
	internetPrefix = "172.16.0.0/12" // taken out of manet.Private4 in the lab's processes
	relayIP        = "172.16.0.10"   // relay, limits as configured by the scenario
	relay2IP       = "172.16.0.20"   // a second relay, for a scenario with other limits
	routerAWAN     = "172.16.0.11"
	routerBWAN     = "172.16.0.12"
	nodeAIP        = "10.0.1.2" // behind router A (LAN 10.0.1.0/24)
	nodeBIP        = "10.0.2.2" // behind router B (LAN 10.0.2.0/24)
)

// NAT is how the two routers translate.
type NAT int

const (
	// Cone is plain masquerade: a connection keeps its source port when it
	// can (port preservation), and the mapping does not depend on the
	// destination, so a hole punch meets the port the relay observed.
	Cone NAT = iota
	// Symmetric is masquerade fully-random: each connection gets a random
	// source port, so the port a peer dials is never the one the relay
	// observed, and hole punching fails.
	Symmetric
)

func (n NAT) String() string {
	if n == Symmetric {
		return "symmetric"
	}
	return "cone"
}

// Lab is a NAT lab in network namespaces:
//
//	internet (bridge, 172.16.0.0/24)
//	 ├─ relay   172.16.0.10
//	 ├─ relay2  172.16.0.20
//	 ├─ router A wan 172.16.0.11 ── LAN 10.0.1.0/24 ── node A 10.0.1.2
//	 └─ router B wan 172.16.0.12 ── LAN 10.0.2.0/24 ── node B 10.0.2.2
//
// Each router masquerades what leaves its wan interface and drops what
// comes in on it unless it belongs to a connection from inside (a home
// router's firewall, in nftables). Close removes every namespace, and with
// them their interfaces and rules.
type Lab struct {
	tag    string
	ns     map[string]string // lab name (internet, relay, relay2, ra, rb, a, b) -> namespace
	nat    NAT
	relays map[string]*relay // by lab name, once started
}

// Unavailable reports why a lab cannot be built on this machine (not root,
// a tool missing, namespaces not allowed), or nil if it can.
func Unavailable() error {
	if os.Geteuid() != 0 {
		return errors.New("the NAT lab needs root (ip netns add)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the NAT lab needs %s (packages iproute2 and nftables): %w", tool, err)
		}
	}
	probe := fmt.Sprintf("swnat-probe-%04x", rand.N(1<<16))
	if err := run("ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("the NAT lab cannot create a network namespace here: %w", err)
	}
	_ = run("ip", "netns", "del", probe)
	return nil
}

// New builds the lab with cone NAT on both routers. On error it removes
// what it built.
func New() (lab *Lab, err error) {
	lab = &Lab{tag: fmt.Sprintf("%04x", rand.N(1<<16)), ns: make(map[string]string)}
	defer func() {
		if err != nil {
			err = errors.Join(err, lab.Close())
			lab = nil
		}
	}()
	for _, name := range []string{"internet", "relay", "relay2", "ra", "rb", "a", "b"} {
		ns := "swnat-" + lab.tag + "-" + name
		if err := run("ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		lab.ns[name] = ns
		if err := lab.ip(name, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	steps := [][]string{
		{"internet", "link", "add", "name", "br0", "type", "bridge"},
		{"internet", "link", "set", "br0", "up"},
	}
	// The veth pairs are made straight into the namespaces: "ip link add
	// name X" (without "name", a short X may be taken for "address").
	for _, h := range []struct{ name, inIf, peerIf, addr string }{
		{"relay", "p-relay", "eth0", relayIP + "/24"},
		{"relay2", "p-relay2", "eth0", relay2IP + "/24"},
		{"ra", "p-ra", "wan", routerAWAN + "/24"},
		{"rb", "p-rb", "wan", routerBWAN + "/24"},
	} {
		steps = append(steps,
			[]string{"internet", "link", "add", "name", h.inIf, "type", "veth", "peer", "name", h.peerIf, "netns", lab.ns[h.name]},
			[]string{"internet", "link", "set", h.inIf, "master", "br0"},
			[]string{"internet", "link", "set", h.inIf, "up"},
			[]string{h.name, "addr", "add", h.addr, "dev", h.peerIf},
			[]string{h.name, "link", "set", h.peerIf, "up"},
		)
	}
	for _, l := range []struct{ router, node, lan, nodeAddr string }{
		{"ra", "a", "10.0.1.1", nodeAIP},
		{"rb", "b", "10.0.2.1", nodeBIP},
	} {
		steps = append(steps,
			[]string{l.router, "link", "add", "name", "lan", "type", "veth", "peer", "name", "eth0", "netns", lab.ns[l.node]},
			[]string{l.router, "addr", "add", l.lan + "/24", "dev", "lan"},
			[]string{l.router, "link", "set", "lan", "up"},
			[]string{l.node, "addr", "add", l.nodeAddr + "/24", "dev", "eth0"},
			[]string{l.node, "link", "set", "eth0", "up"},
			[]string{l.node, "route", "add", "default", "via", l.lan},
		)
	}
	for _, s := range steps {
		if err := lab.ip(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"ra", "rb"} {
		// /proc/sys/net belongs to the namespace of the process that opens it.
		if err := run("ip", "netns", "exec", lab.ns[r], "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
			return nil, err
		}
	}
	if err := lab.SetNAT(Cone); err != nil {
		return nil, err
	}
	return lab, nil
}

// SetNAT replaces both routers' rules with those of nat. Connections the
// routers track keep the mapping they had; a scenario starts fresh nodes,
// whose connections are new.
func (lab *Lab) SetNAT(nat NAT) error {
	masq := "masquerade"
	if nat == Symmetric {
		masq = "masquerade fully-random"
	}
	// A home router: what leaves through wan is masqueraded; what comes in
	// through wan passes only if it belongs to a connection from inside,
	// and the rest is dropped without an answer (a crossing SYN or QUIC
	// packet of a hole punch matches the outbound entry, so it passes).
	rules := fmt.Sprintf(`flush ruleset
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" %s
	}
}
table inet fw {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
}
`, masq)
	for _, r := range []string{"ra", "rb"} {
		cmd := exec.Command("ip", "netns", "exec", lab.ns[r], "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft in router %s: %w: %s", r, err, bytes.TrimSpace(out))
		}
	}
	lab.nat = nat
	return nil
}

// NAT returns the routers' current NAT.
func (lab *Lab) NAT() NAT { return lab.nat }

// wrap returns the command prefix that runs a program in the namespace of
// the lab's host name (relay, relay2, a, b).
func (lab *Lab) wrap(name string) []string {
	return []string{"ip", "netns", "exec", lab.ns[name]}
}

// Close stops the lab's relays and removes its namespaces.
func (lab *Lab) Close() error {
	errs := []error{lab.stopRelays()}
	for _, ns := range lab.ns {
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	clear(lab.ns)
	return errors.Join(errs...)
}

// ip runs ip in the namespace of the lab's host name.
func (lab *Lab) ip(name string, args ...string) error {
	return run("ip", append([]string{"-n", lab.ns[name]}, args...)...)
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
