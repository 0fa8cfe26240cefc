package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/fakekernel"
)

// fakeKernel is bridge's Kernel over the shared in-memory kernel
// (internal/fakekernel, which overlay's tests use too): it translates
// bridge's calls and Link values to the kernel model's netlink links, so
// the model's behaviour (veth pairs die together, links die with their
// namespace, routes and addresses with their link) holds here too.
type fakeKernel struct {
	*fakekernel.Kernel
	ipvlan bool
	// announced lists the announcements sent, as "ns:link ip".
	announced []string
}

// fakeIPT is in-memory iptables.
type fakeIPT = fakekernel.IPT

func newFakeIPT() *fakeIPT { return fakekernel.NewIPT() }

func newFakeKernel(hostLinks ...Link) *fakeKernel {
	k := &fakeKernel{Kernel: fakekernel.New()}
	k.Sysctls[SysctlForward], k.Sysctls[SysctlBridgeNF] = "0", "1"
	for _, l := range hostLinks {
		l.Index = k.NextIndex()
		k.AddLink("", toNetlink(l))
	}
	return k
}

// toNetlink makes the model's link of a bridge Link (without addresses).
func toNetlink(l Link) netlink.Link {
	a := netlink.LinkAttrs{Name: l.Name, Index: l.Index, Alias: l.Alias, MTU: l.MTU, HardwareAddr: slices.Clone(l.MAC), MasterIndex: l.MasterIndex, ParentIndex: l.ParentIndex}
	if l.Up {
		a.Flags = net.FlagUp
	}
	if l.Hairpin {
		a.Protinfo = &netlink.Protinfo{Hairpin: true}
	}
	switch l.Kind {
	case "veth":
		return &netlink.Veth{LinkAttrs: a}
	case "bridge":
		return &netlink.Bridge{LinkAttrs: a}
	case "macvlan":
		return &netlink.Macvlan{LinkAttrs: a}
	case "ipvlan":
		return &netlink.IPVlan{LinkAttrs: a}
	case "device":
		return &netlink.Device{LinkAttrs: a}
	}
	return &netlink.GenericLink{LinkAttrs: a, LinkType: l.Kind}
}

// fromNetlink reads a model link back as a bridge Link, as NetlinkKernel
// does.
func fromNetlink(n *fakekernel.NS, l netlink.Link) Link {
	a := l.Attrs()
	return Link{
		Name: a.Name, Index: a.Index, Kind: l.Type(), Alias: a.Alias, MTU: a.MTU,
		MAC: slices.Clone(a.HardwareAddr), Up: a.Flags&net.FlagUp != 0, Addrs: n.AddrsOf(a.Index),
		MasterIndex: a.MasterIndex, ParentIndex: a.ParentIndex, Hairpin: a.Protinfo != nil && a.Protinfo.Hairpin,
	}
}

func (k *fakeKernel) get(ns string) (*fakekernel.NS, error) {
	n := k.NS(ns)
	if n == nil {
		return nil, fmt.Errorf("netns %q: no such namespace", ns)
	}
	return n, nil
}

func (k *fakeKernel) find(ns, name string) (*fakekernel.NS, netlink.Link, error) {
	n, err := k.get(ns)
	if err != nil {
		return nil, nil, err
	}
	l := n.Link(name)
	if l == nil {
		return n, nil, fmt.Errorf("link %q not found in %q", name, ns)
	}
	return n, l, nil
}

// link returns a copy of a link, nil when there is none.
func (k *fakeKernel) link(ns, name string) *Link {
	k.Lock()
	defer k.Unlock()
	n, l, err := k.find(ns, name)
	if err != nil {
		return nil
	}
	bl := fromNetlink(n, l)
	return &bl
}

// links returns the links of ns, nil when there is no such namespace.
func (k *fakeKernel) links(ns string) []Link {
	out, _ := k.Links(ns)
	return out
}

// routes returns the default routes of ns.
func (k *fakeKernel) routes(ns string) []Route {
	out, _ := k.DefaultRoutes(ns)
	return out
}

// setNS puts namespace name in place with exactly these links.
func (k *fakeKernel) setNS(name string, links ...Link) {
	n := k.SetNS(name)
	k.Lock()
	defer k.Unlock()
	for _, l := range links {
		k.AddLink(name, toNetlink(l))
		for _, p := range l.Addrs {
			n.AddAddr(l.Index, p)
		}
	}
}

func (k *fakeKernel) Links(ns string) ([]Link, error) {
	k.Lock()
	defer k.Unlock()
	n, err := k.get(ns)
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, l := range n.AllLinks() {
		out = append(out, fromNetlink(n, l))
	}
	return out, nil
}

func (k *fakeKernel) DefaultRoutes(ns string) ([]Route, error) {
	k.Lock()
	defer k.Unlock()
	n, err := k.get(ns)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range n.Routes {
		gw, _ := netip.AddrFromSlice(r.Gw)
		gw = gw.Unmap()
		var name string
		if l := n.LinkByIndex(r.LinkIndex); l != nil {
			name = l.Attrs().Name
		}
		out = append(out, Route{Link: name, Gateway: gw, IPv6: gw.Is6()})
	}
	return out, nil
}

func (k *fakeKernel) NetnsExists(name string) bool {
	k.Lock()
	defer k.Unlock()
	return name != "" && k.NS(name) != nil
}

func (k *fakeKernel) Sysctl(key string) (string, error) {
	k.Lock()
	defer k.Unlock()
	v, ok := k.Sysctls[key]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}

func (k *fakeKernel) SetSysctl(key, value string) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("SetSysctl", key); err != nil {
		return err
	}
	k.Sysctls[key] = value
	return nil
}

func (k *fakeKernel) fwd() bool { return k.Sysctls[SysctlForward] == "1" }

func (k *fakeKernel) CreateNetns(name string) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("CreateNetns", name); err != nil {
		return err
	}
	return k.AddNS(name)
}

func (k *fakeKernel) DeleteNetns(name string) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("DeleteNetns", name); err != nil {
		return err
	}
	k.DelNS(name)
	return nil
}

// add adds a link made from l; a link without MAC gets a random one.
func (k *fakeKernel) add(ns string, l Link) error {
	if l.MAC == nil {
		l.MAC = RandomMAC()
	}
	_, err := k.AddLink(ns, toNetlink(l))
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("link %q exists in %q", l.Name, ns)
	}
	return err
}

func (k *fakeKernel) AddBridge(name, alias string, mtu int, mac net.HardwareAddr) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("AddBridge", name); err != nil {
		return err
	}
	return k.add("", Link{Name: name, Index: k.NextIndex(), Kind: "bridge", Alias: alias, MTU: mtu, MAC: mac, Up: true})
}

func (k *fakeKernel) AddVeth(hostName, master, ns, peerName, alias string, mtu int, mac net.HardwareAddr) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("AddVeth", hostName); err != nil {
		return err
	}
	_, br, err := k.find("", master)
	if err != nil {
		return err
	}
	if _, err := k.get(ns); err != nil {
		return err
	}
	hi, pi := k.NextIndex(), k.NextIndex()
	if err := k.add("", Link{Name: hostName, Index: hi, Kind: "veth", Alias: alias, MasterIndex: br.Attrs().Index, ParentIndex: pi, MTU: mtu, Up: true, Hairpin: true}); err != nil {
		return err
	}
	if err := k.add(ns, Link{Name: peerName, Index: pi, Kind: "veth", Alias: alias, ParentIndex: hi, MTU: mtu, MAC: mac}); err != nil {
		k.DelLink("", hostName)
		return err
	}
	return nil
}

func (k *fakeKernel) AddMacvlan(ns, name, parent, alias string, mtu int, mac net.HardwareAddr) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("AddMacvlan", name); err != nil {
		return err
	}
	_, p, err := k.find("", parent)
	if err != nil {
		return err
	}
	return k.add(ns, Link{Name: name, Index: k.NextIndex(), Kind: "macvlan", Alias: alias, ParentIndex: p.Attrs().Index, MTU: mtu, MAC: mac})
}

func (k *fakeKernel) AddIPvlan(ns, name, parent, alias string, mtu int) error {
	k.Lock()
	defer k.Unlock()
	if !k.ipvlan {
		return ErrNoIPvlan
	}
	if err := k.Write("AddIPvlan", name); err != nil {
		return err
	}
	_, p, err := k.find("", parent)
	if err != nil {
		return err
	}
	return k.add(ns, Link{Name: name, Index: k.NextIndex(), Kind: "ipvlan", Alias: alias, ParentIndex: p.Attrs().Index, MTU: mtu, MAC: p.Attrs().HardwareAddr})
}

func (k *fakeKernel) DeleteLink(ns, name string) error {
	k.Lock()
	defer k.Unlock()
	if _, _, err := k.find(ns, name); err != nil {
		return nil
	}
	if err := k.Write("DeleteLink", name); err != nil {
		return err
	}
	k.DelLink(ns, name)
	return nil
}

// modify changes a link through its bridge Link value: fn may change the
// attributes, hairpin mode and addresses.
func (k *fakeKernel) modify(method, ns, name string, fn func(l *Link)) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write(method, name); err != nil {
		return err
	}
	n, l, err := k.find(ns, name)
	if err != nil {
		return err
	}
	bl := fromNetlink(n, l)
	fn(&bl)
	a := l.Attrs()
	a.Alias, a.MTU, a.HardwareAddr, a.MasterIndex = bl.Alias, bl.MTU, bl.MAC, bl.MasterIndex
	a.Flags &^= net.FlagUp
	if bl.Up {
		a.Flags |= net.FlagUp
	}
	a.Protinfo = nil
	if bl.Hairpin {
		a.Protinfo = &netlink.Protinfo{Hairpin: true}
	}
	for _, p := range n.AddrsOf(a.Index) {
		if !slices.Contains(bl.Addrs, p) {
			n.DelAddr(a.Index, p)
		}
	}
	for _, p := range bl.Addrs {
		n.AddAddr(a.Index, p)
	}
	return nil
}

func (k *fakeKernel) SetHairpin(name string, on bool) error {
	return k.modify("SetHairpin", "", name, func(l *Link) { l.Hairpin = on })
}

func (k *fakeKernel) SetAlias(ns, name, alias string) error {
	return k.modify("SetAlias", ns, name, func(l *Link) { l.Alias = alias })
}

func (k *fakeKernel) SetUp(ns, name string) error {
	return k.modify("SetUp", ns, name, func(l *Link) { l.Up = true })
}

func (k *fakeKernel) SetMTU(ns, name string, mtu int) error {
	return k.modify("SetMTU", ns, name, func(l *Link) { l.MTU = mtu })
}

func (k *fakeKernel) SetMAC(ns, name string, mac net.HardwareAddr) error {
	return k.modify("SetMAC", ns, name, func(l *Link) { l.MAC = mac })
}

func (k *fakeKernel) SetMaster(name, master string) error {
	br := k.link("", master)
	if br == nil {
		return fmt.Errorf("link %q not found in %q", master, "")
	}
	return k.modify("SetMaster", "", name, func(l *Link) { l.MasterIndex = br.Index })
}

func (k *fakeKernel) AddAddr(ns, name string, p netip.Prefix) error {
	return k.modify("AddAddr", ns, name, func(l *Link) {
		if !slices.Contains(l.Addrs, p) {
			l.Addrs = append(l.Addrs, p)
		}
	})
}

func (k *fakeKernel) DelAddr(ns, name string, p netip.Prefix) error {
	return k.modify("DelAddr", ns, name, func(l *Link) {
		l.Addrs = slices.DeleteFunc(l.Addrs, func(x netip.Prefix) bool { return x == p })
	})
}

func (k *fakeKernel) ReplaceDefaultRoute(ns, link string, gw netip.Addr) error {
	k.Lock()
	defer k.Unlock()
	if err := k.Write("ReplaceDefaultRoute", link); err != nil {
		return err
	}
	n, l, err := k.find(ns, link)
	if err != nil {
		return err
	}
	fam := netlink.FAMILY_V4
	if gw.Is6() {
		fam = netlink.FAMILY_V6
	}
	n.Routes = slices.DeleteFunc(n.Routes, func(r netlink.Route) bool { return r.Family == fam })
	n.Routes = append(n.Routes, netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Family: fam})
	return nil
}

func (k *fakeKernel) Announce(ns, name string, ip netip.Addr) error {
	k.Lock()
	defer k.Unlock()
	if _, _, err := k.find(ns, name); err != nil {
		return err
	}
	k.announced = append(k.announced, ns+":"+name+" "+ip.String())
	return nil
}
