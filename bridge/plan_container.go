package bridge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// ctrPlan is the plan of one container: the deletions run before the other
// ops.
type ctrPlan struct {
	x  *planner
	c  *Container
	st *NetnsState
	// ours are our links inside the namespace, by network; wanted the
	// networks the container is on.
	ours   map[string]*Link
	wanted map[string]bool
	dels   []Op
	ops    []Op
	// fresh: the namespace or an interface is new (the route must be set);
	// reset: interfaces sit under each other's names and are all rebuilt.
	fresh, reset bool
}

// container makes a container's namespace, interfaces, route and files.
func (x *planner) container(c *Container) {
	if err := x.containerUsable(c); err != nil {
		x.p.ContainerErrors[c.Name] = err
		return
	}
	st := x.have.Netns[c.Netns]
	if st == nil {
		st = &NetnsState{}
	}
	if netnsutil.IsPath(c.Netns) && !st.Exists {
		// A runtime's namespace (by path) is the runtime's to make: one
		// that is gone is an error of its container, never created here.
		x.p.ContainerErrors[c.Name] = fmt.Errorf("netns %s does not exist", c.Netns)
		return
	}
	// Before touching anything, note the namespace in the Record, so a crash
	// mid-way still leaves us knowing where to clean up.
	if !slices.Contains(x.rec.Namespaces, c.Netns) {
		x.add(Op{Kind: opRecordNamespace, Netns: c.Netns, Container: c.Name})
	}
	cp := &ctrPlan{x: x, c: c, st: st, fresh: !st.Exists}
	cp.namespace()
	cp.dropUnwanted()
	if err := cp.checkNames(); err != nil {
		x.p.ContainerErrors[c.Name] = err
		return
	}
	for i := range c.Interfaces {
		if err := cp.iface(&c.Interfaces[i]); err != nil {
			x.p.ContainerErrors[c.Name] = err
			return
		}
	}
	cp.route()
	cp.files()
	x.add(cp.dels...)
	x.add(cp.ops...)
}

// containerUsable checks the namespace name and the container's networks.
func (x *planner) containerUsable(c *Container) error {
	if !netnsutil.ValidName(c.Netns) && !netnsutil.IsPath(c.Netns) {
		return fmt.Errorf("invalid netns name %q", c.Netns)
	}
	for _, ifc := range c.Interfaces {
		if x.nets[ifc.Network] == nil {
			return fmt.Errorf("network %q not found", ifc.Network)
		}
		if err := x.p.NetworkErrors[ifc.Network]; err != nil {
			return fmt.Errorf("network %q: %v", ifc.Network, err)
		}
	}
	return nil
}

func (cp *ctrPlan) op(o Op) {
	o.Container = cp.c.Name
	cp.ops = append(cp.ops, o)
}

func (cp *ctrPlan) del(o Op) {
	o.Container = cp.c.Name
	cp.dels = append(cp.dels, o)
}

// namespace creates the namespace, or sets its loopback up.
func (cp *ctrPlan) namespace() {
	ns := cp.c.Netns
	if !cp.st.Exists {
		cp.op(Op{Kind: OpCreateNetns, Netns: ns, Reason: "container wanted"})
	} else if lo := linkByName(cp.st.Links, "lo"); lo != nil && !lo.Up {
		cp.op(Op{Kind: OpSetUp, Netns: ns, Link: "lo", Reason: "loopback down"})
	}
}

// dropUnwanted finds our links in the namespace and deletes those of
// networks the container left.
func (cp *ctrPlan) dropUnwanted() {
	cp.ours = map[string]*Link{}
	for i := range cp.st.Links {
		l := &cp.st.Links[i]
		if net, ok := isContainerAlias(l.Alias); ok {
			cp.ours[net] = l
		}
	}
	cp.wanted = map[string]bool{}
	for _, ifc := range cp.c.Interfaces {
		cp.wanted[ifc.Network] = true
	}
	for net, l := range cp.ours {
		if !cp.wanted[net] {
			cp.del(Op{Kind: OpDeleteLink, Netns: cp.c.Netns, Link: l.Name, Network: net, Reason: "container no longer on network"})
		}
	}
	slices.SortFunc(cp.dels, func(a, b Op) int { return strings.Compare(a.Link, b.Link) })
}

// checkNames sets reset when an interface of ours sits under another of
// the wanted names (the network order changed: names cannot be swapped in
// place, so all are rebuilt), and fails when a wanted name is held by a
// link that is not ours.
func (cp *ctrPlan) checkNames() error {
	for _, ifc := range cp.c.Interfaces {
		if l := cp.ours[ifc.Network]; l != nil && l.Name != ifc.IfName {
			cp.reset = true
		}
		occ := linkByName(cp.st.Links, ifc.IfName)
		if occ == nil || occ == cp.ours[ifc.Network] {
			continue
		}
		if net, ok := isContainerAlias(occ.Alias); ok {
			if cp.wanted[net] {
				cp.reset = true
			}
			continue
		}
		return fmt.Errorf("link %q in netns %q exists and is not ours", ifc.IfName, cp.c.Netns)
	}
	return nil
}

// newIface is what building one interface needs.
type newIface struct {
	ifc   *Interface
	n     *Network
	peer  *Link // our link for the network inside the namespace, if any
	alias string
	mac   net.HardwareAddr
	addrs []netip.Prefix
}

// iface makes one interface: built anew, or kept and corrected.
func (cp *ctrPlan) iface(ifc *Interface) error {
	ni := newIface{ifc: ifc, n: cp.x.nets[ifc.Network], peer: cp.ours[ifc.Network], alias: ContainerAlias(cp.c.Name, ifc.Network), mac: ifc.MAC}
	if ni.peer != nil && len(ni.peer.MAC) == 6 {
		ni.mac = ni.peer.MAC // rebuilt interfaces keep their MAC
	}
	if ni.mac == nil {
		ni.mac = cp.x.interfaceMAC(ifc)
	}
	ni.addrs = ifc.Prefixes()
	built := false
	switch ni.n.Driver {
	case DriverBridge:
		var err error
		if built, err = cp.veth(ni); err != nil {
			return err
		}
	case DriverMacvlan, DriverIPvlan:
		built = cp.child(ni)
	}
	if !built {
		cp.keep(ni)
	}
	return nil
}

// veth makes the veth pair of a bridge network, or corrects its host end;
// it reports whether it built the pair anew.
func (cp *ctrPlan) veth(ni newIface) (bool, error) {
	ifc, peer := ni.ifc, ni.peer
	hostName := HostVethName(cp.c.Netns, ifc.Network)
	h := linkByName(cp.x.have.Host, hostName)
	if h != nil && h.Kind != "veth" {
		return false, fmt.Errorf("link %q exists and is not a veth (kind %s)", hostName, h.Kind)
	}
	paired := h != nil && peer != nil && peer.Kind == "veth" && peer.ParentIndex == h.Index && h.ParentIndex == peer.Index
	if paired && !cp.reset && peer.Name == ifc.IfName {
		cp.hostEnd(ni, h)
		return false, nil
	}
	const why = "veth pair incomplete or misnamed"
	if h != nil {
		cp.del(Op{Kind: OpDeleteLink, Link: hostName, Network: ifc.Network, Reason: why})
	}
	if peer != nil {
		cp.del(Op{Kind: OpDeleteLink, Netns: cp.c.Netns, Link: peer.Name, Network: ifc.Network, Reason: why})
	}
	cp.op(Op{Kind: OpAddVeth, Link: hostName, Master: ni.n.Device, Netns: cp.c.Netns, Peer: ifc.IfName, Alias: ni.alias, MTU: ifc.MTU, MAC: ni.mac, Network: ifc.Network, Reason: "container on network"})
	cp.born(ni)
	return true, nil
}

// hostEnd corrects the host end of a veth pair that stays.
func (cp *ctrPlan) hostEnd(ni newIface, h *Link) {
	ifc, net := ni.ifc, ni.ifc.Network
	if h.Alias != ni.alias {
		cp.op(Op{Kind: OpSetAlias, Link: h.Name, Alias: ni.alias, Network: net, Reason: "adopt veth"})
	}
	if br := linkByName(cp.x.have.Host, ni.n.Device); br == nil || h.MasterIndex != br.Index {
		cp.op(Op{Kind: OpSetMaster, Link: h.Name, Master: ni.n.Device, Network: net, Reason: "veth not on its bridge"})
	}
	if ifc.MTU != 0 && h.MTU != ifc.MTU {
		cp.op(Op{Kind: OpSetMTU, Link: h.Name, MTU: ifc.MTU, Network: net, Reason: "mtu in config"})
	}
	if !h.Hairpin {
		cp.op(Op{Kind: OpSetHairpin, Link: h.Name, On: true, Network: net, Reason: "published ports reached from the same bridge"})
	}
	if !h.Up {
		cp.op(Op{Kind: OpSetUp, Link: h.Name, Network: net, Reason: "host end down"})
	}
}

// child makes the macvlan or ipvlan child of a network unless the right
// one is there; it reports whether it built one.
func (cp *ctrPlan) child(ni newIface) bool {
	ifc, peer := ni.ifc, ni.peer
	if peer != nil && peer.Kind == ni.n.Driver && !cp.reset && peer.Name == ifc.IfName {
		return false
	}
	if peer != nil {
		cp.del(Op{Kind: OpDeleteLink, Netns: cp.c.Netns, Link: peer.Name, Network: ifc.Network, Reason: "interface misnamed or of the wrong kind"})
	}
	kind, mac := OpAddMacvlan, ni.mac
	if ni.n.Driver == DriverIPvlan {
		kind, mac = OpAddIPvlan, nil // an ipvlan child has its parent's MAC
	}
	cp.op(Op{Kind: kind, Netns: cp.c.Netns, Link: ifc.IfName, Peer: ni.n.Parent, Alias: ni.alias, MTU: ifc.MTU, MAC: mac, Network: ifc.Network, Reason: "container on network"})
	cp.born(ni)
	return true
}

// born finishes a new interface: its address, up, and its announcement.
func (cp *ctrPlan) born(ni newIface) {
	ifc := ni.ifc
	cp.ops = append(cp.ops, addrOps(cp.c.Netns, ifc.IfName, nil, ni.addrs, cp.c.Name, ifc.Network, "container address")...)
	cp.op(Op{Kind: OpSetUp, Netns: cp.c.Netns, Link: ifc.IfName, Network: ifc.Network, Reason: "new interface"})
	if ni.n.Driver != DriverIPvlan {
		cp.ops = append(cp.ops, announce(cp.c, ifc, "new interface")...)
	}
	cp.fresh = true
}

// keep corrects the container side of an interface that stays.
func (cp *ctrPlan) keep(ni newIface) {
	ifc, peer, ns := ni.ifc, ni.peer, cp.c.Netns
	cp.x.p.MACs[MACKey(ns, ifc.Network)] = peer.MAC.String()
	if peer.Alias != ni.alias {
		cp.op(Op{Kind: OpSetAlias, Netns: ns, Link: peer.Name, Alias: ni.alias, Network: ifc.Network, Reason: "container renamed"})
	}
	if ifc.MTU != 0 && peer.MTU != ifc.MTU {
		cp.op(Op{Kind: OpSetMTU, Netns: ns, Link: peer.Name, MTU: ifc.MTU, Network: ifc.Network, Reason: "mtu in config"})
	}
	cp.ops = append(cp.ops, addrOps(ns, peer.Name, peer.Addrs, ni.addrs, cp.c.Name, ifc.Network, "container address")...)
	if !peer.Up {
		cp.op(Op{Kind: OpSetUp, Netns: ns, Link: peer.Name, Network: ifc.Network, Reason: "interface down"})
	}
	if ni.n.Driver != DriverIPvlan {
		for _, a := range ifc.Prefixes() {
			if !slices.Contains(peer.Addrs, a) {
				cp.ops = append(cp.ops, announceAddr(cp.c, ifc, a, "address changed"))
			}
		}
	}
}

// route sets the default route of each family via the first interface
// with a gateway of that family, unless the namespace has it already.
func (cp *ctrPlan) route() {
	for _, v6 := range []bool{false, true} {
		var gw *Interface
		var via netip.Addr
		for i := range cp.c.Interfaces {
			via = cp.c.Interfaces[i].Gateway
			if v6 {
				via = cp.c.Interfaces[i].Gateway6
			}
			if via.IsValid() {
				gw = &cp.c.Interfaces[i]
				break
			}
		}
		if gw == nil || cp.hasRoute(gw.IfName, via) {
			continue
		}
		cp.op(Op{Kind: OpReplaceRoute, Netns: cp.c.Netns, Link: gw.IfName, Gateway: via, Network: gw.Network, Reason: "gateway of first network"})
	}
}

// hasRoute reports whether the namespace keeps its default route via gw
// on link (a new or rebuilt interface lost it).
func (cp *ctrPlan) hasRoute(link string, gw netip.Addr) bool {
	if cp.fresh || cp.reset {
		return false
	}
	for _, r := range cp.st.Routes {
		if r.IPv6 == gw.Is6() && r.Link == link && r.Gateway == gw {
			return true
		}
	}
	return false
}

// files writes the name files that differ.
func (cp *ctrPlan) files() {
	if cp.c.Files == nil || netnsutil.IsPath(cp.c.Netns) {
		return // a runtime's namespace: the runtime writes its own /etc
	}
	dir := filepath.Join(cp.x.etc(), cp.c.Netns)
	have := cp.x.have.Files[cp.c.Netns]
	for _, name := range NameFiles {
		content, ok := cp.c.Files[name]
		if !ok {
			continue
		}
		if old, ok := have[name]; !ok || !bytes.Equal(old, content) {
			cp.op(Op{Kind: OpWriteFile, Netns: cp.c.Netns, File: filepath.Join(dir, name), Content: content, Reason: "name file out of date"})
		}
	}
}

// interfaceMAC picks the MAC of a new interface that has none recorded:
// the one derived from its IPv4 address unless a container that stays on
// the network holds it already, else a new one.
func (x *planner) interfaceMAC(ifc *Interface) net.HardwareAddr {
	mac := AddrMAC(ifc.Addr.Addr())
	if mac == nil || x.macs[ifc.Network][mac.String()] {
		mac = x.newMAC()
	}
	if x.macs[ifc.Network] == nil {
		x.macs[ifc.Network] = map[string]bool{}
	}
	x.macs[ifc.Network][mac.String()] = true
	return mac
}

// usedMACs lists by network the MACs the wanted containers ask for or
// already have.
func usedMACs(want *State, have *Actual) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	use := func(network string, mac net.HardwareAddr) {
		if len(mac) == 0 {
			return
		}
		if out[network] == nil {
			out[network] = map[string]bool{}
		}
		out[network][mac.String()] = true
	}
	for _, c := range want.Containers {
		for _, ifc := range c.Interfaces {
			use(ifc.Network, ifc.MAC)
		}
		if st := have.Netns[c.Netns]; st != nil {
			for _, l := range st.Links {
				if net, ok := isContainerAlias(l.Alias); ok {
					use(net, l.MAC)
				}
			}
		}
	}
	return out
}

// announce makes the gratuitous ARP (IPv4) and the unsolicited neighbour
// advertisement (IPv6) of an interface that just got its addresses, so
// peers that cached another MAC for one (a container that had the address
// before, with a MAC recorded before MACs were derived, or this one before
// its address moved) switch at once.
func announce(c *Container, ifc *Interface, why string) []Op {
	var ops []Op
	for _, a := range ifc.Prefixes() {
		ops = append(ops, announceAddr(c, ifc, a, why))
	}
	return ops
}

func announceAddr(c *Container, ifc *Interface, a netip.Prefix, why string) Op {
	return Op{Kind: OpAnnounce, Netns: c.Netns, Link: ifc.IfName, Addr: a, Container: c.Name, Network: ifc.Network, Reason: why}
}
