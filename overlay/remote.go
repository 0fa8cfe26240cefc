package overlay

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
)

// Which endpoint holds an overlay address (ResolveRemote).
//
// Gossip's own snapshot lets the newer record win (an address that moved
// from a dead host to a live one must follow at once). The resolution
// refines that with what is known about liveness and age, over every
// record gossip has for the address (its Endpoints plus its Shadowed):
//
//  1. Records of hosts that are not alive (dead or left, kept until
//     reap_after) lose to records of live hosts: that is an address that
//     moved, not a conflict. When no live host claims the address, the
//     dead host's record stays programmed, so a short blip drops nothing.
//  2. Among live hosts, the older record (lower gossip version) keeps the
//     address (AddrConflicts): two containers configured with one
//     static address is a conflict, reported in status and the log, and the
//     newcomer does not take the address from the one already using it.
//     The losers are not programmed anywhere.
//  3. On the losing host itself, the local container keeps its address on
//     its own bridge and the winner is not programmed there either, so each
//     host reaches one of them deterministically.
//
// A restarted agent reissues its records with new versions, so after a
// restart its endpoints count as new: in a standing conflict, the other
// host's endpoint then keeps the address (see docs/overlay.md).

// EndpointRecord is one endpoint record of the cluster table: a container
// interface on a host, with the record's version (older is lower).
type EndpointRecord struct {
	Network   string
	Container string
	Host      string
	IP        netip.Addr
	MAC       net.HardwareAddr
	VTEP      netip.Addr
	Names     []string
	Version   uint64
}

// RemoteEndpoint is a container interface on another host, to program.
type RemoteEndpoint struct {
	Network   string
	Container string
	Host      string
	IP        netip.Addr
	MAC       net.HardwareAddr
	VTEP      netip.Addr
	// Names are the container's name first, then its aliases.
	Names []string
}

// LocalEndpoint is one of this host's endpoints on an overlay network.
type LocalEndpoint struct {
	Network   string
	Container string
	Netns     string
	IfName    string
	IP        netip.Addr
	MAC       net.HardwareAddr // nil until the interface exists
	Names     []string
}

// EndpointKey identifies an endpoint record.
type EndpointKey struct {
	Host, Network string
	IP            netip.Addr
}

// EndpointConflict is an overlay address claimed by several live
// endpoints.
type EndpointConflict struct {
	Network string
	Conflict
}

// String describes the conflict in one sentence.
func (c EndpointConflict) String() string {
	s := fmt.Sprintf("address %s on network %q: container %q on host %q keeps it (older)", c.Addr, c.Network, c.Winner.Endpoint, c.Winner.Host)
	for _, l := range c.Losers {
		s += fmt.Sprintf("; container %q on host %q loses it and is not programmed on other hosts", l.Endpoint, l.Host)
	}
	return s
}

// Resolution is ResolveRemote's answer.
type Resolution struct {
	// Remote are the other hosts' endpoints to program, oldest first.
	Remote []RemoteEndpoint
	// Conflicts are the addresses claimed by more than one live endpoint.
	Conflicts []EndpointConflict
	// Notes say why a remote record is not programmed ("conflict …",
	// "stale …").
	Notes map[EndpointKey]string
}

// ResolveRemote decides who holds each address of the overlay networks
// nets (see the rules above), from the cluster table's endpoint records
// (all of them, shadowed ones included), which hosts are alive, and this
// host's own endpoints (local).
func ResolveRemote(self string, nets map[string]bool, records []EndpointRecord, alive func(host string) bool, local []LocalEndpoint) Resolution {
	res := Resolution{Notes: map[EndpointKey]string{}}
	groups, order := candidates(self, nets, records, local)
	type versioned struct {
		r RemoteEndpoint
		v uint64
	}
	var remote []versioned
	for _, k := range order {
		cs := dropStale(groups[k], k, alive, res.Notes)
		winner := res.winner(cs, k)
		if winner.local {
			continue
		}
		if slices.ContainsFunc(cs, func(c candidate) bool { return c.local }) {
			// This host's own container lost the address: it keeps it
			// locally, and the winner is not programmed here (rule 3).
			res.Notes[EndpointKey{winner.ep.Host, k.network, k.ip}] = "not programmed here: a local container uses the address"
			continue
		}
		e := winner.ep
		remote = append(remote, versioned{RemoteEndpoint{
			Network: e.Network, Container: e.Container, Host: e.Host, IP: e.IP,
			MAC: e.MAC, VTEP: e.VTEP, Names: e.Names,
		}, e.Version})
	}
	slices.SortFunc(remote, func(a, b versioned) int {
		return cmp.Or(cmp.Compare(a.v, b.v), cmp.Compare(a.r.Host, b.r.Host), cmp.Compare(a.r.Network, b.r.Network), a.r.IP.Compare(b.r.IP))
	})
	for _, x := range remote {
		res.Remote = append(res.Remote, x.r)
	}
	slices.SortFunc(res.Conflicts, func(a, b EndpointConflict) int {
		return cmp.Or(cmp.Compare(a.Network, b.Network), a.Addr.Compare(b.Addr))
	})
	return res
}

// candidate is one record for an address: another host's, or one of this
// host's endpoints (local).
type candidate struct {
	ep    EndpointRecord
	local bool
}

// addrKey is an address on a network.
type addrKey struct {
	network string
	ip      netip.Addr
}

// candidates groups the records and local endpoints of the networks nets
// by address, in first-seen order. A local endpoint gets the version of
// its own published record, or the newest of all when not published yet.
func candidates(self string, nets map[string]bool, records []EndpointRecord, local []LocalEndpoint) (map[addrKey][]candidate, []addrKey) {
	groups := map[addrKey][]candidate{}
	var order []addrKey
	add := func(c candidate) {
		k := addrKey{c.ep.Network, c.ep.IP}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	published := map[EndpointKey]EndpointRecord{}
	for _, e := range records {
		if !nets[e.Network] {
			continue
		}
		if e.Host == self {
			published[EndpointKey{self, e.Network, e.IP}] = e
			continue
		}
		add(candidate{ep: e})
	}
	for _, l := range local {
		if !nets[l.Network] || !l.IP.IsValid() {
			continue
		}
		e := EndpointRecord{Network: l.Network, Container: l.Container, IP: l.IP, MAC: l.MAC, Names: l.Names, Host: self, Version: math.MaxUint64}
		if p, ok := published[EndpointKey{self, l.Network, l.IP}]; ok && p.Container == l.Container {
			e.Version = p.Version
		}
		add(candidate{ep: e, local: true})
	}
	return groups, order
}

// dropStale leaves out the records of hosts that are not alive when a live
// host (or this one) uses the address (rule 1), noting why.
func dropStale(cs []candidate, k addrKey, alive func(string) bool, notes map[EndpointKey]string) []candidate {
	live := func(c candidate) bool { return c.local || alive(c.ep.Host) }
	if !slices.ContainsFunc(cs, live) {
		return cs
	}
	kept := cs[:0:0]
	for _, c := range cs {
		if live(c) {
			kept = append(kept, c)
			continue
		}
		notes[EndpointKey{c.ep.Host, k.network, k.ip}] = fmt.Sprintf("stale: host %q is not alive and a live host uses the address", c.ep.Host)
	}
	return kept
}

// winner picks who keeps address k among cs: the older record (rule 2),
// recording the conflict and noting the losers.
func (res *Resolution) winner(cs []candidate, k addrKey) candidate {
	if len(cs) == 1 {
		return cs[0]
	}
	claims := make([]AddrClaim, len(cs))
	for i, c := range cs {
		claims[i] = AddrClaim{Host: c.ep.Host, Endpoint: c.ep.Container, Addr: c.ep.IP, Version: c.ep.Version}
	}
	cf := AddrConflicts(claims)
	if len(cf) == 0 {
		return cs[0]
	}
	res.Conflicts = append(res.Conflicts, EndpointConflict{Network: k.network, Conflict: cf[0]})
	w := cf[0].Winner
	i := slices.IndexFunc(cs, func(c candidate) bool { return c.ep.Host == w.Host && c.ep.Container == w.Endpoint })
	winner := cs[max(i, 0)]
	for _, c := range cs {
		if c.ep.Host != winner.ep.Host || c.ep.Container != winner.ep.Container {
			res.Notes[EndpointKey{c.ep.Host, k.network, k.ip}] = fmt.Sprintf("conflict: container %q on host %q keeps the address", w.Endpoint, w.Host)
		}
	}
	return winner
}
