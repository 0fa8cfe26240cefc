package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// hostAddress is this host's underlay address, from the agent or the
// config.
func hostAddress(f *Facts) netip.Addr {
	if f.Status != nil {
		if a, err := netip.ParseAddr(f.Status.Address); err == nil {
			return a
		}
	}
	if f.Config != nil {
		return f.Config.Host.Address
	}
	return netip.Addr{}
}

// vxlanOverhead is what VXLAN adds over IPv4: outer IP 20, UDP 8, VXLAN 8,
// inner Ethernet 14.
const vxlanOverhead = 50

func checkPaths(f *Facts) []Result {
	if len(f.Paths) == 0 {
		ev := "no peers to probe"
		switch {
		case f.PathsNote != "":
			ev = f.PathsNote
		case f.Status == nil && f.Config == nil:
			ev = "no peers known (no agent, no config)"
		}
		return []Result{res("peers", Skip, ev, "")}
	}
	var out []Result
	for _, p := range f.Paths {
		out = append(out, gossipResults(p)...)
		for _, o := range p.Overlays {
			out = append(out, overlayResults(p, o)...)
		}
	}
	return out
}

func gossipResults(p PathFacts) []Result {
	var out []Result
	for _, x := range []struct {
		proto string
		pr    Probe
	}{{"tcp", p.GossipTCP}, {"udp", p.GossipUDP}} {
		name := fmt.Sprintf("gossip %s %s", x.proto, p.Peer)
		target := fmt.Sprintf("%s %s:%d", strings.ToUpper(x.proto), p.Address, p.GossipPort)
		switch {
		case !x.pr.Done:
			out = append(out, res(name, Skip, target+": "+x.pr.Info, ""))
		case x.pr.OK:
			out = append(out, res(name, OK, target+" answers: "+x.pr.Info, ""))
		default:
			out = append(out, res(name, Fail, target+" does not answer: "+x.pr.Info,
				fmt.Sprintf("open %s %d between the hosts' addresses (firewall, security group), and check the agent runs on %s", strings.ToUpper(x.proto), p.GossipPort, p.Peer)))
		}
	}
	return out
}

func overlayResults(p PathFacts, o OverlayPath) []Result {
	reach := "vxlan " + o.Network + " " + p.Peer
	mtu := "mtu " + o.Network + " " + p.Peer
	target := fmt.Sprintf("UDP %s:%d VNI %d", p.Address, o.Port, o.VNI)
	switch {
	case !o.Reach.Done:
		return []Result{res(reach, Skip, target+": "+o.Reach.Info, ""), res(mtu, Skip, "needs the VXLAN path", "")}
	case !o.Reach.OK:
		return []Result{
			res(reach, Fail, target+": no answer to a VXLAN echo ("+o.Reach.Info+")",
				fmt.Sprintf("open UDP %d between the hosts' addresses, and check that %s has network %s with VNI %d and vxlan_port %d ('vxmesh validate' on both hosts' files)", o.Port, p.Peer, o.Network, o.VNI, o.Port)),
			res(mtu, Skip, "needs the VXLAN path", ""),
		}
	}
	out := []Result{res(reach, OK, target+" answers a VXLAN echo: "+o.Reach.Info, "")}
	switch {
	case o.MTU <= 0:
		out = append(out, res(mtu, Skip, "overlay MTU unknown", ""))
	case o.Largest >= o.MTU:
		out = append(out, res(mtu, OK, fmt.Sprintf("%d-byte packets cross to %s (%d on the underlay, DF)", o.MTU, p.Peer, o.MTU+vxlanOverhead), ""))
	case o.Largest == 0:
		out = append(out, res(mtu, Fail, fmt.Sprintf("no DF packet of any probed size reached %s", p.Peer), "check the underlay path to "+p.Peer))
	default:
		out = append(out, res(mtu, Fail,
			fmt.Sprintf("overlay MTU %d needs %d-byte packets on the underlay, but the largest that reaches %s is %d (inner %d): bigger packets vanish (an MTU black hole)", o.MTU, o.MTU+vxlanOverhead, p.Peer, o.Largest+vxlanOverhead, o.Largest),
			fmt.Sprintf("set mtu: %d on network %s on every host, or raise the MTU of the underlay path to %d", o.Largest, o.Network, o.MTU+vxlanOverhead)))
	}
	return out
}

// explained is the vxmesh state the agent accounts for.
type explained struct {
	links  map[string]bool
	chains map[string]bool // "table/chain"
	netns  map[string]bool
}

func agentExplains(f *Facts) explained {
	e := explained{links: map[string]bool{}, chains: map[string]bool{}, netns: map[string]bool{}}
	if in := f.Inspect; in != nil {
		for _, b := range in.Bridges {
			if !b.Unknown {
				e.links[b.Name] = true
			}
			for _, p := range b.Ports {
				if !p.Unknown {
					e.links[p.Name] = true
				}
			}
		}
		for _, v := range in.VXLANs {
			if !v.Unknown {
				e.links[v.Name] = true
			}
		}
		for _, c := range in.Iptables {
			e.chains[c.Table+"/"+c.Chain] = true
		}
		for _, c := range in.Containers {
			e.netns[c.Netns] = true
		}
	}
	if f.Status != nil {
		for _, c := range f.Status.Containers {
			if c.Netns != "" {
				e.netns[c.Netns] = true
			}
		}
	}
	return e
}

func checkLeftovers(f *Facts) []Result {
	var links, chains, files, spaces []string
	e := agentExplains(f)
	for _, l := range f.Kernel.Links {
		if strings.HasPrefix(l.Alias, AliasPrefix) && !e.links[l.Name] {
			links = append(links, fmt.Sprintf("%s (%s, %q)", l.Name, l.Kind, l.Alias))
		}
	}
	for table, cs := range f.Kernel.Chains {
		for _, c := range cs {
			if !e.chains[table+"/"+c] {
				chains = append(chains, table+" "+c)
			}
		}
	}
	for _, d := range f.Kernel.EtcNetns {
		if !d.NetnsExists && !e.netns[d.Name] {
			files = append(files, "/etc/netns/"+d.Name)
		}
	}
	for _, n := range f.Kernel.Namespaces {
		if !e.netns[n.Name] {
			spaces = append(spaces, fmt.Sprintf("%s (%s)", n.Name, strings.Join(n.Containers, ", ")))
		}
	}
	sort.Strings(chains)
	agentDown := f.Inspect == nil
	var out []Result
	for _, x := range []struct {
		name  string
		items []string
		fail  bool
		fix   string
	}{
		{"leftover links", links, true, "remove them ('ip link del NAME') or start the agent whose config names them; 'vxmesh agent --cleanup-on-exit' removes everything of an agent"},
		{"leftover chains", chains, true, "remove them ('iptables -t TABLE -F CHAIN; iptables -t TABLE -X CHAIN' after deleting the jumps to them)"},
		{"leftover namespaces", spaces, false, "remove them ('ip netns del NAME') if no container uses them"},
		{"leftover files", files, false, "remove the directories: no namespace of that name exists"},
	} {
		switch {
		case len(x.items) == 0:
			out = append(out, res(x.name, OK, "none", ""))
		case agentDown && x.name != "leftover files":
			out = append(out, res(x.name, Warn, fmt.Sprintf("%d vxmesh-made, and no agent answers to account for them: %s", len(x.items), strings.Join(x.items, "; ")),
				"start the agent (it adopts its own); what it does not adopt is a leftover"))
		case x.fail:
			out = append(out, res(x.name, Fail, fmt.Sprintf("%d vxmesh-made that no config or agent accounts for: %s", len(x.items), strings.Join(x.items, "; ")), x.fix))
		default:
			out = append(out, res(x.name, Warn, fmt.Sprintf("%d vxmesh-made that no config or agent accounts for: %s", len(x.items), strings.Join(x.items, "; ")), x.fix))
		}
	}
	return out
}
