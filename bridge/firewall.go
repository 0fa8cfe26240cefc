package bridge

import (
	"fmt"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// Chains of ours, as docs/architecture.md lays them out.
const (
	ChainDNAT        = "VXMESH-DNAT"
	ChainPostrouting = "VXMESH-POSTROUTING"
	ChainHairpin     = "VXMESH-HAIRPIN"
	ChainForward     = "VXMESH-FORWARD"
	ChainPublished   = "VXMESH-PUBLISHED"
	ChainIsolation   = "VXMESH-ISOLATION"
	// ChainPrefix starts every chain of ours.
	ChainPrefix = "VXMESH-"
)

// Jumps are the only rules vxmesh adds to built-in chains.
var Jumps = []ipt.Jump{
	{Table: "nat", From: "PREROUTING", Rule: "-m addrtype --dst-type LOCAL -j " + ChainDNAT},
	{Table: "nat", From: "OUTPUT", Rule: "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j " + ChainDNAT},
	{Table: "nat", From: "POSTROUTING", Rule: "-j " + ChainPostrouting},
	{Table: "filter", From: "FORWARD", Rule: "-j " + ChainForward},
}

// Jumps6 are the jumps of ip6tables: Jumps with the IPv6 loopback.
var Jumps6 = []ipt.Jump{
	{Table: "nat", From: "PREROUTING", Rule: "-m addrtype --dst-type LOCAL -j " + ChainDNAT},
	{Table: "nat", From: "OUTPUT", Rule: "! -d ::1/128 -m addrtype --dst-type LOCAL -j " + ChainDNAT},
	{Table: "nat", From: "POSTROUTING", Rule: "-j " + ChainPostrouting},
	{Table: "filter", From: "FORWARD", Rule: "-j " + ChainForward},
}

// Firewall assembles every chain of ours for the nat and filter tables from
// the networks (bridge-driver ones matter; macvlan traffic never crosses the
// host) and the chains port publishing contributes. The rules are written
// the way `iptables -S` prints them, so a restarted agent's first sync
// compares equal and writes nothing.
//
// nat: VXMESH-DNAT and VXMESH-HAIRPIN (from ports, empty by default) and
// VXMESH-POSTROUTING (MASQUERADE per non-internal network, then a jump to
// VXMESH-HAIRPIN). filter: VXMESH-PUBLISHED (from ports), VXMESH-ISOLATION
// (DROP between two non-internal bridges of ours) and VXMESH-FORWARD:
//
//  1. DROP in or out of internal bridges (before the published ports, so
//     an internal container cannot reach another network's published port
//     through the host address);
//  2. -j VXMESH-PUBLISHED (DNATed traffic to published ports, also from
//     another network);
//  3. -j VXMESH-ISOLATION (which lets the replies of published-port
//     connections through: RETURN for --ctstate DNAT --ctdir REPLY);
//  4. per bridge: ACCEPT what leaves it and the replies coming back, DROP
//     anything else entering it (no route straight to a container, as
//     Docker since v28). Frames between two ports of one bridge pass here
//     too (br_netfilter) and are accepted.
func Firewall(nets []Network, ports PortChains) (nat, filter []ipt.Chain) {
	return firewall(nets, ports.NAT, ports.Filter, false)
}

// Firewall6 is Firewall for ip6tables: the same chains, with the
// masquerade of each network's IPv6 subnet. Isolation, internal networks
// and the per-bridge rules match devices, so they read the same in both
// families and cover IPv6 as Docker's ip6tables rules do.
func Firewall6(nets []Network, ports PortChains) (nat, filter []ipt.Chain) {
	return firewall(nets, ports.NAT6, ports.Filter6, true)
}

func firewall(nets []Network, portNAT, portFilter []ipt.Chain, v6 bool) (nat, filter []ipt.Chain) {
	var bridges []Network
	for _, n := range nets {
		if n.Driver == DriverBridge && n.Device != "" {
			bridges = append(bridges, n)
		}
	}
	post := ipt.Chain{Name: ChainPostrouting}
	for _, n := range bridges {
		subnet := n.Subnet
		if v6 {
			subnet = n.Subnet6
		}
		if n.Internal || !subnet.IsValid() {
			continue
		}
		post.Rules = append(post.Rules, fmt.Sprintf(`-s %s ! -o %s -m comment --comment "vxmesh: masquerade %s" -j MASQUERADE`, subnet.Masked(), n.Device, n.Name))
	}
	post.Rules = append(post.Rules, "-j "+ChainHairpin)

	fwd := ipt.Chain{Name: ChainForward}
	for _, a := range bridges {
		if a.Internal {
			fwd.Rules = append(fwd.Rules,
				fmt.Sprintf(`-i %s ! -o %s -m comment --comment "vxmesh: internal %s" -j DROP`, a.Device, a.Device, a.Name),
				fmt.Sprintf(`! -i %s -o %s -m comment --comment "vxmesh: internal %s" -j DROP`, a.Device, a.Device, a.Name))
		}
	}
	fwd.Rules = append(fwd.Rules, "-j "+ChainPublished, "-j "+ChainIsolation)

	iso := ipt.Chain{Name: ChainIsolation}
	for _, a := range bridges {
		for _, b := range bridges {
			if a.Device == b.Device || a.Internal || b.Internal {
				continue
			}
			iso.Rules = append(iso.Rules, fmt.Sprintf(`-i %s -o %s -m comment --comment "vxmesh: isolate %s from %s" -j DROP`, a.Device, b.Device, a.Name, b.Name))
		}
	}
	if len(iso.Rules) > 0 {
		// The reply of a connection VXMESH-PUBLISHED let in from another
		// network crosses the same two bridges the other way: exempt it
		// (the per-bridge rules below accept it), or a container could not
		// reach another network's published port through the host address.
		iso.Rules = append([]string{`-m conntrack --ctstate DNAT --ctdir REPLY -m comment --comment "vxmesh: replies of published ports" -j RETURN`}, iso.Rules...)
	}

	for _, n := range bridges {
		if n.Internal {
			fwd.Rules = append(fwd.Rules, fmt.Sprintf(`-i %s -o %s -m comment --comment "vxmesh: network %s" -j ACCEPT`, n.Device, n.Device, n.Name))
			continue
		}
		fwd.Rules = append(fwd.Rules,
			fmt.Sprintf(`-i %s -m comment --comment "vxmesh: network %s" -j ACCEPT`, n.Device, n.Name),
			fmt.Sprintf(`-o %s -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "vxmesh: network %s" -j ACCEPT`, n.Device, n.Name),
			fmt.Sprintf(`-o %s -m comment --comment "vxmesh: network %s" -j DROP`, n.Device, n.Name))
	}

	nat = merge([]ipt.Chain{{Name: ChainDNAT}, {Name: ChainHairpin}, post}, portNAT)
	filter = merge([]ipt.Chain{{Name: ChainPublished}, iso, fwd}, portFilter)
	return nat, filter
}

// merge replaces chains of base by the extra chain of the same name and
// appends the other extra chains.
func merge(base, extra []ipt.Chain) []ipt.Chain {
	out := append([]ipt.Chain(nil), base...)
	for _, e := range extra {
		replaced := false
		for i := range out {
			if out[i].Name == e.Name {
				out[i] = e
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}
