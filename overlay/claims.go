package overlay

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
)

// HeldClaim is a block this host holds on one overlay network.
type HeldClaim struct {
	Prefix netip.Prefix
	// Fixed marks the configured ip_range.
	Fixed bool
}

// ClaimInput is what PlanClaims decides from, for one overlay network: the
// cluster table's claims and this host's.
type ClaimInput struct {
	// Self is this host's name.
	Self string
	// Subnet and IPRange are the network's (IPRange may be zero).
	Subnet, IPRange netip.Prefix
	// Table are the block claims of the cluster table on the network,
	// this host's standing ones included (Version 0: their order among
	// themselves is the table's).
	Table []Claim
	// Held are this host's claims.
	Held []HeldClaim
	// Lost are held claims the table shadows (an older claim beat them).
	Lost map[netip.Prefix]bool
	// Full says every held block is full: another one is wanted.
	Full bool
}

// ClaimPlan is PlanClaims' answer: what to change in the held claims.
type ClaimPlan struct {
	// Unfix are held claims marked Fixed that are no longer the ip_range.
	Unfix []netip.Prefix
	// Withdraw are held claims that lost (or that the ip_range replaces).
	Withdraw []netip.Prefix
	// Claim are new claims to hold (the ip_range, or a free block).
	Claim []HeldClaim
	// Conflicts are other hosts' ip_ranges that overlap this one's.
	Conflicts []Claim
	// Err says why no block could be claimed (ErrNoFreeBlock among them).
	Err error
}

// PlanClaims brings this host's block claims on one overlay network up to
// date with the cluster: it withdraws the claims that lost, claims the
// ip_range or a free block (ChooseBlock), and another block when every
// held one is full (FreeBlock). Held claims not yet in the table count as
// unpublished: any standing claim beats them.
func PlanClaims(in ClaimInput) ClaimPlan {
	var plan ClaimPlan
	claims := append([]Claim(nil), in.Table...)
	standing := map[netip.Prefix]bool{}
	for _, c := range in.Table {
		if c.Host == in.Self {
			standing[c.Prefix] = true
		}
	}
	for _, h := range in.Held {
		if h.Fixed && (!in.IPRange.IsValid() || h.Prefix != in.IPRange.Masked()) {
			plan.Unfix = append(plan.Unfix, h.Prefix) // the ip_range was changed or removed
			h.Fixed = false
		}
		if standing[h.Prefix] {
			continue
		}
		ver := uint64(1) // not published yet: beaten by any standing claim
		if in.Lost[h.Prefix] {
			ver = math.MaxUint64
		}
		claims = append(claims, Claim{Host: in.Self, Prefix: h.Prefix, Version: ver, Fixed: h.Fixed})
	}
	ch, cerr := ChooseBlock(in.Subnet, in.IPRange, in.Self, claims)
	if cerr != nil && !errors.Is(cerr, ErrNoFreeBlock) {
		plan.Err = cerr
		return plan
	}
	plan.Withdraw = ch.Lost
	if ch.Claim.IsValid() {
		plan.Claim = append(plan.Claim, HeldClaim{Prefix: ch.Claim, Fixed: in.IPRange.IsValid()})
	}
	if in.Full && !in.IPRange.IsValid() {
		if b, ok := FreeBlock(in.Subnet, in.Self, claims); ok {
			plan.Claim = append(plan.Claim, HeldClaim{Prefix: b})
		} else {
			plan.Err = fmt.Errorf("every block is full: %w", ErrNoFreeBlock)
		}
	}
	if cerr != nil && plan.Err == nil {
		plan.Err = cerr
	}
	plan.Conflicts = ch.Conflicts
	return plan
}

// Address conflicts after a partition: who renumbers.
//
// Two sides of a partition can hand out one address twice: a container
// moved across the cut with its address (a static address on the new side)
// while the old side, not knowing, allocates that address again; or a
// block claimed on both sides. When the cut heals, ResolveRemote picks one
// holder for every host to program (the older record), but two containers
// still answer to one address. An address vxmesh chose is vxmesh's to fix,
// so the owner of an automatically allocated address that loses gives it
// up and takes a new one from its own blocks (YieldAddrs); an address the
// operator chose (static: the config's ip or `vxmesh run --ip`) is never
// changed behind the operator's back and stays a reported conflict.
//
// Who loses:
//   - against a static address, an allocated one always loses (the
//     operator asked for that address; the allocator can pick another);
//   - between two allocated addresses, the older record keeps it
//     (AddrConflicts: lower version, then lower host name), the same rule
//     ResolveRemote programs by, so the survivor is the one every host
//     already programs;
//   - records of hosts that are not alive never make anyone yield (that is
//     an address that moved away from a host that is gone, rule 1 of
//     ResolveRemote).
//
// The gossip record does not say whether an address is static, but every
// host allocates only from blocks it claims: another host's address that
// lies outside every block that host claims was not allocated there, so it
// is static. (A host that lost a block keeps the addresses it handed out
// there; such an address looks static to others. At worst both holders
// then renumber, which still ends the conflict.)

// YieldInput is what YieldAddrs decides from.
type YieldInput struct {
	// Self is this host's name.
	Self string
	// Records are the cluster table's endpoint records, shadowed ones and
	// this host's own included.
	Records []EndpointRecord
	// Alive says whether a host is alive (suspect counts as alive).
	Alive func(host string) bool
	// Blocks are the block claims of the table by network.
	Blocks map[string][]Claim
	// Allocated says whether this host's container holds ip on network
	// as an address the allocator chose (not a static one).
	Allocated func(network, container string, ip netip.Addr) bool
}

// AddrYield is an allocated address of this host that it must give up.
type AddrYield struct {
	Network, Container string
	IP                 netip.Addr
	// Winner keeps the address.
	Winner AddrClaim
	// Static says the winner's address is static (outside its host's
	// blocks).
	Static bool
}

// String describes the yield in one sentence.
func (y AddrYield) String() string {
	why := "an older record"
	if y.Static {
		why = "a static address"
	}
	return fmt.Sprintf("address %s on network %q of container %q is also used by container %q on host %q (%s): renumbering", y.IP, y.Network, y.Container, y.Winner.Endpoint, y.Winner.Host, why)
}

// YieldAddrs returns this host's allocated addresses that another live
// endpoint keeps (see above), sorted by network and address.
func YieldAddrs(in YieldInput) []AddrYield {
	type key struct {
		network string
		ip      netip.Addr
	}
	// This host's allocated addresses first: usually a few among
	// thousands of records, and the others matter only where they meet.
	var mine []EndpointRecord
	for _, r := range in.Records {
		if r.Host == in.Self && in.Allocated != nil && in.Allocated(r.Network, r.Container, r.IP) {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	others := make(map[key][]EndpointRecord, len(mine))
	for _, m := range mine {
		others[key{m.Network, m.IP.Unmap()}] = nil
	}
	for _, r := range in.Records {
		if r.Host == in.Self {
			continue
		}
		k := key{r.Network, r.IP.Unmap()}
		if os, ok := others[k]; ok && (in.Alive == nil || in.Alive(r.Host)) {
			others[k] = append(os, r)
		}
	}
	var out []AddrYield
	for _, m := range mine {
		os := others[key{m.Network, m.IP.Unmap()}]
		if len(os) == 0 {
			continue
		}
		claims := []AddrClaim{{Host: m.Host, Endpoint: m.Container, Addr: m.IP, Version: m.Version}}
		var static []AddrClaim
		for _, o := range os {
			c := AddrClaim{Host: o.Host, Endpoint: o.Container, Addr: o.IP, Version: o.Version}
			claims = append(claims, c)
			if !inOwnBlock(in.Blocks[o.Network], o.Host, o.IP) {
				static = append(static, c)
			}
		}
		if len(static) > 0 {
			slices.SortFunc(static, func(a, b AddrClaim) int {
				return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Endpoint, b.Endpoint))
			})
			out = append(out, AddrYield{Network: m.Network, Container: m.Container, IP: m.IP, Winner: static[0], Static: true})
			continue
		}
		cf := AddrConflicts(claims)
		if len(cf) == 0 || (cf[0].Winner.Host == m.Host && cf[0].Winner.Endpoint == m.Container) {
			continue
		}
		out = append(out, AddrYield{Network: m.Network, Container: m.Container, IP: m.IP, Winner: cf[0].Winner})
	}
	slices.SortFunc(out, func(a, b AddrYield) int {
		return cmp.Or(cmp.Compare(a.Network, b.Network), a.IP.Compare(b.IP))
	})
	return out
}

// inOwnBlock reports whether ip lies in a block host claims.
func inOwnBlock(claims []Claim, host string, ip netip.Addr) bool {
	return slices.ContainsFunc(claims, func(c Claim) bool { return c.Host == host && c.Prefix.Contains(ip.Unmap()) })
}
