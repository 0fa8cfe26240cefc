package overlaystep

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
)

// Cluster IPAM, the agent's half (overlay/ipam.go decides; this file keeps
// the claims, publishes them through gossip and hands out addresses).
//
// Each host claims blocks of every overlay subnet it has: its ip_range when
// configured (a Fixed claim, usable at once: the operator vouches for it),
// otherwise a free block (overlay.ChooseBlock / FreeBlock). A fresh
// automatic claim is not used until it has *settled*: gossip is ready
// (this host has heard the cluster, see pass.GossipView.Ready), the claim has
// been announced, and it has stood, unbeaten by an older claim, for the
// settle period after both (DefaultIPAMSettle, well above gossip's p99
// convergence). Whether it stands is read from the pass's gossip view
// (pass.Snapshot.Gossip), the one every pool and step of the pass reads. Two hosts that
// claim one block at the same moment therefore both see both claims before
// either hands out an address, and the loser moves on. Settled claims are
// kept in the state file, so a restarted agent allocates from them at once.
// Addresses are allocated round robin inside a block, skipping every address
// any host uses in it (gossip's endpoints, shadowed ones included).

// DefaultIPAMSettle is how long a new automatic block claim must stand
// before addresses are handed out from it.
const DefaultIPAMSettle = 2 * time.Second

// ErrIPAMWait means an overlay network has no usable block yet: the claim is
// settling or gossip is not ready. The pass is retried when that changes.
var ErrIPAMWait = errors.New("waiting for an address block")

// ipamInput is what a pool needs to know of the cluster, from a gossip
// view.
type ipamInput struct {
	ready   bool
	readyAt time.Time
	// lost are this host's claims gossip shadows, by network.
	lost map[string]map[netip.Prefix]bool
	// used are the addresses other hosts' endpoints use, by network.
	used map[string]map[netip.Addr]bool
}

// settledAt says whether c is usable at now and, if not, when it will be
// (zero when that is not known yet).
func (in *ipamInput) settledAt(network string, c pass.OverlayClaim, settle time.Duration, now time.Time) (bool, time.Time) {
	if in.lost[network][c.Prefix] {
		return false, time.Time{}
	}
	if c.Fixed || c.Settled {
		return true, now
	}
	if !in.ready || c.Published.IsZero() {
		return false, time.Time{}
	}
	from := c.Published
	if in.readyAt.After(from) {
		from = in.readyAt
	}
	at := from.Add(settle)
	return !now.Before(at), at
}

// ipamFromView derives the pools' input from a gossip view (nil: this host
// is alone, which is ready at once).
func ipamFromView(v *pass.GossipView) *ipamInput {
	in := &ipamInput{ready: true, lost: map[string]map[netip.Prefix]bool{}, used: map[string]map[netip.Addr]bool{}}
	if v == nil {
		return in
	}
	in.ready, in.readyAt = v.Ready, v.ReadyAt
	self := v.Snapshot.Self
	for _, cf := range v.Snapshot.Conflicts {
		if cf.Kind != gossip.KindBlockClaim || cf.Loser != self {
			continue
		}
		key := cf.Key
		if cf.LoserKey != "" {
			key = cf.LoserKey
		}
		if p, err := netip.ParsePrefix(key); err == nil {
			if in.lost[cf.Network] == nil {
				in.lost[cf.Network] = map[netip.Prefix]bool{}
			}
			in.lost[cf.Network][p] = true
		}
	}
	for _, list := range [][]gossip.Endpoint{v.Snapshot.Endpoints, v.Snapshot.Shadowed} {
		for _, e := range list {
			if e.Host == self {
				continue
			}
			if in.used[e.Network] == nil {
				// Sized for the whole list: rehashing as it grew was most
				// of this function's garbage at 10,000 endpoints.
				in.used[e.Network] = make(map[netip.Addr]bool, len(list))
			}
			in.used[e.Network][e.IP] = true
		}
	}
	return in
}

// overlayPool hands out the addresses of one overlay network on this host:
// static and recorded addresses anywhere in the subnet (Reserve), new ones
// from this host's settled blocks (Allocate).
type overlayPool struct {
	local   *bridge.Pool // local reservations and the subnet's rules
	mine    map[netip.Addr]bool
	used    map[netip.Addr]bool // other hosts' addresses
	blocks  []netip.Prefix      // settled, oldest first
	gateway netip.Addr
	last    netip.Addr
	wait    string // why there is no block, when blocks is empty
	full    func() // called when every block is full
	// allocated is told every address Allocate hands out: the step's
	// round robin starts after it next time, whether the allocation came
	// from a pass or from an API call's build (which commits it to the
	// state before any pass sees it as new).
	allocated func(netip.Addr)
	// yield maps an allocated address that lost a conflict to the
	// container that must give it up (overlay.YieldAddrs).
	yield map[netip.Addr]string
}

// Reserve implements pass.AddrPool. An address another host uses is not refused
// here: that is a cluster conflict, settled by age (see resolveRemote).
func (p *overlayPool) Reserve(ip netip.Addr, owner string) error {
	if c, ok := p.yield[ip]; ok && c == owner {
		// The recorded address lost a conflict: Build allocates anew.
		return fmt.Errorf("reserve %s for %q: another host's container keeps the address", ip, owner)
	}
	if err := p.local.Reserve(ip, owner); err != nil {
		return err
	}
	p.mine[ip] = true
	return nil
}

// Allocate implements pass.AddrPool.
func (p *overlayPool) Allocate(owner string) (netip.Addr, error) {
	if len(p.blocks) == 0 {
		return netip.Addr{}, fmt.Errorf("%w (%s)", ErrIPAMWait, p.wait)
	}
	used := make(map[netip.Addr]bool, len(p.used)+len(p.mine))
	for a := range p.used {
		used[a] = true
	}
	for a := range p.mine {
		used[a] = true
	}
	for _, b := range p.blocks {
		ip, err := overlay.Allocate(b, p.gateway, used, p.last)
		if errors.Is(err, overlay.ErrBlockFull) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		if err := p.Reserve(ip, owner); err != nil {
			used[ip] = true // a broadcast or network address of the subnet
			continue
		}
		p.last = ip
		if p.allocated != nil {
			p.allocated(ip)
		}
		return ip, nil
	}
	if p.full != nil {
		p.full()
	}
	return netip.Addr{}, fmt.Errorf("%w (every claimed block is full; claiming another)", ErrIPAMWait)
}

// Pool implements pass.PoolSource: the address pool of overlay network n
// (nil for other drivers: a local pool), from the claims and the gossip
// view of snapshot snap.
func (s *Step) Pool(n *config.Network, snap *pass.Snapshot) pass.AddrPool {
	if n.Driver != config.DriverOverlay {
		return nil
	}
	in := ipamFromView(snap.Gossip)
	if snap.Gossip == nil && s.gossip != nil {
		in.ready = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadLocked(snap.State)
	key := famKey(n)
	p := &overlayPool{
		local:   bridge.NewPool(n.Subnet, netip.Prefix{}, n.Gateway),
		mine:    map[netip.Addr]bool{},
		used:    in.used[n.Name],
		gateway: n.Gateway,
		last:    s.last[key],
		full:    func() { s.markFull(key) },
		allocated: func(ip netip.Addr) {
			s.mu.Lock()
			s.last[key] = ip
			s.mu.Unlock()
		},
		yield: map[netip.Addr]string{},
	}
	// Each yield is logged once while it stands; the set is replaced, so
	// it holds only the current ones.
	logged := map[string]bool{}
	for _, y := range yields(n, snap) {
		p.yield[y.IP] = y.Container
		msg := y.String()
		if !s.yieldLog[key][msg] {
			s.log.Warn("overlay address conflict after a partition", "problem", msg)
		}
		logged[msg] = true
	}
	if s.yieldLog == nil {
		s.yieldLog = map[string]map[string]bool{}
	}
	if len(logged) == 0 {
		delete(s.yieldLog, key)
	} else {
		s.yieldLog[key] = logged
	}
	now := time.Now()
	mine, _ := splitFamily(s.claims[n.Name], n.Subnet)
	for _, c := range mine {
		if ok, _ := in.settledAt(n.Name, c, s.settle, now); ok {
			p.blocks = append(p.blocks, c.Prefix)
		}
	}
	switch {
	case len(p.blocks) > 0:
	case !in.ready:
		p.wait = "gossip has not heard the cluster yet"
	case len(mine) == 0:
		p.wait = "no block claimed yet"
	default:
		p.wait = fmt.Sprintf("block %s is settling", mine[0].Prefix)
	}
	return p
}

// yields are this host's allocated addresses on the family view n that
// lose a conflict to another live host's endpoint (overlay.YieldAddrs over
// the snapshot's gossip view): such a container is renumbered by this
// pass's Build. Nothing yields before gossip is ready.
func yields(n *config.Network, snap *pass.Snapshot) []overlay.AddrYield {
	v := snap.Gossip
	if v == nil || !v.Ready || snap.State == nil {
		return nil
	}
	alloc := snap.State.Allocations[famKey(n)]
	// A runtime's container (CNI, Docker) is never renumbered: the runtime
	// has recorded its address (a CNI result, Docker's endpoint), so its
	// conflicts stay reported like a static address's.
	runtime := map[string]bool{}
	for _, r := range snap.State.Attachments {
		runtime[r.Name] = true
	}
	in := overlay.YieldInput{
		Self:  v.Snapshot.Self,
		Alive: v.Alive,
		// A block that lost to an older claim still holds the addresses
		// its host handed out there: they are allocated, not static.
		Blocks: map[string][]overlay.Claim{},
		Allocated: func(network, container string, ip netip.Addr) bool {
			return network == n.Name && n.Subnet.Contains(ip) && alloc[container] == ip && !runtime[container]
		},
	}
	// Only the addresses this host handed out can yield: the records of
	// other addresses (thousands, at scale) are left out before they are
	// copied.
	mine := make(map[netip.Addr]bool, len(alloc))
	for _, ip := range alloc {
		mine[ip.Unmap()] = true
	}
	if len(mine) == 0 {
		return nil
	}
	for _, list := range [][]gossip.Endpoint{v.Snapshot.Endpoints, v.Snapshot.Shadowed} {
		for _, e := range list {
			if e.Network == n.Name && mine[e.IP.Unmap()] && n.Subnet.Contains(e.IP) {
				in.Records = append(in.Records, overlay.EndpointRecord{Network: e.Network, Container: e.Container, Host: e.Host, IP: e.IP, Version: e.Version})
			}
		}
	}
	for _, bc := range v.Snapshot.BlockClaims {
		if bc.Network == n.Name {
			in.Blocks[n.Name] = append(in.Blocks[n.Name], overlay.Claim{Host: bc.Host, Prefix: bc.Prefix})
		}
	}
	for _, cf := range v.Snapshot.Conflicts {
		key := cf.Key
		if cf.LoserKey != "" {
			key = cf.LoserKey
		}
		if p, err := netip.ParsePrefix(key); err == nil && cf.Kind == gossip.KindBlockClaim && cf.Network == n.Name {
			in.Blocks[n.Name] = append(in.Blocks[n.Name], overlay.Claim{Host: cf.Loser, Prefix: p})
		}
	}
	return overlay.YieldAddrs(in)
}

// famKey is the key of one family view of a network (pass.Families) in
// the per-network IPAM maps (last address, full blocks): the network's
// name for IPv4, pass.Key6 of it for IPv6.
func famKey(n *config.Network) string {
	if n.Subnet.Addr().Is6() {
		return pass.Key6(n.Name)
	}
	return n.Name
}

// dropFamiliesLocked withdraws n's claims of a family the network no
// longer has (subnet or subnet6 removed); it reports whether any went
// (under s.mu).
func (s *Step) dropFamiliesLocked(n *config.Network) bool {
	cs := s.claims[n.Name]
	var keep []pass.OverlayClaim
	for _, c := range cs {
		if (c.Prefix.Addr().Is4() && n.Subnet.IsValid()) || (c.Prefix.Addr().Is6() && n.Subnet6.IsValid()) {
			keep = append(keep, c)
		} else {
			s.log.Info("withdrew block claim", "network", n.Name, "block", c.Prefix, "reason", "the network no longer has a subnet of its family")
		}
	}
	if len(keep) == len(cs) {
		return false
	}
	s.claims[n.Name] = keep
	return true
}

// splitFamily splits claims into those of subnet's family and the others
// (both in their order): a network's IPv4 and IPv6 blocks are claimed
// under its name, and each family's pool and plan see only its own, so
// overlay.PlanClaims never withdraws the other family's claims as lost.
func splitFamily(cs []pass.OverlayClaim, subnet netip.Prefix) (same, other []pass.OverlayClaim) {
	for _, c := range cs {
		if c.Prefix.Addr().Is4() == subnet.Addr().Is4() {
			same = append(same, c)
		} else {
			other = append(other, c)
		}
	}
	return same, other
}

func (s *Step) markFull(network string) {
	s.fullMu.Lock()
	s.full[network] = true
	s.fullMu.Unlock()
}

// planClaims brings this host's claims on overlay network n up to date
// with the cluster (under s.mu); overlay.PlanClaims decides, this applies
// and logs. It returns whether the claims changed and the ip_range
// conflicts.
func (s *Step) planClaims(self string, n *config.Network, v *pass.GossipView, in *ipamInput, full bool, now time.Time) (changed bool, conflicts []string, err error) {
	ci := overlay.ClaimInput{Self: self, Subnet: n.Subnet, IPRange: n.IPRange, Lost: in.lost[n.Name], Full: full}
	if v != nil {
		for _, bc := range v.Snapshot.BlockClaims {
			if bc.Network == n.Name && bc.Prefix.Addr().Is4() == n.Subnet.Addr().Is4() {
				ci.Table = append(ci.Table, overlay.Claim{Host: bc.Host, Prefix: bc.Prefix, Fixed: bc.Fixed})
			}
		}
	}
	mine, other := splitFamily(s.claims[n.Name], n.Subnet)
	for _, c := range mine {
		ci.Held = append(ci.Held, overlay.HeldClaim{Prefix: c.Prefix, Fixed: c.Fixed})
	}
	plan := overlay.PlanClaims(ci)
	for _, p := range plan.Unfix {
		if i := slices.IndexFunc(mine, func(c pass.OverlayClaim) bool { return c.Prefix == p }); i >= 0 {
			mine[i].Fixed = false
			changed = true
		}
	}
	why := "an older claim of another host overlaps it"
	if n.IPRange.IsValid() {
		why = "ip_range is configured"
	}
	for _, lost := range plan.Withdraw {
		i := slices.IndexFunc(mine, func(c pass.OverlayClaim) bool { return c.Prefix == lost })
		if i < 0 {
			continue
		}
		s.log.Warn("withdrew block claim", "network", n.Name, "block", lost, "reason", why)
		mine = slices.Delete(mine, i, i+1)
		changed = true
	}
	for _, c := range plan.Claim {
		if slices.ContainsFunc(mine, func(h pass.OverlayClaim) bool { return h.Prefix == c.Prefix }) {
			continue
		}
		mine = append(mine, pass.OverlayClaim{Prefix: c.Prefix, Fixed: c.Fixed, Since: now})
		changed = true
		s.log.Info("claimed address block", "network", n.Name, "block", c.Prefix, "fixed", c.Fixed, "settle", s.settle)
	}
	if plan.Err != nil {
		err = fmt.Errorf("network %q: %w", n.Name, plan.Err)
	}
	for _, cf := range plan.Conflicts {
		conflicts = append(conflicts, fmt.Sprintf("network %q: ip_range %s overlaps ip_range %s of host %q; the configs must be fixed", n.Name, n.IPRange, cf.Prefix, cf.Host))
	}
	// IPv4 claims first, so the order (and the state file) is stable.
	if n.Subnet.Addr().Is4() {
		s.claims[n.Name] = append(mine, other...)
	} else {
		s.claims[n.Name] = append(other, mine...)
	}
	return changed, conflicts, err
}

// claimRecords are this host's block claims as gossip records.
func (s *Step) claimRecords() []gossip.Record {
	var out []gossip.Record
	for net, cs := range s.claims {
		for _, c := range cs {
			out = append(out, gossip.BlockClaim{Network: net, Prefix: c.Prefix, Fixed: c.Fixed})
		}
	}
	return out
}
