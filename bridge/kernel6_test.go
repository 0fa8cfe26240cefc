package bridge

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

func iface6(net, ifname, ip, gw string) Interface {
	i := Interface{Network: net, IfName: ifname, Addr6: netip.MustParsePrefix(ip)}
	if gw != "" {
		i.Gateway6 = netip.MustParseAddr(gw)
	}
	return i
}

// TestKernelDualStack: a dual-stack network, an IPv6-only one and an
// internal IPv6-only one on the real kernel. Containers reach each other
// over IPv6 (ping and TCP) at once (no DAD wait), networks are isolated
// over IPv6, outbound IPv6 is masqueraded behind the host's IPv6 address
// unless internal, a second pass changes nothing and cleanup leaves
// ip6tables empty and IPv6 forwarding as found.
func TestKernelDualStack(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true, IPv6: true})
	h := tp.Hosts[0]
	nstest.RequireTool(t, "ping", "nsenter", "ip6tables-restore")
	g := newRealRig(t, h, t.TempDir())
	r6, err := ipt.New(h.NsHandle(t), true)
	if err != nil {
		t.Fatal(err)
	}
	g.r.IPT6 = r6
	before, _ := h.Run("cat", "/proc/sys/net/ipv6/conf/all/forwarding")
	ns := containerNetns(t, 4)
	web := iface("web", "eth0", "10.41.0.2/24", "10.41.0.1")
	web.Addr6, web.Gateway6 = pfx("fd00:41::2/64"), addr("fd00:41::1")
	web2 := iface("web", "eth0", "10.41.0.3/24", "10.41.0.1")
	web2.Addr6, web2.Gateway6 = pfx("fd00:41::3/64"), addr("fd00:41::1")
	want := &State{
		Networks: []Network{
			{Name: "web", Driver: DriverBridge, Device: "br-w6" + tp.ID[:4], Subnet: pfx("10.41.0.0/24"), Gateway: addr("10.41.0.1"), Subnet6: pfx("fd00:41::/64"), Gateway6: addr("fd00:41::1"), MTU: 1500},
			{Name: "app", Driver: DriverBridge, Device: "br-a6" + tp.ID[:4], Subnet6: pfx("fd00:42::/64"), Gateway6: addr("fd00:42::1"), MTU: 1500},
			{Name: "db", Driver: DriverBridge, Device: "br-d6" + tp.ID[:4], Subnet6: pfx("fd00:43::/64"), Gateway6: addr("fd00:43::1"), MTU: 1500, Internal: true},
		},
		Containers: []Container{
			{Name: "c1", Netns: ns[0], Interfaces: []Interface{web}},
			{Name: "c2", Netns: ns[1], Interfaces: []Interface{web2}},
			{Name: "c3", Netns: ns[2], Interfaces: []Interface{iface6("app", "eth0", "fd00:42::2/64", "fd00:42::1")}},
			{Name: "c4", Netns: ns[3], Interfaces: []Interface{iface6("db", "eth0", "fd00:43::2/64", "fd00:43::1")}},
		},
	}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{ns[0], "fd00:41::3", true}, // same network, IPv6
		{ns[0], "10.41.0.3", true},  // same network, IPv4
		{ns[0], "fd00:41::1", true}, // gateway6
		{ns[2], "fd00:42::1", true}, // IPv6-only network's gateway
		{ns[3], "fd00:43::1", true}, // internal network's gateway
		{ns[0], "fd00:42::2", false},
		{ns[2], "fd00:41::2", false},
		{ns[3], "fd00:41::2", false},
		{ns[0], "fd00:43::2", false},
		{ns[0], nstest.PublicAddr6.String(), true},
		{ns[2], nstest.PublicAddr6.String(), true},
		{ns[3], nstest.PublicAddr6.String(), false},
	} {
		err := pingFrom(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("ping %s from %s: %v, want reachable=%v", c.to, c.from, err, c.ok)
		}
	}
	// TCP over IPv6 between two containers.
	echo := nstest.ServeEcho(t, ns[1], "tcp", "[fd00:41::3]:0")
	if got, err := nstest.Dial(ns[0], "tcp", echo, []byte("hello6"), 5*time.Second); err != nil || string(got) != "hello6" {
		t.Errorf("tcp over IPv6: %q, %v", got, err)
	}
	// Masquerade: the internet sees the host's IPv6 address.
	who := nstest.ServeWho(t, tp.Internet.NS, "udp", netip.AddrPortFrom(nstest.PublicAddr6, 0).String())
	for _, from := range []string{ns[0], ns[2]} {
		got, err := nstest.Dial(from, "udp", who, []byte("hi"), 5*time.Second)
		if err != nil || !strings.HasPrefix(string(got), "["+h.Addr6.String()+"]:") {
			t.Errorf("internet saw %s as %q (%v), want masqueraded behind %s", from, got, err, h.Addr6)
		}
	}
	if _, err := nstest.Dial(ns[3], "udp", who, []byte("hi"), 500*time.Millisecond); err == nil {
		t.Error("internal IPv6 container reached the internet")
	}
	if out, _ := h.Run("cat", "/proc/sys/net/ipv6/conf/all/forwarding"); strings.TrimSpace(out) != "1" {
		t.Errorf("IPv6 forwarding in host = %q", out)
	}

	w := g.writes() + r6.Writes()
	if res := g.pass(t, want); res.Changes != 0 || g.writes()+r6.Writes() != w {
		t.Fatalf("second pass: %d changes, %d writes", res.Changes, g.writes()+r6.Writes()-w)
	}

	g.cleanup(t)
	if out, _ := h.Run("ip6tables-save"); strings.Contains(out, ChainPrefix) {
		t.Errorf("ip6tables after cleanup:\n%s", out)
	}
	if out, _ := h.Run("cat", "/proc/sys/net/ipv6/conf/all/forwarding"); out != before {
		t.Errorf("IPv6 forwarding after cleanup = %q, was %q", out, before)
	}
}

// TestKernelPublishIPv6: "8080:80" on a dual-stack network is reachable
// from another host over IPv6 ([h1]:8080) and IPv4, "[::]:9090:80" over
// IPv6 only, through the DNAT rules portmap writes into ip6tables.
func TestKernelPublishIPv6(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 2, IPv6: true})
	h1, h2 := tp.Hosts[0], tp.Hosts[1]
	nstest.RequireTool(t, "nsenter", "ip6tables-restore")
	g := newRealRig(t, h1, t.TempDir())
	r6, err := ipt.New(h1.NsHandle(t), true)
	if err != nil {
		t.Fatal(err)
	}
	g.r.IPT6 = r6
	ns := containerNetns(t, 1)
	dev := "br-p6" + tp.ID[:4]
	c1 := iface("web", "eth0", "10.51.0.2/24", "10.51.0.1")
	c1.Addr6, c1.Gateway6 = pfx("fd00:51::2/64"), addr("fd00:51::1")
	att := portmap.Attachment{Network: "web", Bridge: dev, IP: c1.Addr.Addr(), IP6: c1.Addr6.Addr()}
	specs := []config.PortSpec{}
	for _, s := range []string{"8080:80", "[::]:9090:80"} {
		p, err := config.ParsePortSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, p)
	}
	res := portmap.Allocator{}.Allocate([]portmap.Container{{Name: "c1", Networks: []portmap.Attachment{att}, Publish: specs}})
	if err := res.Errors["c1"]; err != nil {
		t.Fatal(err)
	}
	v4, v6 := portmap.SplitFamilies(res.Mappings)
	var ports PortChains
	ports.NAT, ports.Filter = portmap.Rules(v4)
	ports.NAT6, ports.Filter6 = portmap.Rules(v6)
	want := &State{
		Networks:   []Network{{Name: "web", Driver: DriverBridge, Device: dev, Subnet: pfx("10.51.0.0/24"), Gateway: addr("10.51.0.1"), Subnet6: pfx("fd00:51::/64"), Gateway6: addr("fd00:51::1"), MTU: 1500}},
		Containers: []Container{{Name: "c1", Netns: ns[0], Interfaces: []Interface{c1}}},
		Ports:      ports,
	}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	nstest.ServeEcho(t, ns[0], "tcp", "[::]:80")
	for _, c := range []struct {
		to netip.AddrPort
		ok bool
	}{
		{netip.AddrPortFrom(h1.Addr6, 8080), true},
		{netip.AddrPortFrom(h1.Addr, 8080), true},
		{netip.AddrPortFrom(h1.Addr6, 9090), true},
		{netip.AddrPortFrom(h1.Addr, 9090), false},
	} {
		timeout := 5 * time.Second
		if !c.ok {
			timeout = 500 * time.Millisecond
		}
		got, err := nstest.Dial(h2.NS, "tcp", c.to, []byte("p6"), timeout)
		if ok := err == nil && string(got) == "p6"; ok != c.ok {
			t.Errorf("from h2 to %s: %q %v, want reachable=%v", c.to, got, err, c.ok)
		}
	}
	g.cleanup(t)
}

// TestKernelAddressReuseIPv6: B goes and B' takes its IPv6 address (with
// another MAC: MACs are derived from IPv4 addresses only) while A had B's
// MAC cached; the unsolicited neighbour
// advertisement of B' makes A switch at once instead of after its
// neighbour entry's reachable time and probes.
func TestKernelAddressReuseIPv6(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	g := newRealRig(t, h, t.TempDir())
	nw := Network{Name: "v6", Driver: DriverBridge, Device: "br-r6" + tp.ID[:4], Subnet6: pfx("fd00:34::/64"), Gateway6: addr("fd00:34::1"), MTU: 1500}
	ns := containerNetns(t, 3)
	a := Container{Name: "a", Netns: ns[0], Interfaces: []Interface{iface6("v6", "eth0", "fd00:34::2/64", "fd00:34::1")}}
	b := Container{Name: "b", Netns: ns[1], Interfaces: []Interface{iface6("v6", "eth0", "fd00:34::3/64", "fd00:34::1")}}
	b2 := Container{Name: "b2", Netns: ns[2], Interfaces: []Interface{iface6("v6", "eth0", "fd00:34::3/64", "fd00:34::1")}}
	to := netip.AddrPortFrom(addr("fd00:34::3"), 7)
	t.Cleanup(func() { g.cleanup(t) })

	if res := g.pass(t, &State{Networks: []Network{nw}, Containers: []Container{a, b}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	nstest.ServeEcho(t, b.Netns, "udp", to.String())
	if _, err := reachedWithin(a.Netns, to, 5*time.Second); err != nil {
		t.Fatalf("a -> b: %v", err)
	}
	if res := g.pass(t, &State{Networks: []Network{nw}, Containers: []Container{a}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if res := g.pass(t, &State{Networks: []Network{nw}, Containers: []Container{a, b2}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	nstest.ServeEcho(t, b2.Netns, "udp", to.String())
	gap, err := reachedWithin(a.Netns, to, reuseDeadline)
	if err != nil {
		t.Fatalf("a -> b' (same IPv6 address, new netns, new MAC): %v within %v", err, reuseDeadline)
	}
	t.Logf("a reached b' %v after it was attached", gap)
}
