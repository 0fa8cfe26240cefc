package overlay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nstest"
	"github.com/vxmesh/vxmesh/overlay"
)

var (
	meshNet = ovNet{name: "mesh", vni: 4200, subnet: netip.MustParsePrefix("10.200.0.0/16")}
	isoNet  = ovNet{name: "iso", vni: 4201, subnet: netip.MustParsePrefix("10.200.0.0/16")}
)

// TestOverlayThreeHosts builds three hosts with the mesh network and one
// container each, programs them with overlay.Sync, and checks traffic and entries
// through the changes the agent will drive.
func TestOverlayThreeHosts(t *testing.T) {
	nstest.RequireTool(t, "ping", "bridge", "ip", "sysctl", "nsenter")
	tp := nstest.New(t, nstest.Options{Hosts: 3})
	var hosts []*ovHost
	for _, h := range tp.Hosts {
		oh := newOvHost(t, h, false)
		oh.addNetwork(t, meshNet)
		hosts = append(hosts, oh)
	}
	ctrs := []*ctr{
		hosts[0].addContainer(t, "c1", meshNet, netip.MustParseAddr("10.200.1.10")),
		hosts[1].addContainer(t, "c2", meshNet, netip.MustParseAddr("10.200.2.10")),
		hosts[2].addContainer(t, "c3", meshNet, netip.MustParseAddr("10.200.3.10")),
	}
	syncAll(t, hosts, meshNet, ctrs)
	x := &threeHosts{
		top: t, hosts: hosts, ctrs: ctrs,
		c1: ctrs[0], c2: ctrs[1], c3: ctrs[2],
		h1: hosts[0], vx: hosts[0].devs[meshNet.name].LinkName(),
	}

	t.Run("device", x.device)
	t.Run("ping across hosts and the local gateway", x.ping)
	t.Run("tcp bigger than the mtu both ways", x.bigTCP)
	t.Run("own dump reads like the library's", x.ownDump)
	t.Run("resync changes nothing", x.resync)
	t.Run("removed endpoint removes exactly its entries", x.removed)
	t.Run("mac moved to another vtep works at once", x.macMoved)
	t.Run("ip reused with a new mac on another host", x.ipReused)
	t.Run("watcher fires on a hand-deleted entry and sync restores it", x.watcher)
}

// threeHosts is TestOverlayThreeHosts' lab, shared by its subtests in
// order: some change it (a container moves, an address is reused) and the
// next ones run on the result.
type threeHosts struct {
	top        *testing.T // outlives the subtests: containers made in one stay
	hosts      []*ovHost
	ctrs       []*ctr // the containers now, on every host
	c1, c2, c3 *ctr   // the first three, on h1, h2, h3
	h1         *ovHost
	vx         string // h1's VXLAN device of meshNet
}

func (x *threeHosts) device(t *testing.T) {
	h1, vx := x.h1, x.vx
	l, err := h1.nl.LinkByName(vx)
	if err != nil {
		t.Fatal(err)
	}
	d := l.(*netlink.Vxlan)
	if d.MTU != 1450 || d.Port != 4789 || d.Learning || !d.Proxy || d.L2miss || d.L3miss || d.Alias != "vxmesh:vxlan net=mesh" {
		t.Fatalf("vxlan device: mtu %d port %d learning %v proxy %v l2miss %v l3miss %v alias %q",
			d.MTU, d.Port, d.Learning, d.Proxy, d.L2miss, d.L3miss, d.Alias)
	}
	if changed, err := overlay.EnsureDevice(h1.nl, h1.devs[meshNet.name]); err != nil || changed {
		t.Fatalf("second EnsureDevice: changed %v, err %v", changed, err)
	}
	devs, err := overlay.Devices(h1.nl)
	if err != nil || len(devs) != 1 || devs[0].Name != "mesh" || devs[0].Bridge != "vxb-mesh" || devs[0].Local != h1.local {
		t.Fatalf("overlay.Devices = %+v, %v", devs, err)
	}
}

func (x *threeHosts) ping(t *testing.T) {
	ctrs, c1, c2, c3 := x.ctrs, x.c1, x.c2, x.c3
	for _, pair := range [][2]*ctr{{c1, c2}, {c1, c3}, {c2, c3}, {c3, c1}} {
		if err := ping(pair[0], pair[1].ip); err != nil {
			t.Error(err)
		}
	}
	for _, c := range ctrs {
		if err := ping(c, meshNet.gateway()); err != nil {
			t.Errorf("gateway on own host: %v", err)
		}
	}
}

func (x *threeHosts) bigTCP(t *testing.T) {
	c1, c2 := x.c1, x.c2
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	for _, pair := range [][2]*ctr{{c1, c2}, {c2, c1}} {
		srv := nstest.ServeEcho(t, pair[1].ns, "tcp", netip.AddrPortFrom(pair[1].ip, 0).String())
		got, err := nstest.Dial(pair[0].ns, "tcp", srv, payload, 20*time.Second)
		if err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].name, pair[1].name, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("%s -> %s: echoed %d bytes, sent %d", pair[0].name, pair[1].name, len(got), len(payload))
		}
	}
}

func (x *threeHosts) ownDump(t *testing.T) {
	h1, vx := x.h1, x.vx
	raw, err := overlay.ReadState(h1.nl, vx)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := overlay.ReadState(h1.nl.Handle, vx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(raw) != fmt.Sprint(lib) || raw.Len() != 6 {
		t.Fatalf("pipelined handle reads %v, library %v", raw, lib)
	}
}

func (x *threeHosts) resync(t *testing.T) {
	ctrs, h1, vx := x.ctrs, x.h1, x.vx
	st, err := overlay.Sync(h1.nl, vx, remoteOf(h1, meshNet, ctrs))
	if err != nil || st.Changed() || st.Unchanged != 6 {
		t.Fatalf("%s, %v; want 6 unchanged", st, err)
	}
}

func (x *threeHosts) removed(t *testing.T) {
	hosts, ctrs, c1, c2, c3, h1, vx := x.hosts, x.ctrs, x.c1, x.c2, x.c3, x.h1, x.vx
	before := dumpAll(t, h1)
	st, err := overlay.Sync(h1.nl, vx, remoteOf(h1, meshNet, []*ctr{c1, c2}))
	if err != nil || st.Deleted != 3 || st.Unchanged != 3 {
		t.Fatalf("%s, %v; want 3 deleted", st, err)
	}
	after := dumpAll(t, h1)
	gone := without(before, after)
	want := []string{
		fmt.Sprintf("fdb %s dst %s self permanent", c3.mac, c3.host.local),
		fmt.Sprintf("fdb 00:00:00:00:00:00 dst %s self permanent", c3.host.local),
		fmt.Sprintf("neigh %s lladdr %s permanent", c3.ip, c3.mac),
	}
	slices.Sort(want)
	if !slices.Equal(gone, want) {
		t.Fatalf("removed entries:\n%s\nwant:\n%s", strings.Join(gone, "\n"), strings.Join(want, "\n"))
	}
	if added := without(after, before); len(added) != 0 {
		t.Fatalf("removal added entries: %v", added)
	}
	if err := pingFails(c1, c3.ip); err != nil {
		t.Fatal("c1 still reaches c3 after its entries were removed")
	}
	syncAll(t, hosts, meshNet, ctrs)
	if err := ping(c1, c3.ip); err != nil {
		t.Fatal(err)
	}
}

func (x *threeHosts) macMoved(t *testing.T) {
	hosts, c1, c2, c3, top, h1, vx := x.hosts, x.c1, x.c2, x.c3, x.top, x.h1, x.vx
	// c3 moves from h3 to h2 keeping its IP and MAC.
	c3.remove(t)
	// c3m stays silent until spoken to, so h2's bridge still has c3's
	// MAC as learned behind its VXLAN port (from c2 <-> c3 traffic) and
	// would drop c1's frames for it; the agent clears that entry when it
	// attaches c3m.
	moved := hosts[1].addContainerMAC(outliving{t, top}, "c3m", meshNet, c3.ip, c3.mac, true)
	if n, err := overlay.ClearLearned(hosts[1].nl, vx, []net.HardwareAddr{c3.mac}); err != nil || n != 1 {
		t.Fatalf("overlay.ClearLearned = %d, %v; want the entry learned from c2 <-> c3 traffic cleared", n, err)
	}
	now := []*ctr{c1, c2, moved}
	st, err := overlay.Sync(h1.nl, vx, remoteOf(h1, meshNet, now))
	if err != nil || st.Updated != 1 || st.Deleted != 1 {
		t.Fatalf("%s, %v; want 1 updated (fdb), 1 deleted (h3's flood entry)", st, err)
	}
	syncAll(t, hosts, meshNet, now)
	if err := ping(c1, moved.ip); err != nil {
		t.Fatal(err)
	}
	x.ctrs = now
}

func (x *threeHosts) ipReused(t *testing.T) {
	hosts, ctrs, c1, c2, top, h1, vx := x.hosts, x.ctrs, x.c1, x.c2, x.top, x.h1, x.vx
	// c2's address goes to a new container on h3 with a fresh MAC. The
	// entries switch at once; c1's own ARP cache still holds the old
	// MAC until overlay.InvalidateNeigh clears it (the agent does that in its
	// local containers when overlay.Sync reports the IP in Stats.Remapped).
	c2.remove(t)
	reused := hosts[2].addContainer(outliving{t, top}, "c2r", meshNet, c2.ip)
	now := []*ctr{c1, ctrs[2], reused}
	st, err := overlay.Sync(h1.nl, vx, remoteOf(h1, meshNet, now))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Remapped, []netip.Addr{c2.ip}) {
		t.Fatalf("Remapped = %v, want [%s]", st.Remapped, c2.ip)
	}
	syncAll(t, hosts, meshNet, now)
	cnl, err := overlay.NewHandle(nsHandle(t, c1.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer cnl.Close()
	if err := overlay.InvalidateNeigh(cnl, "eth0", st.Remapped); err != nil {
		t.Fatal(err)
	}
	if err := ping(c1, reused.ip); err != nil {
		t.Fatal(err)
	}
	x.ctrs = now
}

func (x *threeHosts) watcher(t *testing.T) {
	ctrs, c1, h1, vx := x.ctrs, x.c1, x.h1, x.vx
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := overlay.NewWatcher(h1.NsHandle(t), vx)
	go w.Run(ctx)
	// The first signal says "subscribed; resync".
	waitSignal(t, w.C(), "initial resync")
	peer := ctrs[2]
	h1.MustRun(t, "bridge", "fdb", "del", peer.mac.String(), "dev", vx, "dst", peer.host.local.String(), "self")
	waitSignal(t, w.C(), "fdb entry deleted by hand")
	// Through the watcher's mirror: the first Sync reads the kernel.
	k := &countDumps{Netlink: h1.nl}
	st, err := overlay.SyncWith(k, vx, remoteOf(h1, meshNet, ctrs), w.Mirror())
	if err != nil || st.Added != 1 || k.dumps == 0 {
		t.Fatalf("%s, %v, %d dumps; want the entry added back after a read", st, err, k.dumps)
	}
	// The notifications of its own write are explained: the next Sync
	// trusts the mirror and reads nothing.
	nstest.Eventually(t, 5*time.Second, func() error {
		k.dumps = 0
		st, err := overlay.SyncWith(k, vx, remoteOf(h1, meshNet, ctrs), w.Mirror())
		if err != nil || st.Changed() || k.dumps != 0 {
			return fmt.Errorf("%s, %v, %d dumps; want nothing done, no read", st, err, k.dumps)
		}
		return nil
	})
	if err := ping(c1, peer.ip); err != nil {
		out, _ := h1.Run("bridge", "fdb", "show")
		out2, _ := nstest.RunIn(c1.ns, "ip", "neigh")
		out3, _ := peer.host.Run("bridge", "fdb", "show")
		out4, _ := h1.Run("ip", "neigh", "show", "dev", vx)
		t.Fatalf("%v\nh1 fdb:\n%s\nc1 neigh:\n%s\npeer host fdb:\n%s\nh1 vx neigh:\n%s\npeer %s %s on %s", err, out, out2, out3, out4, peer.ip, peer.mac, peer.host.Name)
	}
	h1.MustRun(t, "ip", "neigh", "del", peer.ip.String(), "dev", vx)
	waitSignal(t, w.C(), "neighbour entry deleted by hand")
	// Drift the mirror did not explain: read again and repaired.
	k.dumps = 0
	if st, err := overlay.SyncWith(k, vx, remoteOf(h1, meshNet, ctrs), w.Mirror()); err != nil || st.Added != 1 || k.dumps == 0 {
		t.Fatalf("%s, %v, %d dumps; want the neighbour added back after a read", st, err, k.dumps)
	}
	h1.MustRun(t, "ip", "neigh", "del", peer.ip.String(), "dev", vx)
	waitSignal(t, w.C(), "neighbour entry deleted by hand again")
	h1.MustRun(t, "ip", "link", "set", vx, "down")
	waitSignal(t, w.C(), "device set down by hand")
	if changed, err := overlay.EnsureDevice(h1.nl, h1.devs[meshNet.name]); err != nil || !changed {
		t.Fatalf("overlay.EnsureDevice after down: changed %v, %v", changed, err)
	}
	// A device that goes down loses its neighbour entries (FDB entries
	// stay): both remote neighbours come back.
	if st, err := overlay.Sync(h1.nl, vx, remoteOf(h1, meshNet, ctrs)); err != nil || st.Added != 2 || st.Unchanged != 4 {
		t.Fatalf("%s, %v; want both neighbours added back", st, err)
	}
	if err := ping(c1, peer.ip); err != nil {
		t.Fatal(err)
	}
}

// countDumps counts the neighbour dumps made through it.
type countDumps struct {
	overlay.Netlink
	dumps int
}

func (c *countDumps) NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	c.dumps++
	return c.Netlink.NeighListExecute(msg)
}

func waitSignal(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("watcher did not signal within 10s: %s", what)
	}
}

// dumpAll lists every FDB and neighbour entry in the host's namespace as
// text, sorted, whoever made it.
func dumpAll(t *testing.T, h *ovHost) []string {
	t.Helper()
	names := map[int]string{}
	links, err := h.nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []string
	for _, fam := range []int{unix.AF_BRIDGE, unix.AF_INET, unix.AF_INET6} {
		list, err := h.nl.NeighListExecute(netlink.Ndmsg{Family: uint8(fam)})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list {
			state := "permanent"
			if n.State&netlink.NUD_PERMANENT == 0 {
				continue // learned entries come and go with traffic
			}
			if fam == unix.AF_BRIDGE {
				s := fmt.Sprintf("fdb %s", n.HardwareAddr)
				if n.IP != nil {
					s += " dst " + n.IP.String()
				}
				if n.Flags&netlink.NTF_SELF != 0 {
					s += " self"
				}
				if n.MasterIndex != 0 {
					s += " master " + names[n.MasterIndex]
				}
				if n.Vlan != 0 {
					s += fmt.Sprintf(" vlan %d", n.Vlan)
				}
				out = append(out, s+" "+state+" on "+names[n.LinkIndex])
				continue
			}
			out = append(out, fmt.Sprintf("neigh %s lladdr %s %s on %s", n.IP, n.HardwareAddr, state, names[n.LinkIndex]))
		}
	}
	slices.Sort(out)
	return out
}

// without returns the entries of a not in b, with the " on DEV" suffix cut.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s[:strings.LastIndex(s, " on ")])
		}
	}
	slices.Sort(out)
	return out
}

// TestOverlayIPv6UnderlayAndIsolation runs two overlay networks between two
// hosts over an IPv6 underlay: traffic crosses (MTU 1500-70), and a frame
// sent on one VNI never reaches the other network, even when the sending
// host is (wrongly) told the other network's endpoint is on its own.
func TestOverlayIPv6UnderlayAndIsolation(t *testing.T) {
	nstest.RequireTool(t, "ping", "nsenter")
	tp := nstest.New(t, nstest.Options{Hosts: 2, IPv6: true})
	var hosts []*ovHost
	for _, h := range tp.Hosts {
		oh := newOvHost(t, h, true)
		oh.addNetwork(t, meshNet)
		oh.addNetwork(t, isoNet)
		hosts = append(hosts, oh)
	}
	h1, h2 := hosts[0], hosts[1]
	c1 := h1.addContainer(t, "c1", meshNet, netip.MustParseAddr("10.200.1.10"))
	c2 := h2.addContainer(t, "c2", meshNet, netip.MustParseAddr("10.200.2.10"))
	d1 := h1.addContainer(t, "d1", isoNet, netip.MustParseAddr("10.200.1.20"))
	d2 := h2.addContainer(t, "d2", isoNet, netip.MustParseAddr("10.200.2.20"))
	ctrs := []*ctr{c1, c2, d1, d2}
	syncAll(t, hosts, meshNet, ctrs)
	syncAll(t, hosts, isoNet, ctrs)

	l, err := h1.nl.LinkByName(h1.devs[meshNet.name].LinkName())
	if err != nil {
		t.Fatal(err)
	}
	if vx := l.(*netlink.Vxlan); vx.MTU != 1430 || !net.IP(h1.local.AsSlice()).Equal(vx.SrcAddr) {
		t.Fatalf("vxlan over ipv6: mtu %d (want 1430), local %s (want %s)", vx.MTU, vx.SrcAddr, h1.local)
	}
	state, err := overlay.ReadState(h1.nl, h1.devs[meshNet.name].LinkName())
	if err != nil || len(state.FDB) != 2 || state.FDB[0].VTEP != h2.local {
		t.Fatalf("fdb over ipv6: %v, %v", state.FDB, err)
	}

	for _, pair := range [][2]*ctr{{c1, c2}, {c2, c1}, {d1, d2}, {d2, d1}} {
		if err := ping(pair[0], pair[1].ip); err != nil {
			t.Error(err)
		}
	}
	payload := make([]byte, 2<<20)
	rand.Read(payload)
	srv := nstest.ServeEcho(t, c2.ns, "tcp", netip.AddrPortFrom(c2.ip, 0).String())
	if got, err := nstest.Dial(c1.ns, "tcp", srv, payload, 20*time.Second); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("tcp over the ipv6 underlay: %d of %d bytes back, %v", len(got), len(payload), err)
	}

	// Tell h1's mesh device that d2 (on iso) is a mesh endpoint on h2.
	wrong := append(remoteOf(h1, meshNet, ctrs), d2.entry())
	if _, err := overlay.Sync(h1.nl, h1.devs[meshNet.name].LinkName(), wrong); err != nil {
		t.Fatal(err)
	}
	if err := pingFails(c1, d2.ip); err != nil {
		t.Fatalf("vni 4200 reached a vni 4201 endpoint: %v", err)
	}
	if err := pingFails(c1, d1.ip); err != nil {
		t.Fatalf("mesh reached iso on the same host: %v", err)
	}
	if err := ping(d1, d2.ip); err != nil {
		t.Fatal(err)
	}
}
