package pass

import (
	"net/netip"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// Dual stack (issue 18). A network has an IPv4 subnet, an IPv6 subnet or
// both; each family is one address slot per container with its own pool.
// The IPv6 slot's pool, allocations and overlay claims are keyed by
// Key6(network): Desired.Allocations and State.Allocations keep both
// families in one map (network -> container -> address), so everything
// that persists or forgets a container's addresses covers both.

// Key6 is the key of network's IPv6 half in Desired.Allocations,
// State.Allocations and the overlay step's per-network IPAM maps.
func Key6(network string) string { return network + "/6" }

// FamilyView is one address family of a network: Net is a copy of the
// network whose Subnet, Gateway and IPRange are that family's (for IPv6:
// Subnet6, Gateway6, IPRange6), so pools and the overlay's cluster IPAM
// take either family the same way; Key is its allocation key (the
// network's name, or Key6 of it).
type FamilyView struct {
	Net *config.Network
	Key string
}

// Families are n's address families with a subnet, IPv4 first.
func Families(n *config.Network) []FamilyView {
	var out []FamilyView
	if n.Subnet.IsValid() {
		out = append(out, FamilyView{Net: n, Key: n.Name})
	}
	if n.Subnet6.IsValid() {
		n6 := *n
		n6.Subnet, n6.Gateway, n6.IPRange = n.Subnet6, n.Gateway6, n.IPRange6
		n6.Subnet6, n6.Gateway6, n6.IPRange6 = netip.Prefix{}, netip.Addr{}, netip.Prefix{}
		out = append(out, FamilyView{Net: &n6, Key: Key6(n.Name)})
	}
	return out
}

// IfAddrs are an interface's addresses, IPv4 first.
func IfAddrs(ifc bridge.Interface) []netip.Addr {
	var out []netip.Addr
	for _, p := range []netip.Prefix{ifc.Addr, ifc.Addr6} {
		if p.IsValid() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// slot is one address a container needs: one family of one network.
type slot struct {
	net, key, field string
	static          netip.Addr // the configured address, if any
}

// slots are v's addresses to resolve, in network order, IPv4 first.
func (b *builder) slots(v *ContainerView) []slot {
	var out []slot
	for _, net := range v.Spec.Networks {
		n := b.nets[net]
		if n == nil {
			continue
		}
		if n.Subnet.IsValid() {
			out = append(out, slot{net: net, key: net, field: "ip", static: v.Spec.IP[net]})
		}
		if n.Subnet6.IsValid() {
			out = append(out, slot{net: net, key: Key6(net), field: "ip6", static: v.Spec.IP6[net]})
		}
	}
	return out
}

// addresses gives ifc its addresses on n and, on the first interface of
// each family (first: the container's first interface; later ones only
// for a family no earlier network had), that family's gateway.
func (b *builder) addresses(ifc *bridge.Interface, v *ContainerView, n *config.Network, first bool) {
	var has4, has6 bool
	for _, prev := range v.Interfaces {
		has4 = has4 || prev.Gateway.IsValid()
		has6 = has6 || prev.Gateway6.IsValid()
	}
	if ip, ok := b.addrs[v][n.Name]; ok && n.Subnet.IsValid() {
		ifc.Addr = netip.PrefixFrom(ip, n.Subnet.Bits())
		if first || !has4 {
			ifc.Gateway = n.Gateway
		}
	}
	if ip, ok := b.addrs[v][Key6(n.Name)]; ok && n.Subnet6.IsValid() {
		ifc.Addr6 = netip.PrefixFrom(ip, n.Subnet6.Bits())
		if first || !has6 {
			ifc.Gateway6 = n.Gateway6
		}
	}
}

// links are c's legacy links with the linked containers' current
// addresses on the networks both share: local containers' from this
// build, other hosts' from the snapshot's gossip table (overlays). A
// target not known (yet) gets no line.
func (b *builder) links(c *config.Container) []bridge.HostLink {
	var out []bridge.HostLink
	for _, l := range c.Links {
		if addrs := b.linkAddrs(c, l.Name); len(addrs) > 0 {
			out = append(out, bridge.HostLink{Name: l.Name, Alias: l.Alias, Addrs: addrs})
		}
	}
	return out
}

// linkAddrs are the addresses of the container named target on the
// networks c is on, IPv4 first.
func (b *builder) linkAddrs(c *config.Container, target string) []netip.Addr {
	on := map[string]bool{}
	for _, n := range c.Networks {
		on[n] = true
	}
	var v4, v6 []netip.Addr
	add := func(a netip.Addr) {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	if t := b.d.Container(target); t != nil && attached(t) {
		for _, sl := range b.slots(t) {
			if a, ok := b.addrs[t][sl.key]; ok && on[sl.net] {
				add(a)
			}
		}
		return append(v4, v6...)
	}
	if g := b.d.Gossip; g != nil {
		for _, e := range g.Snapshot.Endpoints {
			if e.Container == target && on[e.Network] && e.Host != g.Snapshot.Self {
				add(e.IP)
			}
		}
	}
	return append(v4, v6...)
}
