package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// realRig is a Reconciler on the real kernel inside host namespace ns.
type realRig struct {
	k   *NetlinkKernel
	ipt *ipt.Runner
	r   *Reconciler
	rec Record
	ns  string
}

func newRealRig(t testing.TB, host *nstest.Host, etc string) *realRig {
	t.Helper()
	nstest.RequireTool(t, "iptables-restore")
	k, err := NewKernel(host.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	r, err := ipt.New(host.NsHandle(t), false)
	if err != nil {
		t.Fatal(err)
	}
	return &realRig{k: k, ipt: r, ns: host.NS, r: &Reconciler{Kernel: k, IPT: r, Planner: Planner{EtcNetns: etc}, Log: quiet}}
}

func (g *realRig) pass(t *testing.T, want *State) *Result {
	t.Helper()
	res, err := g.r.Reconcile(context.Background(), want, g.rec)
	if res == nil {
		t.Fatalf("reconcile: %v", err)
	}
	g.rec = res.Record
	return res
}

func (g *realRig) cleanup(t testing.TB) {
	t.Helper()
	res, err := g.r.Cleanup(context.Background(), g.rec)
	if res != nil {
		g.rec = res.Record
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (g *realRig) writes() int64 { return g.k.Writes() + g.ipt.Writes() }

// containerNetns returns n unique container namespace names and makes sure
// they are gone at the end, whatever the test did.
func containerNetns(t testing.TB, n int) []string {
	t.Helper()
	id := nstest.Suffix()
	var out []string
	for i := range n {
		name := fmt.Sprintf("%s%s-c%d", nstest.Prefix, id, i+1)
		out = append(out, name)
		t.Cleanup(func() { netnsutil.Delete(name) })
	}
	return out
}

func iface(net, ifname, ip string, gw string) Interface {
	i := Interface{Network: net, IfName: ifname, Addr: netip.MustParsePrefix(ip)}
	if gw != "" {
		i.Gateway = netip.MustParseAddr(gw)
	}
	return i
}

func pingFrom(ns string, to string) error {
	_, err := nstest.RunIn(ns, "ping", "-n", "-q", "-c1", "-W1", to)
	return err
}

// TestKernelSingleHost is the single-host scenario on the real
// kernel: two isolated networks and an internal one, several containers,
// masquerade towards "the internet", idempotence, restart adoption,
// removal and cleanup.
func TestKernelSingleHost(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true})
	h := tp.Hosts[0]
	nstest.RequireTool(t, "ping", "nsenter")
	g := newRealRig(t, h, t.TempDir())
	ns := containerNetns(t, 4)
	files := func(name string) map[string][]byte {
		return map[string][]byte{
			FileHostname: HostnameFile(name),
			FileHosts:    HostsFile(HostsInput{Hostname: name, Name: name, Addrs: []netip.Addr{netip.MustParseAddr("10.31.0.2")}}),
			FileResolv:   ResolvConf([]netip.Addr{netip.MustParseAddr("198.18.5.53")}, []string{"example.test"}, nil),
		}
	}
	want := &State{
		Networks: []Network{
			{Name: "web", Driver: DriverBridge, Device: "br-web" + tp.ID[:4], Subnet: pfx("10.31.0.0/24"), Gateway: addr("10.31.0.1"), MTU: 1500},
			{Name: "app", Driver: DriverBridge, Device: "br-app" + tp.ID[:4], Subnet: pfx("10.32.0.0/24"), Gateway: addr("10.32.0.1"), MTU: 1500},
			{Name: "db", Driver: DriverBridge, Device: "br-db" + tp.ID[:4], Subnet: pfx("10.33.0.0/24"), Gateway: addr("10.33.0.1"), MTU: 1500, Internal: true},
		},
		Containers: []Container{
			{Name: "c1", Netns: ns[0], Interfaces: []Interface{iface("web", "eth0", "10.31.0.2/24", "10.31.0.1")}, Files: files("c1")},
			{Name: "c2", Netns: ns[1], Interfaces: []Interface{iface("web", "eth0", "10.31.0.3/24", "10.31.0.1")}, Files: files("c2")},
			{Name: "c3", Netns: ns[2], Interfaces: []Interface{iface("app", "eth0", "10.32.0.2/24", "10.32.0.1")}, Files: files("c3")},
			{Name: "c4", Netns: ns[3], Interfaces: []Interface{iface("db", "eth0", "10.33.0.2/24", "10.33.0.1")}, Files: files("c4")},
		},
	}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}

	// Reachability.
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{ns[0], "10.31.0.3", true},  // same network
		{ns[0], "10.31.0.1", true},  // gateway
		{ns[3], "10.33.0.1", true},  // internal network's gateway
		{ns[0], "10.32.0.2", false}, // web -> app: isolated
		{ns[2], "10.31.0.2", false}, // app -> web: isolated
		{ns[3], "10.31.0.2", false}, // internal -> web
		{ns[0], "10.33.0.2", false}, // web -> internal
		{ns[0], nstest.PublicAddr.String(), true},
		{ns[3], nstest.PublicAddr.String(), false}, // internal: no way out
	} {
		err := pingFrom(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("ping %s from %s: %v, want reachable=%v", c.to, c.from, err, c.ok)
		}
	}
	who := nstest.ServeWho(t, tp.Internet.NS, "udp", netip.AddrPortFrom(nstest.PublicAddr, 0).String())
	got, err := nstest.Dial(ns[0], "udp", who, []byte("hi"), 5*time.Second)
	if err != nil || !strings.HasPrefix(string(got), h.Addr.String()+":") {
		t.Errorf("internet saw c1 as %q (%v), want masqueraded behind %s", got, err, h.Addr)
	}
	if _, err := nstest.Dial(ns[3], "udp", who, []byte("hi"), 500*time.Millisecond); err == nil {
		t.Error("internal container reached the internet")
	}
	// No route straight to a container from outside, even with a route.
	tp.Internet.MustRun(t, "ip", "route", "add", "10.31.0.0/24", "via", h.Addr.String())
	if err := pingFrom(tp.Internet.NS, "10.31.0.2"); err == nil {
		t.Error("the internet reached a container's address directly")
	}
	// Host veths are bridge ports in hairpin mode (published ports reached
	// from the same bridge need it).
	hostLinks, err := g.k.Links("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want.Containers {
		l := linkByName(hostLinks, HostVethName(c.Netns, c.Interfaces[0].Network))
		if l == nil || !l.Hairpin || l.MasterIndex == 0 {
			t.Errorf("host veth of %s = %+v, want enslaved in hairpin mode", c.Name, l)
		}
	}

	// Kernel state as wanted.
	hh := h.Handle(t)
	br, err := hh.LinkByName(want.Networks[0].Device)
	if err != nil || br.Attrs().Alias != NetworkAlias("web") {
		t.Fatalf("bridge: %v, %+v", err, br)
	}
	if b, err := os.ReadFile(filepath.Join(g.r.EtcNetns, ns[0], FileResolv)); err != nil || !strings.Contains(string(b), "nameserver 198.18.5.53\nsearch example.test\n") {
		t.Errorf("resolv.conf = %q, %v", b, err)
	}
	if out, _ := h.Run("cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "1" {
		t.Errorf("ip_forward in host = %q", out)
	}

	// A second pass changes nothing; so does a fresh reconciler (a restart).
	indexes := linkIndexes(t, g)
	w := g.writes()
	if res := g.pass(t, want); res.Changes != 0 || g.writes() != w {
		t.Fatalf("second pass: %d changes, %d writes", res.Changes, g.writes()-w)
	}
	g2 := newRealRig(t, h, g.r.EtcNetns)
	g2.rec = g.rec
	if res := g2.pass(t, want); res.Changes != 0 || g2.writes() != 0 || res.Err() != nil {
		t.Fatalf("restarted pass: %d changes, %d writes, %v", res.Changes, g2.writes(), res.Err())
	}
	if after := linkIndexes(t, g2); !maps(indexes, after) {
		t.Fatalf("link indexes changed across restart: %v -> %v", indexes, after)
	}

	// Removing c2 removes its veth, namespace and files, and nothing else.
	hostC2 := HostVethName(ns[1], "web")
	want.Containers = slices.Delete(want.Containers, 1, 2)
	if res := g2.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if _, err := hh.LinkByName(hostC2); err == nil {
		t.Error("c2's veth survived")
	}
	if netnsutil.Exists(ns[1]) {
		t.Error("c2's namespace survived")
	}
	if _, err := os.Stat(filepath.Join(g.r.EtcNetns, ns[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c2's files survived: %v", err)
	}
	if err := pingFrom(ns[0], "10.31.0.1"); err != nil {
		t.Errorf("c1 lost its gateway after c2 left: %v", err)
	}

	// Cleanup leaves nothing of ours.
	g2.cleanup(t)
	assertClean(t, h, g2, ns)
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// linkIndexes maps every link of ours (host and containers) to its index.
func linkIndexes(t *testing.T, g *realRig) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ns := range append([]string{""}, g.rec.Namespaces...) {
		ls, err := g.k.Links(ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if strings.HasPrefix(l.Alias, AliasPrefix) {
				out[where(ns, l.Name)] = l.Index
			}
		}
	}
	return out
}

// assertClean checks that no link, chain, namespace or file of ours is left
// and that ip_forward is back off.
func assertClean(t *testing.T, h *nstest.Host, g *realRig, namespaces []string) {
	t.Helper()
	ls, err := g.k.Links("")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if strings.HasPrefix(l.Alias, AliasPrefix) || strings.HasPrefix(l.Name, "vh") {
			t.Errorf("link %s (%s) left behind", l.Name, l.Alias)
		}
	}
	for _, table := range []string{"nat", "filter"} {
		if chains, _ := g.ipt.ListChains(table, ChainPrefix); len(chains) > 0 {
			t.Errorf("%s chains left: %v", table, chains)
		}
	}
	for _, ns := range namespaces {
		if netnsutil.Exists(ns) {
			t.Errorf("namespace %s left", ns)
		}
		if _, err := os.Stat(filepath.Join(g.r.etc(), ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("files of %s left: %v", ns, err)
		}
	}
	if out, _ := h.Run("cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "0" {
		t.Errorf("ip_forward in host = %q after cleanup", out)
	}
	if len(g.rec.Namespaces)+len(g.rec.CreatedNetns)+len(g.rec.Sysctls) != 0 {
		t.Errorf("record not empty after cleanup: %+v", g.rec)
	}
}

// TestKernelEtcNetns writes the name files where `ip netns exec` reads them
// (the real /etc/netns) and checks `ip netns exec` sees them.
func TestKernelEtcNetns(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	nstest.RequireTool(t, "ip")
	g := newRealRig(t, h, "")
	ns := containerNetns(t, 1)
	t.Cleanup(func() { os.RemoveAll(filepath.Join(DefaultEtcNetns, ns[0])) })
	want := &State{
		Networks: []Network{{Name: "n", Driver: DriverBridge, Device: "br-n" + tp.ID, Subnet: pfx("10.40.0.0/24"), Gateway: addr("10.40.0.1")}},
		Containers: []Container{{Name: "c", Netns: ns[0], Interfaces: []Interface{iface("n", "eth0", "10.40.0.2/24", "10.40.0.1")}, Files: map[string][]byte{
			FileHostname: HostnameFile("c.example.test"),
			FileHosts:    HostsFile(HostsInput{Hostname: "c.example.test", Name: "c", Addrs: []netip.Addr{addr("10.40.0.2")}, Extra: []HostEntry{{Name: "db", IP: addr("198.18.9.9")}}}),
			FileResolv:   ResolvConf(nil, []string{"example.test"}, []string{"ndots:2"}),
		}}},
	}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	out, err := nstest.RunIn("", "ip", "netns", "exec", ns[0], "sh", "-c", "cat /etc/hostname /etc/hosts /etc/resolv.conf; ip -4 -o addr show eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"c.example.test\n", "198.18.9.9\tdb\n", "10.40.0.2\tc.example.test c\n", "search example.test\n", "options ndots:2\n", "inet 10.40.0.2/24"} {
		if !strings.Contains(out, w) {
			t.Errorf("ip netns exec sees no %q in:\n%s", w, out)
		}
	}
	g.cleanup(t)
	assertClean(t, h, g, ns)
}

// TestKernelMacvlan attaches two containers to the underlay through macvlan
// children of the host's underlay link.
func TestKernelMacvlan(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true})
	h := tp.Hosts[0]
	nstest.RequireTool(t, "ping", "nsenter")
	g := newRealRig(t, h, t.TempDir())
	ns := containerNetns(t, 3)
	gw := nstest.InternetAddr.String()
	want := &State{
		Networks: []Network{{Name: "lan", Driver: DriverMacvlan, Parent: h.Link, Subnet: nstest.UnderlayPrefix, Gateway: nstest.InternetAddr}},
		Containers: []Container{
			{Name: "m1", Netns: ns[0], Interfaces: []Interface{iface("lan", "eth0", "198.18.100.1/16", gw)}},
			{Name: "m2", Netns: ns[1], Interfaces: []Interface{iface("lan", "eth0", "198.18.100.2/16", gw)}},
		},
	}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	for _, to := range []string{"198.18.100.2", gw, nstest.PublicAddr.String()} {
		if err := pingFrom(ns[0], to); err != nil {
			t.Errorf("m1 -> %s: %v", to, err)
		}
	}
	ls, err := g.k.Links(ns[0])
	if err != nil {
		t.Fatal(err)
	}
	if l := linkByName(ls, "eth0"); l == nil || l.Kind != "macvlan" || l.Alias != ContainerAlias("m1", "lan") {
		t.Fatalf("m1 eth0 = %+v", l)
	}
	w := g.writes()
	if res := g.pass(t, want); res.Changes != 0 || g.writes() != w {
		t.Fatalf("second pass: %d changes, %d writes", res.Changes, g.writes()-w)
	}

	g.cleanup(t)
	assertClean(t, h, g, ns)
}

// TestKernelIPvlan attaches a container through an ipvlan child where the
// kernel has ipvlan, and checks the clear error where it does not.
func TestKernelIPvlan(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	h := tp.Hosts[0]
	nstest.RequireTool(t, "ping", "nsenter")
	g := newRealRig(t, h, t.TempDir())
	ns := containerNetns(t, 1)
	want := &State{
		Networks:   []Network{{Name: "ipv", Driver: DriverIPvlan, Parent: h.Link, Subnet: nstest.UnderlayPrefix}},
		Containers: []Container{{Name: "i1", Netns: ns[0], Interfaces: []Interface{iface("ipv", "eth0", "198.18.100.1/16", "")}}},
	}
	res := g.pass(t, want)
	if !g.k.IPvlanSupported() {
		if !errors.Is(res.Containers["i1"], ErrNoIPvlan) {
			t.Fatalf("ipvlan on a kernel without it: %v, want %v", res.Err(), ErrNoIPvlan)
		}
		g.cleanup(t)
		assertClean(t, h, g, ns)
		nstest.SkipKernelLacks(t, "ipvlan", ErrNoIPvlan)
	}
	if res.Err() != nil {
		t.Fatal(res.Err())
	}
	if err := pingFrom(ns[0], tp.Hosts[1].Addr.String()); err != nil {
		t.Errorf("ipvlan container -> h2: %v", err)
	}
	g.cleanup(t)
	assertClean(t, h, g, ns)
}

// TestKernelCarrierAtOnce: when SetUp of a container's veth end returns,
// both ends are operationally up (the bridge port forwards, the container
// end has its qdisc), not only once the kernel's link-watch work got to
// them. Without the read-back in SetUp about half the attempts here found
// the host end still down. Read by a dump, which leaves pending link-watch
// work alone. Needs Linux 6.7 (RTM_GETLINK syncs the device's work).
func TestKernelCarrierAtOnce(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	if rel, ok := kernelAtLeast(6, 7); !ok {
		nstest.SkipKernelLacks(t, "link-watch sync on RTM_GETLINK (Linux 6.7)", fmt.Errorf("running %s", rel))
	}
	k, err := NewKernel(h.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ctr := containerNetns(t, 1)[0]
	if err := k.CreateNetns(ctr); err != nil {
		t.Fatal(err)
	}
	br := "br-lw" + tp.ID[:4]
	if err := k.AddBridge(br, "", 1500, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.SetUp("", br); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := k.AddVeth("vlw"+tp.ID[:4], br, ctr, "eth0", "", 1500, nil); err != nil {
			t.Fatal(err)
		}
		if err := k.SetUp(ctr, "eth0"); err != nil {
			t.Fatal(err)
		}
		requireOperUp(t, h.Handle(t), []string{ctr})
		if t.Failed() {
			t.Fatalf("attempt %d", i+1)
		}
		if err := k.DeleteLink("", "vlw"+tp.ID[:4]); err != nil {
			t.Fatal(err)
		}
	}
}

// requireOperUp fails unless, by a link dump (which leaves pending
// link-watch work alone), every veth in the host namespace and the eth0 of
// each container namespace in ctrs are operationally up.
func requireOperUp(t *testing.T, host *netlink.Handle, ctrs []string) {
	t.Helper()
	check := func(where string, h *netlink.Handle, match func(netlink.Link) bool) {
		ls, err := h.LinkList()
		if err != nil {
			t.Fatalf("list links in %s: %v", where, err)
		}
		for _, l := range ls {
			if match(l) && l.Attrs().OperState != netlink.OperUp {
				t.Errorf("%s: %s is %s right after it was set up, want up", where, l.Attrs().Name, l.Attrs().OperState)
			}
		}
	}
	check("host", host, func(l netlink.Link) bool { return l.Type() == "veth" })
	for _, ns := range ctrs {
		h := netnsHandle(t, ns)
		check(ns, h, func(l netlink.Link) bool { return l.Attrs().Name == "eth0" })
		h.Close()
	}
}

// netnsHandle opens a netlink handle in the named namespace; the caller
// closes it.
func netnsHandle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// kernelAtLeast reports whether the running kernel is at least
// major.minor, and its release string.
func kernelAtLeast(major, minor int) (string, bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown", false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		return rel, false
	}
	return rel, ma > major || (ma == major && mi >= minor)
}
