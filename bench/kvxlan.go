package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The baselines of the data plane built by hand: a kernel VXLAN path as a
// script would make it with iproute2 and static entries (that is the
// point of the baseline: what vxmesh's overlay must not be slower than),
// and a bare veth pair for the bridge network.

// Kernel VXLAN baseline constants: a VNI and port no vxmesh network of the
// lab uses, so both overlays live side by side in the same hosts.
const (
	kvxVNI    = 4999
	kvxPort   = 4790
	kvxMTU    = 1450
	kvxSubnet = "10.99.0.0/24"
)

// kvxEnd is one end of the hand-built VXLAN path: a "container" namespace
// plugged into a bridge with a VXLAN device in a lab host's namespace.
type kvxEnd struct {
	hostNS string
	vtep   netip.Addr
	ctrNS  string
	ip     netip.Addr
	mac    string
}

// buildKernelVXLAN connects two new namespaces (roles a and b) through a
// VXLAN device with static FDB and neighbour entries in each of two host
// namespaces, using iproute2 as a script would. The namespaces are the
// run's; the devices in the host namespaces die with the lab.
func (r *Runner) buildKernelVXLAN(hostA, hostB string, vtepA, vtepB netip.Addr) (Path, error) {
	ends := []*kvxEnd{
		{hostNS: hostA, vtep: vtepA, ip: netip.MustParseAddr("10.99.0.2"), mac: "02:99:00:00:00:02"},
		{hostNS: hostB, vtep: vtepB, ip: netip.MustParseAddr("10.99.0.3"), mac: "02:99:00:00:00:03"},
	}
	for i, e := range ends {
		ns, err := r.netns(fmt.Sprintf("kvx%d", i+1))
		if err != nil {
			return Path{}, err
		}
		e.ctrNS = ns
	}
	for i, e := range ends {
		peer := ends[1-i]
		if err := runScript(e.hostNS, kvxHostScript(e, peer)); err != nil {
			return Path{}, fmt.Errorf("build kernel VXLAN in %q: %w", e.hostNS, err)
		}
		if err := runScript(e.ctrNS, kvxCtrScript(e, peer)); err != nil {
			return Path{}, fmt.Errorf("build kernel VXLAN in %q: %w", e.ctrNS, err)
		}
	}
	return Path{Src: ends[0].ctrNS, Dst: ends[1].ctrNS, To: ends[1].ip}, nil
}

// kvxHostScript is what a host runs: bridge, VXLAN device (no learning),
// a veth into the container, the peer's MAC and flood entry statically.
func kvxHostScript(e, peer *kvxEnd) []string {
	return []string{
		fmt.Sprintf("ip link add kvx0 type vxlan id %d local %s dstport %d nolearning", kvxVNI, e.vtep, kvxPort),
		"ip link add kvb0 type bridge",
		fmt.Sprintf("ip link set kvx0 mtu %d master kvb0 up", kvxMTU),
		"ip link set kvb0 up",
		fmt.Sprintf("ip link add kvh0 mtu %d type veth peer name eth0 address %s netns %s", kvxMTU, e.mac, e.ctrNS),
		"ip link set kvh0 master kvb0 up",
		fmt.Sprintf("bridge fdb append 00:00:00:00:00:00 dev kvx0 dst %s self permanent", peer.vtep),
		fmt.Sprintf("bridge fdb add %s dev kvx0 dst %s self permanent", peer.mac, peer.vtep),
	}
}

// kvxCtrScript is what the container end runs: address, link up, the
// peer's neighbour entry.
func kvxCtrScript(e, peer *kvxEnd) []string {
	return []string{
		fmt.Sprintf("ip addr add %s/24 dev eth0", e.ip),
		"ip link set eth0 up",
		fmt.Sprintf("ip neigh replace %s lladdr %s dev eth0 nud permanent", peer.ip, peer.mac),
	}
}

// runScript runs each command inside the namespace (network only, like
// nsenter --net), stopping at the first failure.
func runScript(ns string, cmds []string) error {
	for _, c := range cmds {
		f := strings.Fields(c)
		cmd := exec.Command("nsenter", append([]string{"--net=" + netnsutil.Path(ns), "--"}, f...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", c, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// buildVethPair connects two new namespaces with a bare veth pair,
// 10.98.0.1/24 and .2, MTU 1500: the baseline of the bridge network.
func (r *Runner) buildVethPair() (Path, error) {
	a, err := r.netns("veth1")
	if err != nil {
		return Path{}, err
	}
	b, err := r.netns("veth2")
	if err != nil {
		return Path{}, err
	}
	ips := []netip.Addr{netip.MustParseAddr("10.98.0.1"), netip.MustParseAddr("10.98.0.2")}
	bns, err := netnsutil.Open(b)
	if err != nil {
		return Path{}, err
	}
	defer bns.Close()
	ha, err := topo.Handle(a)
	if err != nil {
		return Path{}, err
	}
	defer ha.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(bns)}
	if err := ha.LinkAdd(veth); err != nil {
		return Path{}, fmt.Errorf("add veth %s <-> %s: %w", a, b, err)
	}
	for i, ns := range []string{a, b} {
		if err := addrUp(ns, "eth0", ips[i]); err != nil {
			return Path{}, err
		}
	}
	return Path{Src: a, Dst: b, To: ips[1]}, nil
}

func addrUp(ns, link string, ip netip.Addr) error {
	h, err := topo.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %q in %q: %w", link, ns, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %q in %q: %w", ip, link, ns, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %q up in %q: %w", link, ns, err)
	}
	return nil
}
