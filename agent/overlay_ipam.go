package agent

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

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
// (this host has heard the cluster, see GossipView.Ready), the claim has
// been announced, and it has stood, unbeaten by an older claim, for the
// settle period after both (DefaultIPAMSettle, well above gossip's p99
// convergence). Whether it stands is read from the gossip table at the
// moment an address is allocated, not from the last pass. Two hosts that
// claim one block at the same moment therefore both see both claims before
// either hands out an address, and the loser moves on. Settled claims are
// kept in the state file, so a restarted agent allocates from them at once.
// Addresses are allocated round robin inside a block, skipping every address
// any host uses in it (gossip's endpoints, shadowed ones included).

// DefaultIPAMSettle is how long a new automatic block claim must stand
// before addresses are handed out from it.
const DefaultIPAMSettle = 2 * time.Second

// errIPAMWait means an overlay network has no usable block yet: the claim is
// settling or gossip is not ready. The pass is retried when that changes.
var errIPAMWait = errors.New("waiting for an address block")

// OverlayState is the overlay step's part of the state file.
type OverlayState struct {
	// Claims are this host's block claims by overlay network.
	Claims map[string][]OverlayClaim `json:"claims,omitempty"`
	// Last is the last address handed out per overlay network, so
	// allocation goes round robin across restarts.
	Last map[string]netip.Addr `json:"last,omitempty"`
}

// OverlayClaim is one block this host claimed.
type OverlayClaim struct {
	Prefix netip.Prefix `json:"prefix"`
	// Fixed marks the configured ip_range.
	Fixed bool `json:"fixed,omitempty"`
	// Since is when the claim was made; Published when this host first
	// announced it (the settle period counts from then).
	Since     time.Time `json:"since"`
	Published time.Time `json:"published,omitzero"`
	// Settled is set once addresses may be handed out from the block.
	Settled bool `json:"settled,omitempty"`
}

// ipamInput is what a pool needs to know of the cluster, cached by the
// overlay step from its last look at gossip.
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
func (in *ipamInput) settledAt(network string, c OverlayClaim, settle time.Duration, now time.Time) (bool, time.Time) {
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
func ipamFromView(v *GossipView) *ipamInput {
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
				in.used[e.Network] = map[netip.Addr]bool{}
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
}

// Reserve implements addrPool. An address another host uses is not refused
// here: that is a cluster conflict, settled by age (see resolveRemote).
func (p *overlayPool) Reserve(ip netip.Addr, owner string) error {
	if err := p.local.Reserve(ip, owner); err != nil {
		return err
	}
	p.mine[ip] = true
	return nil
}

// Allocate implements addrPool.
func (p *overlayPool) Allocate(owner string) (netip.Addr, error) {
	if len(p.blocks) == 0 {
		return netip.Addr{}, fmt.Errorf("%w (%s)", errIPAMWait, p.wait)
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
		return ip, nil
	}
	if p.full != nil {
		p.full()
	}
	return netip.Addr{}, fmt.Errorf("%w (every claimed block is full; claiming another)", errIPAMWait)
}

// pool returns the address pool of overlay network n (nil for other
// drivers: buildDesired then uses a local pool). It is called under a.mu.
func (s *overlayStep) pool(n *config.Network, st *State) addrPool {
	if n.Driver != config.DriverOverlay {
		return nil
	}
	// The freshest view of the others' claims: a claim that lost must not
	// hand out an address because the last pass had not seen it yet.
	var in *ipamInput
	if s.gossip != nil && s.gossip.c() != nil {
		in = ipamFromView(s.gossip.view())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadLocked(st)
	if in == nil {
		in = s.ipam
	}
	if in == nil {
		in = ipamFromView(nil)
		in.ready = s.gossip == nil
	}
	p := &overlayPool{
		local:   bridge.NewPool(n.Subnet, netip.Prefix{}, n.Gateway),
		mine:    map[netip.Addr]bool{},
		used:    in.used[n.Name],
		gateway: n.Gateway,
		last:    s.last[n.Name],
		full:    func() { s.markFull(n.Name) },
	}
	now := time.Now()
	for _, c := range s.claims[n.Name] {
		if ok, _ := in.settledAt(n.Name, c, s.settle, now); ok {
			p.blocks = append(p.blocks, c.Prefix)
		}
	}
	switch {
	case len(p.blocks) > 0:
	case !in.ready:
		p.wait = "gossip has not heard the cluster yet"
	case len(s.claims[n.Name]) == 0:
		p.wait = "no block claimed yet"
	default:
		p.wait = fmt.Sprintf("block %s is settling", s.claims[n.Name][0].Prefix)
	}
	return p
}

func (s *overlayStep) markFull(network string) {
	s.fullMu.Lock()
	s.full[network] = true
	s.fullMu.Unlock()
}

// planClaims brings this host's claims on overlay network n up to date
// with the cluster (under s.mu): withdraws lost claims, claims the
// ip_range or a free block, and another block when all are full. It
// returns whether the claims changed and the ip_range conflicts.
func (s *overlayStep) planClaims(self string, n *config.Network, v *GossipView, in *ipamInput, full bool, now time.Time) (changed bool, conflicts []string, err error) {
	var claims []overlay.Claim
	standing := map[netip.Prefix]bool{}
	if v != nil {
		for _, bc := range v.Snapshot.BlockClaims {
			if bc.Network != n.Name {
				continue
			}
			claims = append(claims, overlay.Claim{Host: bc.Host, Prefix: bc.Prefix, Fixed: bc.Fixed})
			if bc.Host == self {
				standing[bc.Prefix] = true
			}
		}
	}
	mine := s.claims[n.Name]
	ipRange := n.IPRange
	for i := range mine {
		if mine[i].Fixed && (!ipRange.IsValid() || mine[i].Prefix != ipRange.Masked()) {
			mine[i].Fixed = false // the ip_range was changed or removed
			changed = true
		}
		if standing[mine[i].Prefix] {
			continue
		}
		ver := uint64(1) // not published yet: beaten by any standing claim
		if in.lost[n.Name][mine[i].Prefix] {
			ver = math.MaxUint64
		}
		claims = append(claims, overlay.Claim{Host: self, Prefix: mine[i].Prefix, Version: ver, Fixed: mine[i].Fixed})
	}
	ch, cerr := overlay.ChooseBlock(n.Subnet, ipRange, self, claims)
	if cerr != nil && !errors.Is(cerr, overlay.ErrNoFreeBlock) {
		return changed, nil, fmt.Errorf("network %q: %w", n.Name, cerr)
	}
	for _, lost := range ch.Lost {
		i := slices.IndexFunc(mine, func(c OverlayClaim) bool { return c.Prefix == lost })
		if i < 0 {
			continue
		}
		why := "an older claim of another host overlaps it"
		if ipRange.IsValid() {
			why = "ip_range is configured"
		}
		s.log.Warn("withdrew block claim", "network", n.Name, "block", lost, "reason", why)
		mine = slices.Delete(mine, i, i+1)
		changed = true
	}
	add := func(p netip.Prefix, fixed bool) {
		if slices.ContainsFunc(mine, func(c OverlayClaim) bool { return c.Prefix == p }) {
			return
		}
		mine = append(mine, OverlayClaim{Prefix: p, Fixed: fixed, Since: now})
		changed = true
		s.log.Info("claimed address block", "network", n.Name, "block", p, "fixed", fixed, "settle", s.settle)
	}
	if ch.Claim.IsValid() {
		add(ch.Claim, ipRange.IsValid())
	}
	if full && !ipRange.IsValid() {
		if b, ok := overlay.FreeBlock(n.Subnet, self, claims); ok {
			add(b, false)
		} else {
			err = fmt.Errorf("network %q: every block is full: %w", n.Name, overlay.ErrNoFreeBlock)
		}
	}
	if cerr != nil && err == nil {
		err = fmt.Errorf("network %q: %w", n.Name, cerr)
	}
	for _, cf := range ch.Conflicts {
		conflicts = append(conflicts, fmt.Sprintf("network %q: ip_range %s overlaps ip_range %s of host %q; the configs must be fixed", n.Name, ipRange, cf.Prefix, cf.Host))
	}
	s.claims[n.Name] = mine
	return changed, conflicts, err
}

// claimRecords are this host's block claims as gossip records.
func (s *overlayStep) claimRecords() []gossip.Record {
	var out []gossip.Record
	for net, cs := range s.claims {
		for _, c := range cs {
			out = append(out, gossip.BlockClaim{Network: net, Prefix: c.Prefix, Fixed: c.Fixed})
		}
	}
	return out
}
