package bridge

import "fmt"

// Host placement (Docker's Join): the runtime owns the container's
// namespace and moves the container end of the veth into it itself,
// renaming it and setting its address. The reconciler creates the pair
// with both ends in the host namespace (the container end under
// Interface.HostPeer), and from then on keeps only the host end: on its
// bridge, up, in hairpin mode. Whether the container end is still waiting
// in the host namespace or already moved, nothing is written: a restarted
// agent adopts the pair with no write.

// hostPlaced plans a Container with HostPlaced set.
func (x *planner) hostPlaced(c *Container) {
	cp := &ctrPlan{x: x, c: c, st: &NetnsState{}}
	for i := range c.Interfaces {
		if err := cp.hostPlacedIface(&c.Interfaces[i]); err != nil {
			x.p.ContainerErrors[c.Name] = err
			return
		}
	}
	x.add(cp.dels...)
	x.add(cp.ops...)
}

// hostPlacedIface plans one host-placed interface.
func (cp *ctrPlan) hostPlacedIface(ifc *Interface) error {
	x := cp.x
	n := x.nets[ifc.Network]
	switch {
	case n == nil:
		return fmt.Errorf("network %q not found", ifc.Network)
	case x.p.NetworkErrors[ifc.Network] != nil:
		return fmt.Errorf("network %q: %v", ifc.Network, x.p.NetworkErrors[ifc.Network])
	case n.Driver != DriverBridge:
		return fmt.Errorf("network %q: host placement needs a bridge or overlay network, not %s", ifc.Network, n.Driver)
	case ifc.HostPeer == "" || len(ifc.HostPeer) > 15:
		return fmt.Errorf("host peer name %q is not an interface name", ifc.HostPeer)
	}
	ni := newIface{ifc: ifc, n: n, alias: ContainerAlias(cp.c.Name, ifc.Network), mac: ifc.MAC}
	hostName := HostVethName(cp.c.Netns, ifc.Network)
	if h := linkByName(x.have.Host, hostName); h != nil {
		if h.Kind != "veth" {
			return fmt.Errorf("link %q exists and is not a veth (kind %s)", hostName, h.Kind)
		}
		cp.hostEnd(ni, h)
		return nil
	}
	if p := linkByName(x.have.Host, ifc.HostPeer); p != nil {
		if _, ours := isContainerAlias(p.Alias); !ours {
			return fmt.Errorf("link %q exists and is not ours", ifc.HostPeer)
		}
		cp.del(Op{Kind: OpDeleteLink, Link: p.Name, Network: ifc.Network, Reason: "veth pair incomplete"})
	}
	if ni.mac == nil {
		ni.mac = x.interfaceMAC(ifc)
	}
	x.p.MACs[MACKey(cp.c.Netns, ifc.Network)] = ni.mac.String()
	cp.op(Op{Kind: OpAddVeth, Link: hostName, Master: n.Device, Peer: ifc.HostPeer, Alias: ni.alias, MTU: ifc.MTU, MAC: ni.mac, Network: ifc.Network, Reason: "container on network (its runtime moves the container end)"})
	return nil
}
