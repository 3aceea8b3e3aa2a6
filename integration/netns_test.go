package integration_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
)

// ipCmd runs ip with args and returns its error with its output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netnsLab is a bridge in the root namespace, with address 10.231.<net>.1/24,
// and one network namespace per node joined to it by a veth pair.
type netnsLab struct {
	tag    string // random, in every name
	net    int
	bridge string
}

// newNetnsLab creates the bridge, or skips the test where namespaces cannot
// be created. Cleanup removes everything the lab created.
func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace test: needs root (ip netns add); CI runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace test: the ip command (iproute2) is not installed")
	}
	lab := &netnsLab{tag: fmt.Sprintf("%04x", rand.N(1<<16)), net: 1 + rand.N(254)}
	probe := "sw-" + lab.tag + "-probe"
	if err := ipCmd("netns", "add", probe); err != nil {
		t.Skipf("network namespace test: cannot create a namespace here: %v", err)
	}
	_ = ipCmd("netns", "del", probe)
	lab.bridge = "swbr" + lab.tag
	t.Cleanup(func() { _ = ipCmd("link", "del", lab.bridge) })
	require.NoError(t, ipCmd("link", "add", lab.bridge, "type", "bridge"))
	require.NoError(t, ipCmd("addr", "add", lab.ip(1)+"/24", "dev", lab.bridge))
	require.NoError(t, ipCmd("link", "set", lab.bridge, "up"))
	return lab
}

func (lab *netnsLab) ip(host int) string { return fmt.Sprintf("10.231.%d.%d", lab.net, host) }

// node creates namespace k with interface nodeIf(k) at address ip(10+k),
// and returns the namespace's name.
func (lab *netnsLab) node(t *testing.T, k int) string {
	t.Helper()
	ns := fmt.Sprintf("sw-%s-%d", lab.tag, k)
	outer := fmt.Sprintf("swv%s%d", lab.tag, k)
	t.Cleanup(func() {
		_ = ipCmd("netns", "del", ns) // deletes the inner end, hence the pair
		_ = ipCmd("link", "del", outer)
	})
	inner := lab.nodeIf(k)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", outer, "type", "veth", "peer", "name", inner},
		{"link", "set", outer, "master", lab.bridge},
		{"link", "set", outer, "up"},
		{"link", "set", inner, "netns", ns},
		{"-n", ns, "addr", "add", lab.ip(10+k) + "/24", "dev", inner},
		{"-n", ns, "link", "set", inner, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		require.NoError(t, ipCmd(args...))
	}
	return ns
}

func (lab *netnsLab) nodeIf(k int) string { return fmt.Sprintf("swp%s%d", lab.tag, k) }

// TestNetnsLinkCut runs three nodes, each a separate process in its own
// network namespace, joined to the test's node by veth pairs and a bridge,
// so traffic crosses real interfaces and 10.231.x.y addresses. Mid-traffic
// one node's interface goes down: its connection is declared lost within
// KeepaliveInterval + KeepaliveTimeout (1 s + 1 s), while every request to
// the other two is echoed. The link comes back up and the next Connect
// reaches the node again.
func TestNetnsLinkCut(t *testing.T) {
	lab := newNetnsLab(t)
	ctx := testkit.Context(t, 60*time.Second)
	kids := make([]*childnode.Node, 3)
	nss := make([]string, len(kids))
	for k := range kids {
		nss[k] = lab.node(t, k)
	}
	var wg sync.WaitGroup
	for k := range kids {
		wg.Go(func() {
			kids[k] = childnode.Start(t, childnode.Options{
				Config: childConfig(),
				Listen: fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(10+k)),
				Wrap:   []string{"ip", "netns", "exec", nss[k]},
			})
		})
	}
	wg.Wait()
	require.NotContains(t, kids, (*childnode.Node)(nil))
	d := startDriver(t, fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(1)), kids, 10*time.Millisecond)
	for k := range kids {
		require.NoError(t, d.waitEchoes(ctx, k, 0, 20), "child %d echoes", k)
		conn, ok := d.m.GetConnection(kids[k].ID)
		require.True(t, ok)
		require.Contains(t, conn.RemoteAddr(), "/ip4/"+lab.ip(10+k)+"/tcp/", "traffic crosses the bridge")
	}

	const cut = 1
	conn, ok := d.m.GetConnection(kids[cut].ID)
	require.True(t, ok)
	before := []int64{d.stats[0].echoed.Load(), d.stats[2].echoed.Load()}
	t0 := time.Now()
	require.NoError(t, ipCmd("-n", nss[cut], "link", "set", lab.nodeIf(cut), "down"))
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = ipCmd("-n", nss[cut], "link", "set", lab.nodeIf(cut), "up")
		}
	})
	lat := waitDead(t, ctx, conn, t0)
	require.ErrorIs(t, conn.Err(), p2pconn.ErrConnectionLost)
	require.Less(t, lat, 5*time.Second, "cut link detected within KeepaliveInterval + KeepaliveTimeout (2 s) plus slack")
	require.NoError(t, d.waitEchoes(ctx, 0, before[0], 50))
	require.NoError(t, d.waitEchoes(ctx, 2, before[1], 50))

	cutEchoes := d.stats[cut].echoed.Load()
	require.NoError(t, ipCmd("-n", nss[cut], "link", "set", lab.nodeIf(cut), "up"))
	healed = true
	t1 := time.Now()
	require.NoError(t, d.waitEchoes(ctx, cut, cutEchoes, 20))
	back, ok := d.m.GetConnection(kids[cut].ID)
	require.True(t, ok)
	require.NotSame(t, conn, back, "a new connection after the heal")
	d.stop()
	for _, k := range []int{0, 2} {
		require.Zero(t, d.stats[k].failed.Load(), "child %d: a request to a live child failed", k)
		require.Zero(t, d.stats[k].mismatch.Load())
	}
	t.Logf("link cut on %s detected in %s (%v); reconnected %s after the heal; echoes %d/%d/%d, failed %d/%d/%d",
		lab.nodeIf(cut), lat.Round(time.Millisecond), conn.Err(), time.Since(t1).Round(time.Millisecond),
		d.stats[0].echoed.Load(), d.stats[1].echoed.Load(), d.stats[2].echoed.Load(),
		d.stats[0].failed.Load(), d.stats[1].failed.Load(), d.stats[2].failed.Load())
}
