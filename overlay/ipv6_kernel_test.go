package overlay_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nstest"
	"github.com/vxmesh/vxmesh/overlay"
)

// subnet6 is the IPv6 subnet the dual-stack tests give mesh6.
var (
	mesh6Net = ovNet{name: "mesh6", vni: 4260, subnet: netip.MustParsePrefix("10.206.0.0/16")}
	subnet6  = netip.MustParsePrefix("fd00:206::/64")
)

// addIPv6 gives a container of the dual-stack testbed its IPv6 address
// (NODAD, as the agent adds them: usable at once) and a default route via
// the network's IPv6 gateway, and puts that gateway on the host's bridge.
func addIPv6(t *testing.T, c *ctr, ip netip.Addr) {
	t.Helper()
	ch, err := netlink.NewHandleAt(nsHandle(t, c.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	l, err := ch.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ip, subnet6.Bits())), Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatalf("add %s in %s: %v", ip, c.name, err)
	}
	gw := subnet6.Addr().Next()
	if err := ch.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route6 in %s: %v", c.name, err)
	}
}

// neighOf returns the link-layer address ns holds for ip on eth0, nil
// without a usable entry.
func neighOf(t *testing.T, ns string, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	h, err := netlink.NewHandleAt(nsHandle(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	list, err := h.NeighList(0, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		a, _ := netip.AddrFromSlice(n.IP)
		if a == ip && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
			return n.HardwareAddr
		}
	}
	return nil
}

// TestOverlayDualStack programs IPv4 and IPv6 endpoints as overlay.Entry
// values through overlay.Sync, over an IPv4 underlay (IPv6 overlay on
// IPv4) and an IPv6 one (IPv4 overlay on IPv6): both families cross, the
// VXLAN device holds permanent IPv6 neighbour entries, and its proxy flag
// answers neighbour solicitations for a remote endpoint that is silent.
func TestOverlayDualStack(t *testing.T) {
	nstest.RequireTool(t, "ping", "nsenter")
	for _, underlay6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("underlay-ipv6=%v", underlay6), func(t *testing.T) {
			tp := nstest.New(t, nstest.Options{Hosts: 2, IPv6: true})
			var hosts []*ovHost
			for _, h := range tp.Hosts {
				oh := newOvHost(t, h, underlay6)
				oh.addNetwork(t, mesh6Net)
				hosts = append(hosts, oh)
			}
			h1, h2 := hosts[0], hosts[1]
			c1 := h1.addContainer(t, "c1", mesh6Net, netip.MustParseAddr("10.206.1.10"))
			c2 := h2.addContainer(t, "c2", mesh6Net, netip.MustParseAddr("10.206.2.10"))
			c3 := h2.addContainerMAC(t, "c3", mesh6Net, netip.MustParseAddr("10.206.2.11"), overlay.NewMAC(), false)
			ip6 := map[*ctr]netip.Addr{
				c1: netip.MustParseAddr("fd00:206::1:10"),
				c2: netip.MustParseAddr("fd00:206::2:10"),
				c3: netip.MustParseAddr("fd00:206::2:11"),
			}
			for c, a := range ip6 {
				addIPv6(t, c, a)
			}
			// The shared IPv6 gateway on every host's bridge, which has no
			// link-local address (addrgenmode none): NODAD, as the agent adds it.
			for _, h := range hosts {
				br, err := h.nl.LinkByName("vxb-" + mesh6Net.name)
				if err != nil {
					t.Fatal(err)
				}
				gw := netip.PrefixFrom(subnet6.Addr().Next(), subnet6.Bits())
				if err := h.nl.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(gw), Flags: unix.IFA_F_NODAD}); err != nil {
					t.Fatal(err)
				}
			}
			// The agent's part: one entry per family per remote endpoint.
			for _, h := range hosts {
				var entries []overlay.Entry
				for _, c := range []*ctr{c1, c2, c3} {
					if c.host != h {
						entries = append(entries, c.entry(), overlay.Entry{IP: ip6[c], MAC: c.mac, VTEP: c.host.local})
					}
				}
				if _, err := overlay.Sync(h.nl, h.devs[mesh6Net.name].LinkName(), entries); err != nil {
					t.Fatalf("sync on %s: %v", h.Name, err)
				}
				// A second sync changes nothing: IPv6 entries read back equal.
				if st, err := overlay.Sync(h.nl, h.devs[mesh6Net.name].LinkName(), entries); err != nil || st.Added+st.Updated+st.Deleted != 0 || st.Conflicts != 0 {
					t.Fatalf("second sync on %s: %+v, %v", h.Name, st, err)
				}
			}
			vx, err := h1.nl.LinkByName(h1.devs[mesh6Net.name].LinkName())
			if err != nil {
				t.Fatal(err)
			}
			neighs, err := h1.nl.NeighList(vx.Attrs().Index, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			perm := 0
			for _, n := range neighs {
				if n.State&netlink.NUD_PERMANENT != 0 {
					perm++
				}
			}
			if perm != 2 {
				t.Errorf("h1's VXLAN device has %d permanent IPv6 neighbours, want 2: %v", perm, neighs)
			}

			// Proxy: c3 goes silent (its host end down); c1 still learns its
			// MAC, which only h1's VXLAN device can have told it.
			l3, err := h2.nl.LinkByName(c3.hostIf)
			if err != nil {
				t.Fatal(err)
			}
			if err := h2.nl.LinkSetDown(l3); err != nil {
				t.Fatal(err)
			}
			_ = pingFails(c1, ip6[c3]) // sends the solicitation
			if got := neighOf(t, c1.ns, ip6[c3]); !bytes.Equal(got, c3.mac) {
				t.Errorf("c1 resolved silent c3 %s to %v, want %s (VXLAN proxy answering NS)", ip6[c3], got, c3.mac)
			}

			for _, c := range []*ctr{c1, c2} {
				if err := ping(c, subnet6.Addr().Next()); err != nil {
					t.Errorf("shared IPv6 gateway: %v", err)
				}
			}
			for _, pair := range [][2]*ctr{{c1, c2}, {c2, c1}} {
				if err := ping(pair[0], pair[1].ip); err != nil {
					t.Error(err)
				}
				if err := ping(pair[0], ip6[pair[1]]); err != nil {
					t.Error(err)
				}
			}
			payload := make([]byte, 1<<20)
			rand.Read(payload)
			srv := nstest.ServeEcho(t, c2.ns, "tcp", netip.AddrPortFrom(ip6[c2], 0).String())
			if got, err := nstest.Dial(c1.ns, "tcp", srv, payload, 20*time.Second); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("tcp over IPv6 across hosts: %d of %d bytes back, %v", len(got), len(payload), err)
			}
		})
	}
}
