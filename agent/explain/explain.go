// Package explain builds `vxmesh inspect`'s answer: the kernel state
// vxmesh made on a host, each item tied to what caused it.
//
// It works on two plain values. Kernel is what the kernel has, as the
// readers in bridge/ and overlay/ return it (Read fills it). Causes is
// what the agent knows from its last pass: networks, containers, remote
// endpoints, gossip records, peers and published ports. Explain, a pure
// function of the two, turns them into an api.Inspect whose items carry
// their cause; what Causes does not explain is marked Unknown, and what
// Causes wants but the kernel lacks is a problem.
package explain

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/overlay"
)

// Kernel is what the kernel has, read back for inspection.
type Kernel struct {
	// ReadAt is when the kernel was read.
	ReadAt time.Time
	// Links are the host namespace's links.
	Links []bridge.Link
	// BridgeAttrs are the bridges' STP state and id by link index; nil
	// when not read.
	BridgeAttrs map[int]bridge.BridgeAttrs
	// VXLANs are our VXLAN devices with their entries.
	VXLANs []overlay.InspectedVXLAN
	// Chains are our iptables chains and the jumps into them.
	Chains []bridge.ChainRules
	// Chains6 are the same in ip6tables (nil without ip6tables).
	Chains6 []bridge.ChainRules
	// Namespaces are the container namespaces read from inside, one for
	// each of Causes.Namespaces, in that order (fewer when reading
	// stopped early).
	Namespaces []bridge.Namespace
	// Problems are what could not be read.
	Problems []string
}

// Causes is what the agent knows, to explain the kernel state with: its
// last pass's view.
type Causes struct {
	// Host is this host's name; Address its underlay address (invalid:
	// none).
	Host    string
	Address netip.Addr
	// Networks are the configured networks, in config order.
	Networks []Network
	// Containers are all containers the agent resolved, attached or not.
	Containers []Container
	// Remote are the endpoints on other hosts the agent programs (a
	// network's FDB and neighbour entries come from them).
	Remote []Remote
	// Gossip are the other hosts' endpoints gossip knows, programmed or
	// not (api.Endpoint.Note says why not).
	Gossip []api.Endpoint
	// Peers maps a peer's underlay address (its VTEP) to its name.
	Peers map[netip.Addr]string
	// Ports are the published ports by container.
	Ports map[string][]portmap.Mapping
}

// Network is one configured network.
type Network struct {
	Name string
	// Driver is the config driver: bridge, overlay, macvlan, ipvlan.
	Driver string
	// Bridge is its bridge device ("" for macvlan and ipvlan).
	Bridge string
	// VXLAN is an overlay network's VXLAN device ("" for others).
	VXLAN    string
	Gateway  netip.Addr
	Internal bool
}

// Container is one container as the agent resolved it.
type Container struct {
	Name string
	// Netns is the namespace it lives in ("" for mode host).
	Netns string
	// Joins is the container whose namespace it shares (mode
	// container:X), "" for none.
	Joins string
	// Failed marks a container the agent could not attach.
	Failed bool
	// Networks are the networks of its interfaces, eth0's first.
	Networks []string
	// Runtime and RuntimeID name the runtime that attached it (cni,
	// docker) and its container ID there; "" for vxmesh's own.
	Runtime, RuntimeID string
	// HostPlaced: its runtime owns the namespace (Docker), which is not
	// read; only the host ends of its veths are vxmesh's.
	HostPlaced bool
}

// Remote is an endpoint on another host the agent programs.
type Remote struct {
	Network   string
	Container string
	Host      string
	IP        netip.Addr
	MAC       net.HardwareAddr
	VTEP      netip.Addr
}

// Namespace is a container namespace to look into.
type Namespace struct {
	Container string
	Netns     string
	// SharedBy are the containers that join it.
	SharedBy []string
	// Runtime and RuntimeID: see Container.
	Runtime, RuntimeID string
}

// Namespaces are the container namespaces to read: each attached
// container with a namespace of its own, with the containers that join
// it.
func (c *Causes) Namespaces() []Namespace {
	var out []Namespace
	idx := map[string]int{}
	for _, x := range c.Containers {
		if x.Failed || x.Netns == "" || x.Joins != "" || x.HostPlaced {
			continue
		}
		idx[x.Netns] = len(out)
		out = append(out, Namespace{Container: x.Name, Netns: x.Netns, Runtime: x.Runtime, RuntimeID: x.RuntimeID})
	}
	for _, x := range c.Containers {
		if !x.Failed && x.Joins != "" {
			if i, ok := idx[x.Netns]; ok {
				out[i].SharedBy = append(out[i].SharedBy, x.Name)
			}
		}
	}
	return out
}

// WantedBridges are the bridge devices of the networks.
func (c *Causes) WantedBridges() map[string]bool {
	out := map[string]bool{}
	for _, n := range c.Networks {
		if n.Bridge != "" {
			out[n.Bridge] = true
		}
	}
	return out
}

// WantedVXLANs are the VXLAN devices of the overlay networks.
func (c *Causes) WantedVXLANs() map[string]bool {
	out := map[string]bool{}
	for _, n := range c.Networks {
		if n.Driver == config.DriverOverlay {
			out[n.VXLAN] = true
		}
	}
	return out
}

// Explain ties every item the kernel has to its cause and lists what the
// causes want that the kernel lacks.
func Explain(k Kernel, c Causes) *api.Inspect {
	in := &api.Inspect{
		Host: c.Host, ReadAt: k.ReadAt,
		Bridges: []api.InspectBridge{}, VXLANs: []api.InspectVXLAN{}, Iptables: []api.InspectChain{}, Containers: []api.InspectContainer{},
		Problems: slices.Clone(k.Problems),
	}
	if c.Address.IsValid() {
		in.Address = c.Address.String()
	}
	byIndex := map[int]bridge.Link{}
	for _, l := range k.Links {
		byIndex[l.Index] = l
	}
	in.Bridges = bridges(k.Links, k.BridgeAttrs, c.WantedBridges())
	for _, x := range k.VXLANs {
		in.VXLANs = append(in.VXLANs, vxlan(x))
	}
	for _, ch := range k.Chains {
		in.Iptables = append(in.Iptables, chain(ch))
	}
	for _, ch := range k.Chains6 {
		c := chain(ch)
		c.Family = "ipv6"
		in.Iptables = append(in.Iptables, c)
	}
	for i, ns := range c.Namespaces() {
		if i >= len(k.Namespaces) {
			break
		}
		in.Containers = append(in.Containers, container(ns, k.Namespaces[i], byIndex))
	}
	Annotate(in, &c)
	return in
}

// isOurs reports whether a link alias is one vxmesh writes.
func isOurs(alias string) bool { return strings.HasPrefix(alias, bridge.AliasPrefix) }

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func prefixStrings(ps []netip.Prefix) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// bridges lists our bridges (by alias or wanted name) and their ports,
// as brctl does, ports sorted by name.
func bridges(links []bridge.Link, attrs map[int]bridge.BridgeAttrs, wanted map[string]bool) []api.InspectBridge {
	out := []api.InspectBridge{}
	for _, l := range links {
		if l.Kind != "bridge" || !(isOurs(l.Alias) || wanted[l.Name]) {
			continue
		}
		b := api.InspectBridge{Name: l.Name, MAC: macString(l.MAC), MTU: l.MTU, Up: l.Up, Alias: l.Alias, Addrs: prefixStrings(l.Addrs), Ports: []api.InspectPort{}}
		if at, ok := attrs[l.Index]; ok {
			b.ID, b.STP = at.ID, at.STP
		}
		for _, p := range links {
			if p.MasterIndex == l.Index {
				b.Ports = append(b.Ports, api.InspectPort{Name: p.Name, Kind: p.Kind, MAC: macString(p.MAC), MTU: p.MTU, Up: p.Up, Hairpin: p.Hairpin, Alias: p.Alias})
			}
		}
		slices.SortFunc(b.Ports, func(x, y api.InspectPort) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, b)
	}
	slices.SortFunc(out, func(x, y api.InspectBridge) int { return strings.Compare(x.Name, y.Name) })
	return out
}

func vxlan(x overlay.InspectedVXLAN) api.InspectVXLAN {
	out := api.InspectVXLAN{
		Name: x.Name, VNI: x.VNI, Local: x.Local, Port: x.Port, Learning: x.Learning, Proxy: x.Proxy,
		L2Miss: x.L2Miss, L3Miss: x.L3Miss, MTU: x.MTU, MAC: x.MAC, Master: x.Master, Up: x.Up, Alias: x.Alias,
		FDB: []api.InspectFDB{}, Neigh: []api.InspectNeigh{},
	}
	for _, e := range x.FDB {
		out.FDB = append(out.FDB, api.InspectFDB{Line: e.Line, MAC: e.MAC, Dst: e.Dst, Self: e.Self, Master: e.Master, State: e.State})
	}
	for _, e := range x.Neigh {
		out.Neigh = append(out.Neigh, api.InspectNeigh{Line: e.Line, IP: e.IP, MAC: e.MAC, State: e.State})
	}
	return out
}

func chain(c bridge.ChainRules) api.InspectChain {
	out := api.InspectChain{Table: c.Table, Chain: c.Chain, Builtin: c.Builtin, Rules: []api.InspectRule{}}
	for _, r := range c.Rules {
		out.Rules = append(out.Rules, api.InspectRule{Rule: r})
	}
	return out
}

// container describes one namespace as read; host are the host's links
// by index, to name the host ends of veths.
func container(ns Namespace, k bridge.Namespace, host map[int]bridge.Link) api.InspectContainer {
	out := api.InspectContainer{Name: ns.Container, Netns: ns.Netns, Runtime: ns.Runtime, RuntimeID: ns.RuntimeID, SharedBy: ns.SharedBy, Interfaces: []api.InspectInterface{}, Routes: []string{}, EtcDir: k.EtcDir, Files: k.Files}
	out.Exists = k.Exists
	if k.LinksErr != nil {
		out.Routes = append(out.Routes, "(links unreadable: "+k.LinksErr.Error()+")")
		return out
	}
	for _, l := range k.Links {
		ifc := api.InspectInterface{Name: l.Name, Kind: l.Kind, MAC: macString(l.MAC), MTU: l.MTU, Up: l.Up, Addrs: prefixStrings(l.Addrs), Alias: l.Alias}
		if p, ok := host[l.ParentIndex]; ok && l.ParentIndex != 0 && (l.Kind == "veth" || l.Kind == "macvlan" || l.Kind == "ipvlan") {
			ifc.Peer = p.Name
		}
		out.Interfaces = append(out.Interfaces, ifc)
	}
	if k.RoutesErr != nil {
		out.Routes = append(out.Routes, "(routes unreadable: "+k.RoutesErr.Error()+")")
	}
	out.Routes = append(out.Routes, k.Routes...)
	return out
}
