package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// testState is two bridge networks (one internal) and three containers.
func testState() *State {
	return &State{
		Networks: []Network{
			{Name: "web", Driver: DriverBridge, Device: "br-web", Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1"), MTU: 1500},
			{Name: "db", Driver: DriverBridge, Device: "br-db", Subnet: pfx("10.2.0.0/24"), Gateway: addr("10.2.0.1"), MTU: 1500, Internal: true},
		},
		Containers: []Container{
			{Name: "a", Netns: "ns-a", Interfaces: []Interface{
				{Network: "web", IfName: "eth0", Addr: pfx("10.1.0.2/24"), Gateway: addr("10.1.0.1"), MTU: 1500},
				{Network: "db", IfName: "eth1", Addr: pfx("10.2.0.2/24"), MTU: 1500},
			}, Files: map[string][]byte{FileHostname: []byte("a\n"), FileHosts: []byte("hosts of a\n"), FileResolv: []byte("nameserver 1.1.1.1\n")}},
			{Name: "b", Netns: "ns-b", Interfaces: []Interface{
				{Network: "web", IfName: "eth0", Addr: pfx("10.1.0.3/24"), Gateway: addr("10.1.0.1"), MTU: 1500},
			}, Files: map[string][]byte{FileHostname: []byte("b\n")}},
			{Name: "c", Netns: "ns-c", Files: map[string][]byte{FileHostname: []byte("c\n")}},
		},
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type rig struct {
	k   *fakeKernel
	ipt *fakeIPT
	r   *Reconciler
	rec Record
}

func newRig(t *testing.T, hostLinks ...Link) *rig {
	t.Helper()
	k := newFakeKernel(hostLinks...)
	f := newFakeIPT()
	return &rig{k: k, ipt: f, r: &Reconciler{Kernel: k, IPT: f, Planner: Planner{EtcNetns: t.TempDir()}, Log: quiet}}
}

// pass runs one reconcile and keeps the record.
func (g *rig) pass(t *testing.T, want *State) *Result {
	t.Helper()
	res, err := g.r.Reconcile(context.Background(), want, g.rec)
	if res != nil {
		g.rec = res.Record
	}
	if err != nil {
		t.Logf("reconcile: %v", err)
	}
	return res
}

func (g *rig) plan(t *testing.T, want *State) *Plan {
	t.Helper()
	have, err := g.r.Read(want, g.rec)
	if err != nil {
		t.Fatal(err)
	}
	return g.r.Planner.Plan(want, have, g.rec)
}

func kinds(ops []Op) []string {
	var out []string
	for _, o := range ops {
		out = append(out, strings.TrimSpace(string(o.Kind)+" "+strings.TrimSuffix(where(o.Netns, o.Link), ":")))
	}
	return out
}

func TestPlanFromScratch(t *testing.T) {
	g := newRig(t)
	want := testState()
	p := g.plan(t, want)
	got := kinds(p.Changes())
	wantOps := []string{
		"set sysctl",
		"add bridge br-web", "add address br-web",
		"add bridge br-db", "add address br-db",
		"create netns ns-a",
		"add veth ns-a:" + HostVethName("ns-a", "web"), "add address ns-a:eth0", "set up ns-a:eth0",
		"add veth ns-a:" + HostVethName("ns-a", "db"), "add address ns-a:eth1", "set up ns-a:eth1",
		"set default route ns-a:eth0",
		"write file ns-a", "write file ns-a", "write file ns-a",
		"create netns ns-b",
		"add veth ns-b:" + HostVethName("ns-b", "web"), "add address ns-b:eth0", "set up ns-b:eth0",
		"set default route ns-b:eth0",
		"write file ns-b",
		"create netns ns-c",
		"write file ns-c",
	}
	if !slices.Equal(got, wantOps) {
		t.Fatalf("plan:\n%s\nwant ops:\n%s", p, strings.Join(wantOps, "\n"))
	}
	if len(p.ContainerErrors)+len(p.NetworkErrors) != 0 {
		t.Fatalf("errors: %v %v", p.ContainerErrors, p.NetworkErrors)
	}
}

func TestReconcileIdempotentAndAdopts(t *testing.T) {
	g := newRig(t)
	want := testState()
	res := g.pass(t, want)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Changes == 0 {
		t.Fatal("first pass changed nothing")
	}
	if !g.k.fwd() || g.rec.Sysctls[SysctlForward] != "0" {
		t.Fatal("ip_forward not switched on and recorded")
	}
	if !slices.Equal(g.rec.CreatedNetns, []string{"ns-a", "ns-b", "ns-c"}) {
		t.Fatalf("created netns = %v", g.rec.CreatedNetns)
	}
	if len(g.rec.MACs) != 3 {
		t.Fatalf("recorded MACs = %v, want 3", g.rec.MACs)
	}
	// The route, addresses and files are where they should be.
	if routes := g.k.routes("ns-a"); len(routes) != 1 || routes[0] != (Route{Link: "eth0", Gateway: addr("10.1.0.1")}) {
		t.Fatalf("routes of ns-a = %v", routes)
	}
	b, err := os.ReadFile(filepath.Join(g.r.EtcNetns, "ns-a", FileHosts))
	if err != nil || string(b) != "hosts of a\n" {
		t.Fatalf("hosts file = %q, %v", b, err)
	}

	kw, iw := g.k.Writes(), g.ipt.Writes()
	for i := range 2 {
		if p := g.plan(t, want); len(p.Changes()) != 0 {
			t.Fatalf("pass %d plan not empty:\n%s", i+2, p)
		}
		res = g.pass(t, want)
		if res.Changes != 0 || g.k.Writes() != kw || g.ipt.Writes() != iw {
			t.Fatalf("pass %d: %d changes, kernel writes %d -> %d, iptables writes %d -> %d", i+2, res.Changes, kw, g.k.Writes(), iw, g.ipt.Writes())
		}
	}

	// A new reconciler (an agent restart) with the same record adopts it all.
	g.r = &Reconciler{Kernel: g.k, IPT: g.ipt, Planner: g.r.Planner, Log: quiet}
	if p := g.plan(t, want); len(p.Changes()) != 0 {
		t.Fatalf("restart plan not empty:\n%s", p)
	}
	// Without the MAC record too: the MACs are read back from the kernel.
	rec := g.rec
	g.rec.MACs = nil
	if res := g.pass(t, want); res.Changes != 0 || len(res.Record.MACs) != 3 || res.Record.MACs[MACKey("ns-a", "web")] != rec.MACs[MACKey("ns-a", "web")] {
		t.Fatalf("restart without MACs: %d changes, MACs %v, want %v", res.Changes, res.Record.MACs, rec.MACs)
	}
}

func TestRemoveContainerAndNetwork(t *testing.T) {
	g := newRig(t)
	want := testState()
	g.pass(t, want)
	hostA := HostVethName("ns-a", "web")

	// a leaves, b moves from web to db.
	want.Containers = []Container{
		{Name: "b", Netns: "ns-b", Interfaces: []Interface{{Network: "db", IfName: "eth0", Addr: pfx("10.2.0.3/24"), Gateway: addr("10.2.0.1")}}},
		want.Containers[2],
	}
	res := g.pass(t, want)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if g.k.NS("ns-a") != nil {
		t.Fatal("netns ns-a survived its container")
	}
	if l := g.k.link("", hostA); l != nil {
		t.Fatalf("veth %s survived its container", hostA)
	}
	if _, err := os.Stat(filepath.Join(g.r.EtcNetns, "ns-a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("files of ns-a survived: %v", err)
	}
	if slices.Contains(g.rec.Namespaces, "ns-a") || slices.Contains(g.rec.CreatedNetns, "ns-a") {
		t.Fatalf("record still has ns-a: %+v", g.rec)
	}
	eth0 := g.k.link("ns-b", "eth0")
	if eth0 == nil || eth0.Alias != ContainerAlias("b", "db") || !slices.Equal(eth0.Addrs, []netip.Prefix{pfx("10.2.0.3/24")}) {
		t.Fatalf("ns-b eth0 = %+v", eth0)
	}
	if l := g.k.link("", HostVethName("ns-b", "web")); l != nil {
		t.Fatal("b's web veth survived")
	}
	if r := g.k.routes("ns-b"); len(r) != 1 || r[0].Gateway != addr("10.2.0.1") {
		t.Fatalf("ns-b routes = %v", r)
	}

	// Drop the web network: its bridge goes, the firewall follows.
	want.Networks = want.Networks[1:]
	g.pass(t, want)
	if l := g.k.link("", "br-web"); l != nil {
		t.Fatal("br-web survived its network")
	}
	if rules := g.ipt.Chains["nat/"+ChainPostrouting]; len(rules) != 1 {
		t.Fatalf("POSTROUTING after dropping web = %q (db is internal: hairpin jump only)", rules)
	}
	if p := g.plan(t, want); len(p.Changes()) != 0 {
		t.Fatalf("plan after removals not empty:\n%s", p)
	}
}

func TestCleanupRemovesOnlyOurs(t *testing.T) {
	// A foreign bridge, an adopted namespace with a foreign link and a
	// foreign file: cleanup leaves them all.
	g := newRig(t, Link{Name: "docker0", Kind: "bridge", Up: true}, Link{Name: "eth9", Kind: "veth", Alias: "someone else"})
	g.k.setNS("mine", Link{Name: "lo", Index: 1, Kind: "device", Up: true}, Link{Name: "tap0", Index: 7, Kind: "tun"})
	want := testState()
	want.Containers[1].Netns = "mine"
	g.pass(t, want)
	if slices.Contains(g.rec.CreatedNetns, "mine") {
		t.Fatal("adopted namespace recorded as created")
	}
	foreign := filepath.Join(g.r.EtcNetns, "mine", "nsswitch.conf")
	if err := os.WriteFile(foreign, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := g.r.Cleanup(context.Background(), g.rec)
	if err != nil {
		t.Fatal(err)
	}
	g.rec = res.Record
	var names []string
	for _, l := range g.k.links("") {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"docker0", "eth9", "lo"}) {
		t.Fatalf("host links after cleanup = %v", names)
	}
	if nss := g.k.Namespaces(); !slices.Equal(nss, []string{"mine"}) {
		t.Fatalf("namespaces after cleanup = %v", nss)
	}
	if l := g.k.links("mine"); len(l) != 2 {
		t.Fatalf("links left in adopted netns = %v, want lo and tap0", l)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("foreign file removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(g.r.EtcNetns, "mine", FileHostname)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("our file left: %v", err)
	}
	if len(g.ipt.Chains) != 0 || len(g.ipt.Jumps) != 0 {
		t.Fatalf("iptables left: %v %v", g.ipt.Chains, g.ipt.Jumps)
	}
	if g.k.fwd() || len(g.rec.Sysctls) != 0 {
		t.Fatal("ip_forward not restored")
	}
	if len(g.rec.Namespaces)+len(g.rec.CreatedNetns)+len(g.rec.MACs) != 0 {
		t.Fatalf("record not empty: %+v", g.rec)
	}
	// Forwarding that was on before us stays on.
	g2 := newRig(t)
	g2.k.Sysctls[SysctlForward] = "1"
	g2.pass(t, testState())
	if len(g2.rec.Sysctls) != 0 {
		t.Fatal("recorded ip_forward as ours though it was on")
	}
	if _, err := g2.r.Cleanup(context.Background(), g2.rec); err != nil {
		t.Fatal(err)
	}
	if !g2.k.fwd() {
		t.Fatal("cleanup switched off an ip_forward vxmesh did not switch on")
	}
}

func TestConflictsAreErrorsNotDeletes(t *testing.T) {
	want := testState()
	t.Run("foreign bridge", func(t *testing.T) {
		g := newRig(t, Link{Name: "br-web", Kind: "bridge"})
		res := g.pass(t, want)
		if res.Networks["web"] == nil || res.Containers["a"] == nil || res.Containers["b"] == nil {
			t.Fatalf("want web, a and b failed: %v", res.Err())
		}
		if res.Networks["db"] != nil || res.Containers["c"] != nil {
			t.Fatalf("db or c failed: %v", res.Err())
		}
		if l := g.k.link("", "br-web"); l == nil || l.Alias != "" {
			t.Fatal("foreign bridge touched")
		}
	})
	t.Run("foreign link on veth name", func(t *testing.T) {
		g := newRig(t, Link{Name: HostVethName("ns-b", "web"), Kind: "dummy"})
		res := g.pass(t, want)
		if res.Containers["b"] == nil || res.Containers["a"] != nil {
			t.Fatalf("want only b failed: %v", res.Err())
		}
	})
	t.Run("foreign eth0 in netns", func(t *testing.T) {
		g := newRig(t)
		g.k.setNS("ns-b", Link{Name: "eth0", Index: 5, Kind: "veth"})
		res := g.pass(t, want)
		if err := res.Containers["b"]; err == nil || !strings.Contains(err.Error(), "not ours") {
			t.Fatalf("b error = %v", err)
		}
	})
}

func TestFailureIsContainedAndRetried(t *testing.T) {
	g := newRig(t)
	want := testState()
	hostB := HostVethName("ns-b", "web")
	g.k.Fail = func(method, name string) error {
		if method == "AddVeth" && name == hostB {
			return errors.New("injected")
		}
		return nil
	}
	res := g.pass(t, want)
	if res.Containers["b"] == nil || !strings.Contains(res.Containers["b"].Error(), "injected") {
		t.Fatalf("b error = %v", res.Containers["b"])
	}
	if res.Containers["a"] != nil || res.Containers["c"] != nil {
		t.Fatalf("others failed: %v", res.Err())
	}
	// b's namespace exists (created before the failure) but has no files yet.
	if _, err := os.Stat(filepath.Join(g.r.EtcNetns, "ns-b", FileHostname)); err == nil {
		t.Fatal("b's files written after its veth failed")
	}
	g.k.Fail = nil
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if p := g.plan(t, want); len(p.Changes()) != 0 {
		t.Fatalf("plan after retry not empty:\n%s", p)
	}
}

func TestReorderedNetworksRebuild(t *testing.T) {
	g := newRig(t)
	want := testState()
	g.pass(t, want)
	macWeb := g.rec.MACs[MACKey("ns-a", "web")]
	a := &want.Containers[0]
	a.Interfaces[0], a.Interfaces[1] = a.Interfaces[1], a.Interfaces[0]
	a.Interfaces[0].IfName, a.Interfaces[1].IfName = "eth0", "eth1"
	a.Interfaces[0].Gateway, a.Interfaces[1].Gateway = addr("10.2.0.1"), netip.Addr{}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	eth0 := g.k.link("ns-a", "eth0")
	eth1 := g.k.link("ns-a", "eth1")
	if eth0 == nil || eth1 == nil || eth0.Alias != ContainerAlias("a", "db") || eth1.Alias != ContainerAlias("a", "web") {
		t.Fatalf("after reorder eth0 = %+v, eth1 = %+v", eth0, eth1)
	}
	if eth1.MAC.String() != macWeb {
		t.Fatalf("web MAC changed from %s to %s", macWeb, eth1.MAC)
	}
	if p := g.plan(t, want); len(p.Changes()) != 0 {
		t.Fatalf("plan after reorder not empty:\n%s", p)
	}
}

func TestRepairsDrift(t *testing.T) {
	g := newRig(t)
	want := testState()
	g.pass(t, want)
	hostA := HostVethName("ns-a", "web")
	// Someone adds an address, takes our link down, removes the route, and
	// deletes b's namespace behind our back.
	g.k.AddAddr("ns-a", "eth0", pfx("192.0.2.9/24"))
	g.k.modify("x", "ns-a", "eth0", func(l *Link) { l.Up = false })
	g.k.modify("x", "", hostA, func(l *Link) { l.MasterIndex = 0 })
	g.k.NS("ns-a").Routes = nil
	g.k.DeleteNetns("ns-b")
	p := g.plan(t, want)
	got := strings.Join(kinds(p.Changes()), "\n")
	for _, w := range []string{"set master " + hostA, "delete address ns-a:eth0", "set up ns-a:eth0", "set default route ns-a:eth0", "create netns ns-b", "add veth ns-b:" + HostVethName("ns-b", "web")} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, p)
		}
	}
	g.pass(t, want)
	if p := g.plan(t, want); len(p.Changes()) != 0 {
		t.Fatalf("plan after repair not empty:\n%s", p)
	}
}

func TestMacvlanAndIPvlan(t *testing.T) {
	g := newRig(t, Link{Name: "ul0", Kind: "veth", Up: true})
	want := &State{
		Networks: []Network{
			{Name: "lan", Driver: DriverMacvlan, Parent: "ul0", Subnet: pfx("198.18.0.0/16"), Gateway: addr("198.18.255.254")},
			{Name: "ipv", Driver: DriverIPvlan, Parent: "ul0", Subnet: pfx("198.19.0.0/16")},
			{Name: "bad", Driver: DriverMacvlan, Parent: "nope", Subnet: pfx("198.20.0.0/16")},
		},
		Containers: []Container{
			{Name: "m", Netns: "ns-m", Interfaces: []Interface{{Network: "lan", IfName: "eth0", Addr: pfx("198.18.1.1/16"), Gateway: addr("198.18.255.254")}}},
			{Name: "i", Netns: "ns-i", Interfaces: []Interface{{Network: "ipv", IfName: "eth0", Addr: pfx("198.19.1.1/16")}}},
			{Name: "x", Netns: "ns-x", Interfaces: []Interface{{Network: "bad", IfName: "eth0", Addr: pfx("198.20.1.1/16")}}},
		},
	}
	res := g.pass(t, want)
	if res.Containers["m"] != nil {
		t.Fatal(res.Containers["m"])
	}
	if err := res.Containers["i"]; !errors.Is(err, ErrNoIPvlan) {
		t.Fatalf("ipvlan container error = %v, want %v", err, ErrNoIPvlan)
	}
	if err := res.Networks["bad"]; err == nil || !strings.Contains(err.Error(), `parent link "nope"`) {
		t.Fatalf("bad network error = %v", err)
	}
	if res.Containers["x"] == nil {
		t.Fatal("container on a bad network did not fail")
	}
	l := g.k.link("ns-m", "eth0")
	if l == nil || l.Kind != "macvlan" || l.Alias != ContainerAlias("m", "lan") {
		t.Fatalf("macvlan child = %+v", l)
	}
	if _, ok := g.ipt.Chains["nat/"+ChainPostrouting]; ok {
		t.Fatal("firewall made for macvlan-only host")
	}
	g.k.ipvlan = true
	if res := g.pass(t, want); res.Containers["i"] != nil || res.Containers["m"] != nil {
		t.Fatal(res.Err())
	}
	// Removing m deletes its child first (its derived MAC is free at once,
	// while a namespace dies asynchronously), then its namespace.
	want.Containers = want.Containers[1:]
	if got := kinds(g.plan(t, want).Changes()); !slices.Equal(got[:2], []string{"delete link ns-m:eth0", "delete netns ns-m"}) {
		t.Fatalf("removal of m = %v", got)
	}
	g.pass(t, want)
	if g.k.NS("ns-m") != nil {
		t.Fatal("ns-m survived")
	}
}

func TestFirewall(t *testing.T) {
	nets := []Network{
		{Name: "a", Driver: DriverBridge, Device: "br-a", Subnet: pfx("10.1.0.0/24")},
		{Name: "b", Driver: DriverBridge, Device: "br-b", Subnet: pfx("10.2.0.0/24")},
		{Name: "i", Driver: DriverBridge, Device: "br-i", Subnet: pfx("10.3.0.0/24"), Internal: true},
		{Name: "m", Driver: DriverMacvlan, Parent: "eth0", Subnet: pfx("10.4.0.0/24")},
	}
	nat, filter := Firewall(nets, PortChains{NAT: []ipt.Chain{{Name: ChainDNAT, Rules: []string{"-p tcp -j DNAT"}}, {Name: "VXMESH-EXTRA"}}})
	byName := map[string][]string{}
	var order []string
	for _, c := range append(nat, filter...) {
		byName[c.Name] = c.Rules
		order = append(order, c.Name)
	}
	if want := []string{ChainDNAT, ChainHairpin, ChainPostrouting, "VXMESH-EXTRA", ChainPublished, ChainIsolation, ChainForward}; !slices.Equal(order, want) {
		t.Fatalf("chains = %v, want %v", order, want)
	}
	if got := byName[ChainDNAT]; !slices.Equal(got, []string{"-p tcp -j DNAT"}) {
		t.Fatalf("DNAT = %q", got)
	}
	post := byName[ChainPostrouting]
	if len(post) != 3 || !strings.HasPrefix(post[0], "-s 10.1.0.0/24 ! -o br-a ") || !strings.HasPrefix(post[1], "-s 10.2.0.0/24 ! -o br-b ") || post[2] != "-j "+ChainHairpin {
		t.Fatalf("POSTROUTING = %q", post)
	}
	iso := strings.Join(byName[ChainIsolation], "\n")
	for _, w := range []string{"-i br-a -o br-b ", "-i br-b -o br-a "} {
		if !strings.Contains(iso, w) {
			t.Errorf("ISOLATION lacks %q:\n%s", w, iso)
		}
	}
	fwd := byName[ChainForward]
	if !strings.HasPrefix(fwd[0], "-i br-i ! -o br-i ") || !strings.HasPrefix(fwd[1], "! -i br-i -o br-i ") ||
		fwd[2] != "-j "+ChainPublished || fwd[3] != "-j "+ChainIsolation || len(fwd) != 11 {
		t.Fatalf("FORWARD = %q", fwd)
	}
	if strings.Contains(strings.Join(append(fwd, iso), " "), "eth0") {
		t.Fatal("macvlan network in firewall")
	}
}

func TestPool(t *testing.T) {
	p := NewPool(pfx("10.0.0.0/29"), netip.Prefix{}, addr("10.0.0.1"))
	var got []string
	for {
		a, err := p.Allocate("x")
		if err != nil {
			break
		}
		got = append(got, a.String())
	}
	if want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}; !slices.Equal(got, want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	p = NewPool(pfx("10.0.0.0/24"), pfx("10.0.0.128/30"), addr("10.0.0.1"))
	if err := p.Reserve(addr("10.0.0.129"), "a"); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(addr("10.0.0.129"), "b"); err == nil || !strings.Contains(err.Error(), `taken by "a"`) {
		t.Fatalf("double reserve: %v", err)
	}
	for _, bad := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.255", "10.0.1.1"} {
		if err := p.Reserve(addr(bad), "c"); err == nil {
			t.Errorf("reserve %s succeeded", bad)
		}
	}
	// Static addresses outside the range are fine (within the subnet).
	if err := p.Reserve(addr("10.0.0.50"), "d"); err != nil {
		t.Fatal(err)
	}
	// The range's first and last addresses are left for static use.
	a1, err := p.Allocate("e")
	if err != nil || a1 != addr("10.0.0.130") {
		t.Fatalf("allocated %v, %v; want 10.0.0.130", a1, err)
	}
	if _, err := p.Allocate("h"); err == nil {
		t.Fatal("allocated from a full range")
	}
	p.Release(a1)
	if a, err := p.Allocate("h"); err != nil || a != a1 {
		t.Fatalf("after release: %v, %v", a, err)
	}
}

func TestFiles(t *testing.T) {
	hosts := string(HostsFile(HostsInput{
		Hostname: "web1.example.test", Name: "web1", Aliases: []string{"www", "web1"},
		Addrs: []netip.Addr{addr("10.1.0.2"), addr("10.2.0.2")},
		Extra: []HostEntry{{Name: "db.example.test", IP: addr("198.18.9.9")}},
	}))
	for _, w := range []string{
		"127.0.0.1\tlocalhost\n",
		"::1\tlocalhost ip6-localhost ip6-loopback\n",
		"198.18.9.9\tdb.example.test\n",
		"10.1.0.2\tweb1.example.test web1 www\n",
		"10.2.0.2\tweb1.example.test web1 www\n",
	} {
		if !strings.Contains(hosts, w) {
			t.Errorf("hosts lacks %q:\n%s", w, hosts)
		}
	}
	rc := string(ResolvConf([]netip.Addr{addr("198.18.5.53")}, []string{"example.test", "b.test"}, []string{"ndots:2"}))
	if want := "# written by vxmesh\nnameserver 198.18.5.53\nsearch example.test b.test\noptions ndots:2\n"; rc != want {
		t.Fatalf("resolv.conf = %q, want %q", rc, want)
	}
	ns := HostNameservers([]byte("# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bogus\nsearch x\nnameserver 2001:db8::1\n"))
	if want := []netip.Addr{addr("10.0.0.2"), addr("2001:db8::1")}; !slices.Equal(ns, want) {
		t.Fatalf("nameservers = %v, want %v", ns, want)
	}
	if string(HostnameFile("h")) != "h\n" {
		t.Fatal("hostname file")
	}
}

func TestNames(t *testing.T) {
	n := HostVethName("web1", "web")
	if len(n) != 10 || !strings.HasPrefix(n, "vh") || n != HostVethName("web1", "web") || n == HostVethName("web1", "db") {
		t.Fatalf("HostVethName = %q", n)
	}
	if net, ok := isContainerAlias(ContainerAlias("web1", "web")); !ok || net != "web" {
		t.Fatal("container alias")
	}
	if !isNetworkAlias(NetworkAlias("web")) || isNetworkAlias(ContainerAlias("a", "web")) || isNetworkAlias("vxmesh:vxlan=4200") {
		t.Fatal("network alias")
	}
	if _, ok := isContainerAlias("other:ctr=a,net=b"); ok {
		t.Fatal("foreign alias taken for ours")
	}
	m := RandomMAC()
	if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("RandomMAC = %s", m)
	}
	_ = net.HardwareAddr(m)
}
