package portmap

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

const (
	testBridge  = "br-pm"
	testSubnet  = "172.26.0.0/24"
	otherBridge = "br-pm2" // a second network, isolated from the first
	otherSubnet = "172.27.0.0/24"
)

var (
	gateway      = netip.MustParsePrefix("172.26.0.1/24")
	otherGateway = netip.MustParsePrefix("172.27.0.1/24")
)

// dockerHost is a host namespace set up the way bridge/ sets one up, by
// hand: two bridges with gateway addresses, containers on veths (hairpin
// on), ip_forward, and stand-ins for bridge's VXMESH-POSTROUTING and
// VXMESH-FORWARD around portmap's chains.
type dockerHost struct {
	t    *testing.T
	host *nstest.Host
	ns   netns.NsHandle
	ipt  *ipt.Runner
}

func newDockerHost(t *testing.T, h *nstest.Host) *dockerHost {
	t.Helper()
	nstest.RequireTool(t, "iptables", "iptables-restore")
	d := &dockerHost{t: t, host: h, ns: h.NsHandle(t)}
	hh := h.Handle(t)
	for name, gw := range map[string]netip.Prefix{testBridge: gateway, otherBridge: otherGateway} {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := hh.LinkAdd(br); err != nil {
			t.Fatalf("add bridge %s: %v", name, err)
		}
		if err := hh.AddrAdd(br, nlAddr(gw)); err != nil {
			t.Fatalf("add gateway address %s: %v", gw, err)
		}
		if err := hh.LinkSetUp(br); err != nil {
			t.Fatal(err)
		}
	}
	err := h.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			return fmt.Errorf("bridge-nf-call-iptables = %q, %v; want 1 (br_netfilter loaded)", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sysctls in %s: %v", h.NS, err)
	}
	if d.ipt, err = ipt.New(d.ns, false); err != nil {
		t.Fatal(err)
	}
	return d
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

// addContainer makes a container namespace with eth0 at ip on the bridge
// whose gateway prefix contains ip.
func (d *dockerHost) addContainer(role string, ip netip.Addr) string {
	t := d.t
	t.Helper()
	name := nstest.NewNetns(t, role)
	cns, err := netnsutil.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer cns.Close()
	hh := d.host.Handle(t)
	bridge, gw := testBridge, gateway
	if otherGateway.Contains(ip) {
		bridge, gw = otherBridge, otherGateway
	}
	br, err := hh.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "vh" + role, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(cns),
	}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth for %s: %v", role, err)
	}
	if err := hh.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	// A frame DNATed back to the container it came from leaves through the
	// port it entered by.
	if err := hh.LinkSetHairpin(veth, true); err != nil {
		t.Fatal(err)
	}
	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	eth0, err := ch.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.AddrAdd(eth0, nlAddr(netip.PrefixFrom(ip, 24))); err != nil {
		t.Fatal(err)
	}
	if err := ch.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	if err := ch.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.Addr().AsSlice()}); err != nil {
		t.Fatalf("add default route in %s: %v", name, err)
	}
	return name
}

// apply syncs portmap's chains for ms plus the stand-ins, as bridge/ will.
func (d *dockerHost) apply(ms []Mapping) {
	t := d.t
	t.Helper()
	nat, filter := Rules(ms)
	nat = append(nat, ipt.Chain{Name: "VXMESH-POSTROUTING", Rules: []string{
		"-s " + testSubnet + " ! -o " + testBridge + " -j MASQUERADE",
		"-s " + otherSubnet + " ! -o " + otherBridge + " -j MASQUERADE",
		"-j " + ChainHairpin,
	}})
	filter = append(filter, ipt.Chain{Name: "VXMESH-FORWARD", Rules: []string{
		"-j " + ChainPublished,
		"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		// Isolation stand-in: the networks do not reach each other, and
		// nothing else enters a bridge, so only VXMESH-PUBLISHED lets
		// DNATed traffic in.
		"-i " + testBridge + " -o " + otherBridge + " -j DROP",
		"-i " + otherBridge + " -o " + testBridge + " -j DROP",
		"-i " + testBridge + " -j ACCEPT",
		"-i " + otherBridge + " -j ACCEPT",
		"-o " + testBridge + " -j DROP",
		"-o " + otherBridge + " -j DROP",
	}})
	if _, err := d.ipt.SyncChains("nat", nat); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ipt.SyncChains("filter", filter); err != nil {
		t.Fatal(err)
	}
	jumps := append(Jumps(),
		ipt.Jump{Table: "nat", From: "POSTROUTING", Rule: "-j VXMESH-POSTROUTING"},
		ipt.Jump{Table: "filter", From: "FORWARD", Rule: "-j VXMESH-FORWARD"})
	for _, j := range jumps {
		if _, err := d.ipt.EnsureJump(j); err != nil {
			t.Fatal(err)
		}
	}
}

// checkChains asserts that the kernel holds exactly Rules(ms), as written,
// and that syncing them again from a fresh Runner (which knows no
// non-canonical spellings) writes nothing.
func (d *dockerHost) checkChains(ms []Mapping) {
	t := d.t
	t.Helper()
	nat, filter := Rules(ms)
	for table, chains := range map[string][]ipt.Chain{"nat": nat, "filter": filter} {
		for _, c := range chains {
			got, err := d.ipt.Rules(table, c.Name)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, r := range c.Rules {
				want = append(want, "-A "+c.Name+" "+r)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s reads back as\n%s\nwant\n%s", table, c.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		fresh, err := ipt.New(d.ns, false)
		if err != nil {
			t.Fatal(err)
		}
		if changed, err := fresh.SyncChains(table, chains); err != nil || changed {
			t.Errorf("second sync of %s = %v, %v; want no change", table, changed, err)
		}
	}
}

func attach(ip netip.Addr) []Attachment {
	return []Attachment{{Network: "pm", Driver: config.DriverBridge, Bridge: testBridge, IP: ip}}
}

// answer dials to from ns until the server answers (it answers with the
// peer address it saw) or the deadline passes.
func answer(t *testing.T, ns, network string, to netip.AddrPort) string {
	t.Helper()
	var out string
	nstest.Eventually(t, 5*time.Second, func() error {
		b, err := nstest.Dial(ns, network, to, []byte("hello"), time.Second)
		if err != nil {
			return err
		}
		out = string(b)
		return nil
	})
	return out
}

// publishRun is TestPublishInKernel's lab: a Docker-like host with three
// containers (two on the published network) and a client host.
type publishRun struct {
	d          *dockerHost
	h1, client *nstest.Host
	other      netip.Addr // a second host address
	c1, c2, c3 string     // container namespaces
	c1IP, c2IP netip.Addr
	cs         []Container
	res        Result
	pAll       netip.AddrPort // where -P published c2's port 90
}

func TestPublishInKernel(t *testing.T) {
	p := newPublishRun(t)
	p.checkFormat(t)
	p.checkReachable(t)
	t.Run("IP-bound mappings answer on their address only", p.ipBoundOnly)
	t.Run("loopback is not published", p.noLoopback)
	t.Run("networks stay isolated apart from published ports", p.isolated)
	t.Run("publishing opens no direct route to the container", p.noDirectRoute)
	t.Run("conflicts are refused", p.conflicts)
	t.Run("restart keeps random ports", p.restartKeeps)
	t.Run("changing a mapping moves the traffic and leaves no old rule", p.moveMapping)
}

func newPublishRun(t *testing.T) *publishRun {
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	p := &publishRun{h1: tp.Hosts[0], client: tp.Hosts[1]}
	h1 := p.h1
	d := newDockerHost(t, h1)
	p.d = d

	// A second host address, to see IP-bound mappings answer only on theirs.
	other := netip.MustParseAddr("198.18.1.1")
	p.other = other
	hh := h1.Handle(t)
	ul, err := hh.LinkByName(h1.Link)
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.AddrAdd(ul, nlAddr(netip.PrefixFrom(other, 16))); err != nil {
		t.Fatal(err)
	}

	c1IP, c2IP := netip.MustParseAddr("172.26.0.2"), netip.MustParseAddr("172.26.0.3")
	p.c1IP, p.c2IP = c1IP, c2IP
	c1 := d.addContainer("c1", c1IP)
	c2 := d.addContainer("c2", c2IP)
	c3 := d.addContainer("c3", netip.MustParseAddr("172.27.0.2")) // on the other network
	p.c1, p.c2, p.c3 = c1, c2, c3
	// Each container port is served in one container only, so an answer on
	// it says which container the mapping led to.
	for _, s := range []struct{ ns, network, addr string }{
		{c1, "tcp", ":80"}, {c1, "tcp", ":81"}, {c1, "udp", ":53"}, {c1, "udp", ":54"},
		{c1, "tcp", ":7000"}, {c1, "tcp", ":7001"}, {c1, "tcp", ":7002"},
		{c2, "tcp", ":90"}, {c2, "udp", ":91"},
	} {
		nstest.ServeWho(t, s.ns, s.network, s.addr)
	}

	cs := []Container{
		{Name: "c1", Networks: attach(c1IP), Publish: specs(t,
			"80", "8080:81", "198.18.0.1::80", "198.18.0.1:8081:81", "5353:53/udp", "54/udp", "7000-7002:7000-7002")},
		{Name: "c2", Networks: attach(c2IP), Publish: specs(t, "9091:91/udp"),
			PublishAll: true, Expose: []config.ExposeSpec{{Ports: config.PortRange{Start: 90, End: 90}, Proto: "tcp"}}},
	}
	socks, err := ListeningSockets(d.ns)
	if err != nil {
		t.Fatal(err)
	}
	local, err := LocalAddrs(d.ns)
	if err != nil || !slices.Contains(local, other) || !slices.Contains(local, gateway.Addr()) {
		t.Fatalf("LocalAddrs = %v, %v", local, err)
	}
	alloc := Allocator{Sockets: socks, PIDOf: PIDOfInode, LocalAddrs: local}
	res := alloc.Allocate(cs)
	p.cs, p.res = cs, res
	if len(res.Errors) != 0 {
		t.Fatalf("allocate: %v", res.Errors)
	}
	d.apply(res.Mappings)
	d.checkChains(res.Mappings)

	return p
}

// checkFormat checks what `vxmesh port` shows, and finds the -P port.
func (p *publishRun) checkFormat(t *testing.T) {
	res := p.res
	lines, err := Format(res.For("c1"), "")
	if err != nil {
		t.Fatal(err)
	}
	wantLines := []string{
		"53/udp -> 0.0.0.0:5353",
		"54/udp -> 0.0.0.0:32768",
		"80/tcp -> 0.0.0.0:32768",
		"80/tcp -> 198.18.0.1:32769",
		"81/tcp -> 0.0.0.0:8080",
		"81/tcp -> 198.18.0.1:8081",
		"7000/tcp -> 0.0.0.0:7000",
		"7001/tcp -> 0.0.0.0:7001",
		"7002/tcp -> 0.0.0.0:7002",
	}
	if !slices.Equal(lines, wantLines) {
		t.Fatalf("port c1:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
	// The -P port is the one `vxmesh port c2 90` shows.
	p90, err := Format(res.For("c2"), "90")
	if err != nil || len(p90) != 1 {
		t.Fatalf("port c2 90 = %q, %v", p90, err)
	}
	pAll, err := netip.ParseAddrPort(p90[0])
	if err != nil {
		t.Fatal(err)
	}
	p.pAll = pAll
}

func (p *publishRun) hostAt(port uint16) netip.AddrPort { return netip.AddrPortFrom(p.h1.Addr, port) }

// checkReachable reaches every mapping from everywhere it should answer,
// and checks the peer address the container saw.
func (p *publishRun) checkReachable(t *testing.T) {
	h1, client, other, c1, c2, c3, c2IP, pAll, hostAt := p.h1, p.client, p.other, p.c1, p.c2, p.c3, p.c2IP, p.pAll, p.hostAt
	cases := []struct {
		name, ns, network string
		to                netip.AddrPort
		peer              string // prefix of the peer address the container saw
	}{
		{"client CPORT", client.NS, "tcp", hostAt(32768), client.Addr.String() + ":"},
		{"client HPORT:CPORT", client.NS, "tcp", hostAt(8080), client.Addr.String() + ":"},
		{"client HPORT:CPORT other address", client.NS, "tcp", netip.AddrPortFrom(other, 8080), client.Addr.String() + ":"},
		{"client IP::CPORT", client.NS, "tcp", hostAt(32769), client.Addr.String() + ":"},
		{"client IP:HPORT:CPORT", client.NS, "tcp", hostAt(8081), client.Addr.String() + ":"},
		{"client HPORT:CPORT/udp", client.NS, "udp", hostAt(5353), client.Addr.String() + ":"},
		{"client CPORT/udp", client.NS, "udp", hostAt(32768), client.Addr.String() + ":"},
		{"client range 7000", client.NS, "tcp", hostAt(7000), client.Addr.String() + ":"},
		{"client range 7001", client.NS, "tcp", hostAt(7001), client.Addr.String() + ":"},
		{"client range 7002", client.NS, "tcp", hostAt(7002), client.Addr.String() + ":"},
		{"client -P", client.NS, "tcp", hostAt(pAll.Port()), client.Addr.String() + ":"},
		{"client c2 udp", client.NS, "udp", hostAt(9091), client.Addr.String() + ":"},
		{"host itself tcp", h1.NS, "tcp", hostAt(8080), h1.Addr.String() + ":"},
		{"host itself udp", h1.NS, "udp", hostAt(5353), h1.Addr.String() + ":"},
		{"host itself IP-bound", h1.NS, "tcp", hostAt(8081), h1.Addr.String() + ":"},
		{"other container tcp", c2, "tcp", hostAt(8080), c2IP.String() + ":"},
		{"other container udp", c2, "udp", hostAt(5353), c2IP.String() + ":"},
		// Masqueraded by its own network's outbound rule, as it leaves that bridge.
		{"container on another network", c3, "tcp", hostAt(8080), gateway.Addr().String() + ":"},
		{"container on another network udp", c3, "udp", hostAt(5353), gateway.Addr().String() + ":"},
		{"own port tcp (hairpin)", c1, "tcp", hostAt(32768), gateway.Addr().String() + ":"},
		{"own port udp (hairpin)", c1, "udp", hostAt(5353), gateway.Addr().String() + ":"},
		{"own port via gateway address", c1, "tcp", netip.AddrPortFrom(gateway.Addr(), 8080), gateway.Addr().String() + ":"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := answer(t, tc.ns, tc.network, tc.to); !strings.HasPrefix(got, tc.peer) {
				t.Fatalf("%s %s from %s: container saw peer %q, want %s…", tc.network, tc.to, tc.ns, got, tc.peer)
			}
		})
	}
}

// ipBoundOnly checks that IP-bound mappings answer on their address only.
func (p *publishRun) ipBoundOnly(t *testing.T) {
	h1, client, other := p.h1, p.client, p.other
	for _, port := range []uint16{32769, 8081} {
		to := netip.AddrPortFrom(other, port)
		if b, err := nstest.Dial(client.NS, "tcp", to, []byte("x"), 2*time.Second); err == nil {
			t.Errorf("tcp %s answered %q; the mapping is bound to %s", to, b, h1.Addr)
		}
	}
}

// noLoopback checks that loopback is not published.
func (p *publishRun) noLoopback(t *testing.T) {
	h1 := p.h1
	// The OUTPUT jump skips 127.0.0.0/8: see docs/ports.md.
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 8080)
	if b, err := nstest.Dial(h1.NS, "tcp", to, []byte("x"), 2*time.Second); err == nil {
		t.Errorf("tcp %s answered %q on the host", to, b)
	}
}

// isolated checks that networks stay isolated apart from published ports.
func (p *publishRun) isolated(t *testing.T) {
	c1IP, c3 := p.c1IP, p.c3
	to := netip.AddrPortFrom(c1IP, 81)
	if b, err := nstest.Dial(c3, "tcp", to, []byte("x"), time.Second); err == nil {
		t.Errorf("tcp %s answered %q from the other network", to, b)
	}
}

// noDirectRoute checks that publishing opens no direct route to the container.
func (p *publishRun) noDirectRoute(t *testing.T) {
	h1, client, c1IP := p.h1, p.client, p.c1IP
	ch := client.Handle(t)
	_, dst, _ := net.ParseCIDR(testSubnet)
	if err := ch.RouteAdd(&netlink.Route{Dst: dst, Gw: h1.Addr.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	defer ch.RouteDel(&netlink.Route{Dst: dst, Gw: h1.Addr.AsSlice()})
	to := netip.AddrPortFrom(c1IP, 80)
	if b, err := nstest.Dial(client.NS, "tcp", to, []byte("x"), time.Second); err == nil {
		t.Errorf("tcp %s answered %q directly, without DNAT", to, b)
	}
}

// conflicts checks that conflicts are refused.
func (p *publishRun) conflicts(t *testing.T) {
	h1, d, cs, res := p.h1, p.d, p.cs, p.res
	nstest.ServeEcho(t, h1.NS, "tcp", "0.0.0.0:6000")
	socks, err := ListeningSockets(d.ns)
	if err != nil {
		t.Fatal(err)
	}
	a := Allocator{Sockets: socks, Previous: res.Assignments, PIDOf: PIDOfInode}
	bad := slices.Clone(cs)
	bad[1].Publish = specs(t, "9091:91/udp", "32768:90")
	r := a.Allocate(bad)
	want := `publish "32768:90/tcp" of container "c2": host port 32768/tcp on 0.0.0.0 is already published by container "c1"`
	if err := r.Errors["c2"]; err == nil || err.Error() != want {
		t.Errorf("c2 error = %v; want %s", err, want)
	}
	if got := r.For("c2"); len(got) != 0 {
		t.Errorf("refused c2 still has %v", got)
	}
	bad[1].Publish = specs(t, "9091:91/udp", "6000:90")
	r = a.Allocate(bad)
	want = fmt.Sprintf(`publish "6000:90/tcp" of container "c2": host port 6000/tcp on 0.0.0.0 is in use by a host process (listening on every address, pid %d, socket inode `, os.Getpid())
	if err := r.Errors["c2"]; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("c2 error = %v; want %s…", err, want)
	}

	nstest.ServeEcho(t, h1.NS, "udp", h1.Addr.String()+":6001")
	if socks, err = ListeningSockets(d.ns); err != nil {
		t.Fatal(err)
	}
	a.Sockets = socks
	bad[1].Publish = specs(t, "6001:91/udp")
	r = a.Allocate(bad)
	want = fmt.Sprintf(`publish "6001:91/udp" of container "c2": host port 6001/udp on 0.0.0.0 is in use by a host process (listening on %s:6001, pid %d, socket inode `, h1.Addr, os.Getpid())
	if err := r.Errors["c2"]; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("c2 error = %v; want %s…", err, want)
	}
}

// restartKeeps checks that a restart keeps random ports.
func (p *publishRun) restartKeeps(t *testing.T) {
	d, cs, res := p.d, p.cs, p.res
	socks, err := ListeningSockets(d.ns)
	if err != nil {
		t.Fatal(err)
	}
	a := Allocator{Sockets: socks, Previous: res.Assignments}
	again := a.Allocate([]Container{cs[1], cs[0]})
	if len(again.Errors) != 0 || !slices.Equal(again.Mappings, res.Mappings) {
		t.Fatalf("after restart:\n%v\nwant\n%v (errors %v)", again.Mappings, res.Mappings, again.Errors)
	}
}

// moveMapping checks that changing a mapping moves the traffic and leaves no old rule.
func (p *publishRun) moveMapping(t *testing.T) {
	h1, client, d, cs, res, pAll, hostAt := p.h1, p.client, p.d, p.cs, p.res, p.pAll, p.hostAt
	moved := slices.Clone(cs)
	moved[0].Publish = specs(t, "80", "198.18.0.1::80", "198.18.0.1:8081:81", "5353:53/udp", "54/udp", "7000-7002:7000-7002")
	moved[1].Publish = specs(t, "9091:91/udp", "8080:90")
	a := Allocator{Previous: res.Assignments}
	r := a.Allocate(moved)
	if len(r.Errors) != 0 {
		t.Fatal(r.Errors)
	}
	d.apply(r.Mappings)
	// c2's 90 is published explicitly now, so -P no longer adds a
	// random port for it (as Docker does).
	removed := gone(res.Mappings, r.Mappings)
	if got := fmt.Sprint(removed); got != fmt.Sprintf("[c1 81/tcp -> 0.0.0.0:8080 c2 90/tcp -> 0.0.0.0:%d]", pAll.Port()) {
		t.Fatalf("removed = %s", got)
	}
	if _, err := FlushConntrack(d.ns, removed); err != nil {
		t.Fatal(err)
	}
	d.checkChains(r.Mappings)
	for _, table := range []string{"nat", "filter"} {
		out := h1.MustRun(t, "iptables-save", "-t", table)
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "--dport 8080 ") && strings.Contains(l, "172.26.0.2") ||
				strings.Contains(l, fmt.Sprint(pAll.Port())) || strings.Contains(l, "c2 90/tcp -> 0.0.0.0:"+fmt.Sprint(pAll.Port())) {
				t.Errorf("old rule left in %s: %s", table, l)
			}
		}
	}
	if got := answer(t, client.NS, "tcp", hostAt(8080)); !strings.HasPrefix(got, client.Addr.String()+":") {
		t.Fatalf("8080 after the move: %q", got)
	}
	// Nothing of c1 moved: its random ports stayed.
	if got, want := r.For("c1")[0:2], res.For("c1")[0:2]; !slices.Equal(got, want) {
		t.Errorf("c1 ports moved: %v, were %v", got, want)
	}

	// Remove everything: the chains are empty, the jumps stay.
	d.apply(nil)
	d.checkChains(nil)
	if b, err := nstest.Dial(client.NS, "tcp", hostAt(8080), []byte("x"), 2*time.Second); err == nil {
		t.Errorf("8080 answered %q after all mappings went", b)
	}
}

// gone returns the mappings of old that are not in new.
func gone(old, new []Mapping) []Mapping {
	var out []Mapping
	for _, m := range old {
		if !slices.Contains(new, m) {
			out = append(out, m)
		}
	}
	return out
}

func TestFlushConntrackInKernel(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	h1, client := tp.Hosts[0], tp.Hosts[1]
	d := newDockerHost(t, h1)
	cIP := netip.MustParseAddr("172.26.0.2")
	c := d.addContainer("c1", cIP)
	nstest.ServeWho(t, c, "udp", ":91")

	res := Allocator{}.Allocate([]Container{{Name: "c1", Networks: attach(cIP), Publish: specs(t, "9091:91/udp")}})
	if len(res.Errors) != 0 {
		t.Fatal(res.Errors)
	}
	ms := res.Mappings
	d.apply(ms)

	// One client socket, so every datagram has the same 5-tuple: the case
	// where a stale conntrack entry decides where packets go.
	to := netip.AddrPortFrom(h1.Addr, 9091)
	var conn *net.UDPConn
	if err := netnsutil.Do(client.NS, func() error {
		var err error
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func() (string, error) {
		conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			return "", err
		}
		buf := make([]byte, 128)
		n, err := conn.Read(buf)
		return string(buf[:n]), err
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())

	nstest.Eventually(t, 5*time.Second, func() error {
		got, err := send()
		if err == nil && got != local.String() {
			return fmt.Errorf("container saw %q, want %s", got, local)
		}
		return err
	})

	hh := h1.Handle(t)
	flows := func() (mapped, unmapped int) {
		t.Helper()
		list, err := hh.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(unix.AF_INET))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range list {
			if f.Forward.Protocol != unix.IPPROTO_UDP || f.Forward.DstPort != 9091 || f.Forward.SrcPort != local.Port() {
				continue
			}
			if f.Reverse.SrcIP.Equal(cIP.AsSlice()) && f.Reverse.SrcPort == 91 {
				mapped++
			} else {
				unmapped++
			}
		}
		return
	}
	if m, _ := flows(); m != 1 {
		t.Fatalf("%d conntrack entries through the mapping; want 1", m)
	}

	// Removing the rules alone leaves the flow reaching the container.
	d.apply(nil)
	if got, err := send(); err != nil {
		t.Fatalf("without a flush the old flow should still reach the container; got %q, %v", got, err)
	}
	n, err := FlushConntrack(d.ns, ms)
	if err != nil || n != 1 {
		t.Fatalf("FlushConntrack = %d, %v; want 1 entry", n, err)
	}
	if m, _ := flows(); m != 0 {
		t.Fatalf("%d conntrack entries through the removed mapping after the flush", m)
	}
	if got, err := send(); err == nil {
		t.Fatalf("datagram reached %q after the mapping and its flows were removed", got)
	}
	if _, u := flows(); u != 1 {
		t.Fatalf("%d untranslated entries after sending to the dead port; want 1", u)
	}

	// Publishing again: the untranslated entry would keep the flow away
	// from the new DNAT rule until FlushUnmapped clears it.
	d.apply(ms)
	if got, err := send(); err == nil {
		t.Fatalf("datagram reached %q through a stale entry; the test premise is wrong", got)
	}
	if n, err := FlushUnmapped(d.ns, ms); err != nil || n != 1 {
		t.Fatalf("FlushUnmapped = %d, %v; want 1 entry", n, err)
	}
	if got, err := send(); err != nil || got != local.String() {
		t.Fatalf("after FlushUnmapped: %q, %v; want the container to answer", got, err)
	}
	// Nothing else is touched: flushing mappings of another port deletes nothing.
	other := ms[0]
	other.HostPort = 9092
	if n, err := FlushConntrack(d.ns, []Mapping{other}); err != nil || n != 0 {
		t.Fatalf("FlushConntrack of an unused mapping = %d, %v", n, err)
	}
	if m, _ := flows(); m != 1 {
		t.Fatalf("%d entries through the mapping; want 1", m)
	}
}
