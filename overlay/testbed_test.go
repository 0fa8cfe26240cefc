package overlay_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
	"github.com/vxmesh/vxmesh/overlay"
)

// A test overlay: nstest hosts, each with a bridge and a VXLAN device per
// network, and "containers" (bare namespaces with a veth on the bridge),
// programmed by overlay.Sync from the other hosts' containers. The agent's part
// (gossip -> entries) is played by the test.

type ovNet struct {
	name   string
	vni    uint32
	subnet netip.Prefix
}

func (n ovNet) gateway() netip.Addr { return n.subnet.Addr().Next() }

type ovHost struct {
	*nstest.Host
	nl    *overlay.Handle
	local netip.Addr
	devs  map[string]overlay.Device // by network name
}

type ctr struct {
	name   string
	ns     string
	host   *ovHost
	net    ovNet
	ip     netip.Addr
	mac    net.HardwareAddr
	hostIf string
}

func (c *ctr) entry() overlay.Entry { return overlay.Entry{IP: c.ip, MAC: c.mac, VTEP: c.host.local} }

func newOvHost(t testing.TB, h *nstest.Host, v6 bool) *ovHost {
	t.Helper()
	nl, err := overlay.NewHandle(h.NsHandle(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	local := h.Addr
	if v6 {
		local = h.Addr6
	}
	return &ovHost{Host: h, nl: nl, local: local, devs: map[string]overlay.Device{}}
}

// addNetwork makes the network's bridge (gateway address and shared
// gateway MAC, as the lead's bridge code will) and its VXLAN device.
func (oh *ovHost) addNetwork(t testing.TB, n ovNet) overlay.Device {
	t.Helper()
	brName := "vxb-" + n.name
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, HardwareAddr: overlay.GatewayMAC(n.name)}}
	if err := oh.nl.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %q on %s: %v", brName, oh.Name, err)
	}
	l, err := oh.nl.LinkByName(brName)
	if err != nil {
		t.Fatal(err)
	}
	// Every host's bridge has the same MAC, hence the same IPv6 link-local
	// address: the bridge keeps IPv6 off, as the agent's should, so its
	// own MLD/RS frames do not reach the other hosts' bridges.
	if err := oh.nl.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		t.Fatal(err)
	}
	gw := netip.PrefixFrom(n.gateway(), n.subnet.Bits())
	if err := oh.nl.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(gw)}); err != nil {
		t.Fatalf("add %s to %q: %v", gw, brName, err)
	}
	if err := oh.nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	d := overlay.Device{Name: n.name, VNI: n.vni, Local: oh.local, Bridge: brName}
	changed, err := overlay.EnsureDevice(oh.nl, d)
	if err != nil || !changed {
		t.Fatalf("overlay.EnsureDevice on %s: changed %v, %v", oh.Name, changed, err)
	}
	oh.devs[n.name] = d
	return d
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addContainer makes a container namespace with eth0 on the network's
// bridge, the device's MTU, a random MAC and a default route via the
// shared gateway.
func (oh *ovHost) addContainer(t testing.TB, name string, n ovNet, ip netip.Addr) *ctr {
	t.Helper()
	return oh.addContainerMAC(t, name, n, ip, overlay.NewMAC(), false)
}

// addContainerMAC is addContainer with a given MAC. A quiet container has
// IPv6 off, so it sends nothing by itself (no DAD, no MLD): the bridge does
// not learn its MAC until it answers.
func (oh *ovHost) addContainerMAC(t testing.TB, name string, n ovNet, ip netip.Addr, mac net.HardwareAddr, quiet bool) *ctr {
	t.Helper()
	c := &ctr{name: name, ns: nstest.NewNetns(t, name), host: oh, net: n, ip: ip, mac: mac, hostIf: "vh" + name}
	if quiet {
		for _, k := range []string{"all", "default"} {
			if _, err := nstest.RunIn(c.ns, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	vxl, err := oh.nl.LinkByName(oh.devs[n.name].LinkName())
	if err != nil {
		t.Fatal(err)
	}
	br, err := oh.nl.LinkByName("vxb-" + n.name)
	if err != nil {
		t.Fatal(err)
	}
	cns, err := netnsutil.Open(c.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer cns.Close()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: c.hostIf, MTU: vxl.Attrs().MTU, MasterIndex: br.Attrs().Index},
		PeerName:         "vc" + name,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(int(cns)),
	}
	if err := oh.nl.LinkAdd(veth); err != nil {
		t.Fatalf("add veth for %s on %s: %v", name, oh.Name, err)
	}
	hl, err := oh.nl.LinkByName(c.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := oh.nl.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cl, err := ch.LinkByName("vc" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.LinkSetName(cl, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := ch.AddrAdd(cl, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ip, n.subnet.Bits()))}); err != nil {
		t.Fatal(err)
	}
	if err := ch.LinkSetUp(cl); err != nil {
		t.Fatal(err)
	}
	gw := n.gateway()
	if err := ch.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route in %s: %v", name, err)
	}
	// The bridge forwards to the port only once the kernel's link watcher
	// has seen its carrier, which can take a second.
	nstest.Eventually(t, 10*time.Second, func() error {
		l, err := oh.nl.LinkByName(c.hostIf)
		if err != nil {
			return err
		}
		if l.Attrs().OperState != netlink.OperUp {
			return fmt.Errorf("%s on %s: operstate %s, want up", c.hostIf, oh.Name, l.Attrs().OperState)
		}
		return nil
	})
	return c
}

// remove deletes the container's veth (the namespace goes at cleanup).
func (c *ctr) remove(t testing.TB) {
	t.Helper()
	l, err := c.host.nl.LinkByName(c.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.host.nl.LinkDel(l); err != nil {
		t.Fatal(err)
	}
}

// remoteOf returns the entries host h should program for network n: the
// containers of n on every other host.
func remoteOf(h *ovHost, n ovNet, ctrs []*ctr) []overlay.Entry {
	var out []overlay.Entry
	for _, c := range ctrs {
		if c.host != h && c.net.name == n.name {
			out = append(out, c.entry())
		}
	}
	return out
}

// syncAll programs network n on every host from ctrs.
func syncAll(t testing.TB, hosts []*ovHost, n ovNet, ctrs []*ctr) {
	t.Helper()
	for _, h := range hosts {
		if _, ok := h.devs[n.name]; !ok {
			continue
		}
		if _, err := overlay.Sync(h.nl, h.devs[n.name].LinkName(), remoteOf(h, n, ctrs)); err != nil {
			t.Fatalf("sync %s on %s: %v", n.name, h.Name, err)
		}
	}
}

// ping pings from a container, once (no retries: entries are static, so
// the first packet must get through).
func ping(c *ctr, to netip.Addr) error {
	_, err := nstest.RunIn(c.ns, "ping", "-n", "-q", "-c1", "-W2", to.String())
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", to, c.name, err)
	}
	return nil
}

// nsHandle opens the named namespace, closed at cleanup.
func nsHandle(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	ns, err := netnsutil.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// outliving is a subtest's TB whose cleanups run when parent ends, for
// things a subtest makes that later subtests use.
type outliving struct {
	testing.TB
	parent testing.TB
}

func (o outliving) Cleanup(f func()) { o.parent.Cleanup(f) }

// pingFails checks that one ping gets no answer within a second.
func pingFails(c *ctr, to netip.Addr) error {
	if _, err := nstest.RunIn(c.ns, "ping", "-n", "-q", "-c1", "-W1", to.String()); err == nil {
		return fmt.Errorf("ping %s from %s got an answer", to, c.name)
	}
	return nil
}
