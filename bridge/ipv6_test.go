package bridge

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// dualState is a dual-stack network, an IPv6-only one and a container on
// both.
func dualState() *State {
	return &State{
		Networks: []Network{
			{Name: "web", Driver: DriverBridge, Device: "br-web", Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1"), Subnet6: pfx("fd00:1::/64"), Gateway6: addr("fd00:1::1"), MTU: 1500},
			{Name: "v6", Driver: DriverBridge, Device: "br-v6", Subnet6: pfx("fd00:2::/64"), Gateway6: addr("fd00:2::1"), MTU: 1500},
		},
		Containers: []Container{
			{Name: "a", Netns: "ns-a", Interfaces: []Interface{
				{Network: "v6", IfName: "eth0", Addr6: pfx("fd00:2::2/64"), Gateway6: addr("fd00:2::1"), MTU: 1500},
				{Network: "web", IfName: "eth1", Addr: pfx("10.1.0.2/24"), Addr6: pfx("fd00:1::2/64"), Gateway: addr("10.1.0.1"), Gateway6: addr("fd00:1::1"), MTU: 1500},
			}},
		},
	}
}

// TestDualStackReconcile: bridges hold both gateways, the container both
// addresses and a default route of each family (via the first interface
// with a gateway of that family), IPv6 forwarding is switched on and
// recorded, ip6tables get the IPv6 masquerade, and a second pass changes
// nothing.
func TestDualStackReconcile(t *testing.T) {
	g := newRig(t)
	g.k.Sysctls[SysctlForward6] = "0"
	ipt6 := newFakeIPT()
	g.r.IPT6 = ipt6
	want := dualState()
	if err := g.pass(t, want).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, link string
		want     []string
	}{
		{"", "br-web", []string{"10.1.0.1/24", "fd00:1::1/64"}},
		{"", "br-v6", []string{"fd00:2::1/64"}},
		{"ns-a", "eth0", []string{"fd00:2::2/64"}},
		{"ns-a", "eth1", []string{"10.1.0.2/24", "fd00:1::2/64"}},
	} {
		l := linkByName(g.k.links(tc.ns), tc.link)
		if l == nil {
			t.Fatalf("%s:%s missing", tc.ns, tc.link)
		}
		var got []string
		for _, a := range l.Addrs {
			got = append(got, a.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:%s addresses %v, want %v", tc.ns, tc.link, got, tc.want)
		}
	}
	routes := g.k.routes("ns-a")
	if len(routes) != 2 || !slices.ContainsFunc(routes, func(r Route) bool { return r.Link == "eth1" && r.Gateway == addr("10.1.0.1") }) ||
		!slices.ContainsFunc(routes, func(r Route) bool { return r.Link == "eth0" && r.Gateway == addr("fd00:2::1") && r.IPv6 }) {
		t.Errorf("routes %+v, want 10.1.0.1 via eth1 and fd00:2::1 via eth0", routes)
	}
	if g.k.Sysctls[SysctlForward6] != "1" || g.rec.Sysctls[SysctlForward6] != "0" {
		t.Errorf("IPv6 forwarding %q recorded %q", g.k.Sysctls[SysctlForward6], g.rec.Sysctls[SysctlForward6])
	}
	post6 := strings.Join(ipt6.Chains["nat/"+ChainPostrouting], "\n")
	if !strings.Contains(post6, "-s fd00:1::/64 ! -o br-web") || !strings.Contains(post6, "-s fd00:2::/64 ! -o br-v6") || strings.Contains(post6, "10.1.0.0") {
		t.Errorf("ip6tables POSTROUTING:\n%s", post6)
	}
	post4 := strings.Join(g.ipt.Chains["nat/"+ChainPostrouting], "\n")
	if strings.Contains(post4, "fd00") || strings.Contains(post4, "br-v6") || !strings.Contains(post4, "-s 10.1.0.0/24") {
		t.Errorf("iptables POSTROUTING:\n%s", post4)
	}
	iso6 := strings.Join(ipt6.Chains["filter/"+ChainIsolation], "\n")
	if !strings.Contains(iso6, "-i br-web -o br-v6") || !strings.Contains(iso6, "-i br-v6 -o br-web") {
		t.Errorf("ip6tables isolation:\n%s", iso6)
	}
	if len(ipt6.Jumps) != len(Jumps6) {
		t.Errorf("ip6tables jumps %v", ipt6.Jumps)
	}

	g.k.announced = nil
	w, w6 := g.k.Writes(), ipt6.Writes()
	if res := g.pass(t, want); res.Changes != 0 || g.k.Writes() != w || ipt6.Writes() != w6 || len(g.k.announced) != 0 {
		t.Fatalf("second pass: %d changes, %d writes, %d ip6tables writes, announced %v", res.Changes, g.k.Writes()-w, ipt6.Writes()-w6, g.k.announced)
	}

	// The IPv6 address moves: the old one goes, the new one is announced.
	want.Containers[0].Interfaces[1].Addr6 = pfx("fd00:1::7/64")
	if err := g.pass(t, want).Err(); err != nil {
		t.Fatal(err)
	}
	if got := g.k.announced; !slices.Equal(got, []string{"ns-a:eth1 fd00:1::7"}) {
		t.Errorf("announced %v", got)
	}

	// Full cleanup puts IPv6 forwarding back and empties ip6tables.
	if err := g.pass(t, &State{RestoreSysctls: true}).Err(); err != nil {
		t.Fatal(err)
	}
	if g.k.Sysctls[SysctlForward6] != "0" || len(ipt6.Chains) != 0 || len(ipt6.Jumps) != 0 {
		t.Errorf("after cleanup: forwarding6 %q, ip6tables %v %v", g.k.Sysctls[SysctlForward6], ipt6.Chains, ipt6.Jumps)
	}
}

// TestIPv4OnlyLeavesIPv6Sysctls: without an IPv6 subnet, IPv6 forwarding is
// not touched (it changes how the host takes router advertisements).
func TestIPv4OnlyLeavesIPv6Sysctls(t *testing.T) {
	g := newRig(t)
	g.k.Sysctls[SysctlForward6] = "0"
	if err := g.pass(t, testState()).Err(); err != nil {
		t.Fatal(err)
	}
	if g.k.Sysctls[SysctlForward6] != "0" {
		t.Fatal("IPv6 forwarding switched on for IPv4-only networks")
	}
}

func TestHostsFileDualStackAndLinks(t *testing.T) {
	hosts := string(HostsFile(HostsInput{
		Hostname: "app", Name: "app",
		Addrs: []netip.Addr{addr("10.1.0.2"), addr("fd00:1::2")},
		Extra: []HostEntry{{Name: "legacy6", IP: addr("2001:db8::9")}},
		Links: []HostLink{
			{Name: "db", Alias: "database", Addrs: []netip.Addr{addr("10.1.0.3"), addr("fd00:1::3")}},
			{Name: "cache", Addrs: []netip.Addr{addr("fd00:1::4")}},
		},
	}))
	for _, w := range []string{
		"2001:db8::9\tlegacy6\n",
		"10.1.0.3\tdb database\n",
		"fd00:1::3\tdb database\n",
		"fd00:1::4\tcache\n",
		"10.1.0.2\tapp\n",
		"fd00:1::2\tapp\n",
	} {
		if !strings.Contains(hosts, w) {
			t.Errorf("hosts lacks %q:\n%s", w, hosts)
		}
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 5}
	got := unsolicitedNA(mac, addr("fd00:1::5"))
	want := []byte{
		136, 0, 0, 0, // type NA, code, checksum (kernel's)
		0x20, 0, 0, 0, // override, not solicited, not router
		0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, // target
		2, 1, 0x02, 0x42, 0, 0, 0, 5, // target link-layer address option
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("NA\n got %v\nwant %v", got, want)
	}
}

// TestPoolIPv6: the local pool serves IPv6 subnets: no broadcast address,
// the subnet-router anycast (network) address and the gateway skipped.
func TestPoolIPv6(t *testing.T) {
	p := NewPool(pfx("fd00:1::/64"), netip.Prefix{}, addr("fd00:1::1"))
	a, err := p.Allocate("a")
	if err != nil || a != addr("fd00:1::2") {
		t.Fatalf("first = %s, %v; want fd00:1::2", a, err)
	}
	if err := p.Reserve(addr("fd00:1::ffff:ffff:ffff:ffff"), "b"); err != nil {
		t.Errorf("last address of a /64 refused: %v", err)
	}
	for _, bad := range []string{"fd00:1::", "fd00:1::1", "fd00:2::5"} {
		if err := p.Reserve(addr(bad), "c"); err == nil {
			t.Errorf("reserved %s", bad)
		}
	}
	r := NewPool(pfx("fd00:1::/64"), pfx("fd00:1::1:0/126"), addr("fd00:1::1"))
	var got []string
	for range 3 {
		a, err := r.Allocate("x")
		if err != nil {
			break
		}
		got = append(got, a.String())
	}
	// IPv6 ranges have no edges kept back (that is an IPv4 .0/.255 habit).
	if !slices.Equal(got, []string{"fd00:1::1:0", "fd00:1::1:1", "fd00:1::1:2"}) {
		t.Errorf("range /126 gave %v", got)
	}
}
