package explain

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/overlay"
)

// Annotate ties every item of in to its cause from c and adds a problem
// for each wanted device or namespace the kernel lacks.
func Annotate(in *api.Inspect, c *Causes) {
	found := map[string]bool{}
	for i := range in.Bridges {
		b := &in.Bridges[i]
		found[b.Name] = true
		c.annotateBridge(b)
	}
	for i := range in.VXLANs {
		x := &in.VXLANs[i]
		found[x.Name] = true
		c.annotateVXLAN(x)
	}
	for i := range in.Iptables {
		ch := &in.Iptables[i]
		for j := range ch.Rules {
			c.annotateRule(ch, &ch.Rules[j])
		}
	}
	for i := range in.Containers {
		ct := &in.Containers[i]
		if !ct.Exists {
			in.Problems = append(in.Problems, fmt.Sprintf("container %q: namespace %q does not exist", ct.Name, ct.Netns))
		}
		for j := range ct.Interfaces {
			c.annotateInterface(ct, &ct.Interfaces[j])
		}
	}
	for _, n := range c.Networks {
		if n.Bridge != "" && !found[n.Bridge] {
			in.Problems = append(in.Problems, fmt.Sprintf("network %q: bridge %q not found", n.Name, n.Bridge))
		}
		if n.Driver == config.DriverOverlay && !found[n.VXLAN] {
			in.Problems = append(in.Problems, fmt.Sprintf("network %q: vxlan device %q not found", n.Name, n.VXLAN))
		}
	}
}

// linkAlias decodes a link alias vxmesh writes: "vxmesh:net=N",
// "vxmesh:ctr=C,net=N" or "vxmesh:vxlan net=N".
func linkAlias(alias string) (ctr, network string, vxlan, ok bool) {
	if rest, found := strings.CutPrefix(alias, overlay.AliasPrefix); found {
		return "", rest, true, rest != ""
	}
	rest, found := strings.CutPrefix(alias, bridge.AliasPrefix)
	if !found {
		return "", "", false, false
	}
	for kv := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "ctr":
			ctr = val
		case "net":
			network = val
		}
	}
	return ctr, network, false, network != ""
}

// network is the named network, or nil.
func (c *Causes) network(name string) *Network {
	for i := range c.Networks {
		if c.Networks[i].Name == name {
			return &c.Networks[i]
		}
	}
	return nil
}

// overlayNetwork is the named overlay network, or nil.
func (c *Causes) overlayNetwork(name string) *Network {
	if n := c.network(name); n != nil && n.Driver == config.DriverOverlay {
		return n
	}
	return nil
}

// networkOfBridge is the network whose bridge is dev.
func (c *Causes) networkOfBridge(dev string) *Network {
	for i := range c.Networks {
		if c.Networks[i].Bridge == dev {
			return &c.Networks[i]
		}
	}
	return nil
}

// vethOwner finds the container and network whose host veth is named dev.
func (c *Causes) vethOwner(dev string) (ctr, network string, ok bool) {
	for _, x := range c.Containers {
		if x.Netns == "" || x.Joins != "" {
			continue
		}
		for _, n := range x.Networks {
			if bridge.HostVethName(x.Netns, n) == dev {
				return x.Name, n, true
			}
		}
	}
	return "", "", false
}

// attached reports whether container ctr is on network in the view.
func (c *Causes) attached(ctr, network string) bool {
	i := slices.IndexFunc(c.Containers, func(x Container) bool { return x.Name == ctr })
	if i < 0 || c.Containers[i].Failed {
		return false
	}
	return slices.Contains(c.Containers[i].Networks, network)
}

func (c *Causes) annotateBridge(b *api.InspectBridge) {
	_, network, _, ok := linkAlias(b.Alias)
	n := c.networkOfBridge(b.Name)
	switch {
	case n != nil:
		b.Network, b.Driver = n.Name, n.Driver
		if n.Gateway.IsValid() {
			b.Gateway = n.Gateway.String()
		}
		b.Note = "bridge of network " + n.Name
		if n.Driver == config.DriverOverlay {
			b.Note = "gateway bridge of overlay " + n.Name + " (same gateway IP and MAC on every host)"
		}
		if n.Internal {
			b.Note += ", internal"
		}
		if !ok {
			b.Unknown, b.Note = true, "named like the bridge of network "+n.Name+" but without vxmesh's alias: not vxmesh's"
		}
	case ok:
		b.Network, b.Unknown, b.Note = network, true, "network "+network+" is not configured: stale"
	default:
		b.Unknown, b.Note = true, "not vxmesh's"
	}
	for i := range b.Ports {
		c.annotatePort(&b.Ports[i])
	}
}

func (c *Causes) annotatePort(p *api.InspectPort) {
	ctr, network, vxlan, ok := linkAlias(p.Alias)
	switch {
	case vxlan:
		p.Network, p.Note = network, "VXLAN tunnel of overlay "+network+" to the other hosts"
		if c.overlayNetwork(network) == nil {
			p.Unknown, p.Note = true, "VXLAN device of overlay "+network+", which is not configured: stale"
		}
	case ok && ctr != "":
		p.Container, p.Network = ctr, network
		p.Note = "host end of the container's veth" + c.runtimeNote(ctr)
		if !c.attached(ctr, network) {
			p.Unknown, p.Note = true, "container is not on this network in the agent's view: stale"
		}
	default:
		if ct, n, found := c.vethOwner(p.Name); found {
			p.Container, p.Network, p.Note = ct, n, "host end of the container's veth (alias missing)"
			return
		}
		p.Unknown, p.Note = true, "not vxmesh's"
	}
}

func (c *Causes) annotateVXLAN(x *api.InspectVXLAN) {
	_, network, _, ok := linkAlias(x.Alias)
	n := c.network(network)
	if !ok || n == nil || n.Driver != config.DriverOverlay {
		// Fall back to the device name.
		for i := range c.Networks {
			if o := &c.Networks[i]; o.Driver == config.DriverOverlay && o.VXLAN == x.Name {
				n = o
			}
		}
	}
	switch {
	case n == nil:
		x.Network, x.Unknown, x.Note = network, true, "overlay not configured: stale"
	case !ok:
		x.Network, x.Unknown, x.Note = n.Name, true, "named like overlay "+n.Name+"'s device but without vxmesh's alias: not vxmesh's"
	default:
		x.Network, x.Note = n.Name, "VXLAN device of overlay "+n.Name
	}
	idx := c.remoteOn(x.Network)
	for i := range x.FDB {
		c.annotateFDB(x, idx, &x.FDB[i])
	}
	for i := range x.Neigh {
		annotateNeigh(x, idx, &x.Neigh[i])
	}
}

func (c *Causes) annotateInterface(ct *api.InspectContainer, ifc *api.InspectInterface) {
	if ifc.Name == "lo" {
		ifc.Note = "loopback"
		return
	}
	ctr, network, _, ok := linkAlias(ifc.Alias)
	if !ok {
		ifc.Unknown, ifc.Note = true, "not vxmesh's"
		return
	}
	ifc.Container, ifc.Network = ctr, network
	if n := c.network(network); n != nil {
		ifc.Note = n.Driver + " network"
	}
	if ctr != ct.Name && !slices.Contains(ct.SharedBy, ctr) {
		ifc.Unknown, ifc.Note = true, "made for container "+ctr+", not this namespace's: stale"
		return
	}
	if !c.attached(ctr, network) {
		ifc.Unknown, ifc.Note = true, "the container is not on this network in the agent's view: stale"
	}
}

// remoteIndex holds the endpoints the agent programs on one network.
type remoteIndex struct {
	byMAC  map[string][]Remote
	byIP   map[netip.Addr][]Remote
	byVTEP map[netip.Addr]string // VTEP -> host
	gossip []api.Endpoint        // gossip's records on the network
}

// remoteOn indexes the endpoints the agent programs for network.
func (c *Causes) remoteOn(network string) *remoteIndex {
	x := &remoteIndex{byMAC: map[string][]Remote{}, byIP: map[netip.Addr][]Remote{}, byVTEP: map[netip.Addr]string{}}
	for _, r := range c.Remote {
		if r.Network != network {
			continue
		}
		m := r.MAC.String()
		x.byMAC[m] = append(x.byMAC[m], r)
		x.byIP[r.IP] = append(x.byIP[r.IP], r)
		if _, ok := x.byVTEP[r.VTEP]; !ok {
			x.byVTEP[r.VTEP] = r.Host
		}
	}
	for _, g := range c.Gossip {
		if g.Network == network {
			x.gossip = append(x.gossip, g)
		}
	}
	return x
}

// mac finds the endpoint with mac, preferably behind dst.
func (x *remoteIndex) mac(mac string, dst netip.Addr) (Remote, bool) {
	rs := x.byMAC[mac]
	for _, r := range rs {
		if r.VTEP == dst {
			return r, true
		}
	}
	if len(rs) > 0 {
		return rs[0], true
	}
	return Remote{}, false
}

// ip finds the endpoint with ip, preferably at mac.
func (x *remoteIndex) ip(ip netip.Addr, mac string) (Remote, bool) {
	rs := x.byIP[ip]
	for _, r := range rs {
		if r.MAC.String() == mac {
			return r, true
		}
	}
	if len(rs) > 0 {
		return rs[0], true
	}
	return Remote{}, false
}

// gossipBy finds a record gossip has on the network (programmed or not).
func (x *remoteIndex) gossipBy(match func(api.Endpoint) bool) (api.Endpoint, bool) {
	for _, e := range x.gossip {
		if match(e) {
			return e, true
		}
	}
	return api.Endpoint{}, false
}

func isZeroMACString(s string) bool { return s == "00:00:00:00:00:00" }

// notProgrammed explains a record gossip has that the agent does not
// program.
func notProgrammed(g api.Endpoint) string {
	if g.Note != "" {
		return "known to gossip but not programmed here (" + g.Note + ")"
	}
	return "known to gossip but not programmed here"
}

func (c *Causes) annotateFDB(x *api.InspectVXLAN, idx *remoteIndex, e *api.InspectFDB) {
	network := x.Network
	dst, _ := netip.ParseAddr(e.Dst)
	switch {
	case !e.Self:
		annotateBridgeFDB(x, idx, e, dst)
	case isZeroMACString(e.MAC):
		c.annotateFlood(network, idx, e, dst)
	default:
		c.annotateRemoteFDB(network, idx, e, dst)
	}
}

// annotateBridgeFDB explains an entry of the bridge's own table for its
// port: the kernel's, not ours.
func annotateBridgeFDB(x *api.InspectVXLAN, idx *remoteIndex, e *api.InspectFDB, dst netip.Addr) {
	if strings.EqualFold(e.MAC, x.MAC) {
		e.Note = "bridge " + e.Master + ": the port's own MAC"
		return
	}
	if r, ok := idx.mac(e.MAC, dst); ok {
		e.Container, e.Network, e.Host = r.Container, x.Network, r.Host
	}
	e.Note = "learned by bridge " + e.Master + " from traffic (the kernel's)"
}

// annotateFlood explains a flood-list entry (all-zero MAC).
func (c *Causes) annotateFlood(network string, idx *remoteIndex, e *api.InspectFDB, dst netip.Addr) {
	e.Network = network
	if h, ok := idx.byVTEP[dst]; ok {
		e.Host = h
		e.Note = "flood list: broadcast and unknown unicast go to this peer"
		if e.State != "permanent" {
			e.Unknown, e.Note = true, "flood destination that is not permanent: not written by vxmesh"
		}
		return
	}
	e.Unknown = true
	if h, ok := c.Peers[dst]; ok {
		e.Host, e.Note = h, "flood destination, but the peer has no endpoint on "+network+" in the agent's view: stale"
		return
	}
	e.Note = "flood destination not in the agent's view: stale or added by hand"
}

// annotateRemoteFDB explains a MAC -> VTEP entry of the device's table.
func (c *Causes) annotateRemoteFDB(network string, idx *remoteIndex, e *api.InspectFDB, dst netip.Addr) {
	if r, ok := idx.mac(e.MAC, dst); ok {
		e.Container, e.Network, e.Host = r.Container, network, r.Host
		switch {
		case r.VTEP != dst:
			e.Unknown, e.Note = true, fmt.Sprintf("stale: the agent has this MAC behind %s", r.VTEP)
		case e.State != "permanent":
			e.Unknown, e.Note = true, "not permanent: not written by vxmesh"
		default:
			e.Note = "frames to it go to " + e.Dst + " over VXLAN"
		}
		return
	}
	e.Unknown = true
	if g, ok := idx.gossipBy(func(g api.Endpoint) bool { return g.MAC == e.MAC }); ok {
		e.Container, e.Network, e.Host, e.Note = g.Container, network, g.Host, notProgrammed(g)
		return
	}
	if h, ok := c.Peers[dst]; ok {
		e.Host = h
	}
	e.Note = "not in the agent's view: stale or added by hand"
}

func annotateNeigh(x *api.InspectVXLAN, idx *remoteIndex, e *api.InspectNeigh) {
	network := x.Network
	ip, _ := netip.ParseAddr(e.IP)
	if r, ok := idx.ip(ip, e.MAC); ok {
		e.Container, e.Network, e.Host = r.Container, network, r.Host
		switch {
		case r.MAC.String() != e.MAC:
			e.Unknown, e.Note = true, fmt.Sprintf("stale: the agent has this address at %s", r.MAC)
		case !strings.Contains(e.State, "PERMANENT"):
			e.Unknown, e.Note = true, "not permanent: not written by vxmesh"
		default:
			e.Note = "ARP for it is answered here (proxy)"
		}
		return
	}
	e.Unknown = true
	if g, ok := idx.gossipBy(func(g api.Endpoint) bool { return g.IP == e.IP }); ok {
		e.Container, e.Network, e.Host, e.Note = g.Container, network, g.Host, notProgrammed(g)
		return
	}
	e.Note = "not in the agent's view: stale or added by hand"
}

// runtimeNote names the runtime container behind container ctr, "" for
// vxmesh's own: " (cni container ID)".
func (c *Causes) runtimeNote(ctr string) string {
	i := slices.IndexFunc(c.Containers, func(x Container) bool { return x.Name == ctr })
	if i < 0 || c.Containers[i].Runtime == "" {
		return ""
	}
	x := c.Containers[i]
	return " (" + x.Runtime + " container " + x.RuntimeID + ")"
}
