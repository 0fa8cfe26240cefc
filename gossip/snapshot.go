package gossip

import (
	"cmp"
	"net/netip"
	"slices"
)

// Snapshot is the live table at one moment, with conflicts between hosts
// resolved the same way on every node. The agent reconciles from it.
type Snapshot struct {
	// Self is this host's name: records with Host == Self are local.
	Self string `json:"self"`
	// Generation increases whenever the live view changes.
	Generation uint64 `json:"generation"`
	// Endpoints holds one endpoint per (network, IP), sorted by network and
	// IP. When hosts disagree (an address moved and the old host has not
	// withdrawn it, or two hosts use one address) the record with the
	// higher version wins, then the lower host name.
	Endpoints []Endpoint `json:"endpoints"`
	// BlockClaims holds non-overlapping claims, sorted by network and
	// prefix. Of overlapping claims by different hosts the oldest (lowest
	// version, then lower host name) stands: the host that claimed first
	// may already have handed out addresses from it.
	BlockClaims []BlockClaim `json:"block_claims"`
	// Conflicts lists the records that lost.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Shadowed are the endpoint records that lost to another host's record
	// for the same network and IP, sorted like Endpoints (then by host), so
	// a reader can apply a rule of its own (the agent lets the older of two
	// live hosts' endpoints keep an address, see docs/overlay.md).
	Shadowed []Endpoint `json:"shadowed,omitempty"`
}

// Conflict is a record shadowed by another host's record.
type Conflict struct {
	Kind    Kind   `json:"kind"`
	Network string `json:"network"`
	// Key is the contested address ("10.0.0.5") or block ("10.0.1.0/24").
	Key string `json:"key"`
	// Winner is the host whose record is in effect.
	Winner string `json:"winner"`
	// Loser is the host whose record is shadowed.
	Loser string `json:"loser"`
	// LoserKey is the losing record's address or block when it differs
	// from Key (overlapping blocks).
	LoserKey string `json:"loser_key,omitempty"`
}

// snapshot returns the cached resolved view, rebuilding it after a change.
// The result is shared: callers copy before handing it out.
func (t *table) snapshot() *Snapshot {
	if t.snap != nil && t.snapGen == t.gen {
		return t.snap
	}
	s := &Snapshot{Self: t.self, Generation: t.gen}
	type epKey struct {
		network string
		ip      netip.Addr
	}
	n := 0
	for _, recs := range t.owners {
		n += len(recs)
	}
	best := make(map[epKey]cand, n)
	var losers []cand
	var claims []cand
	for _, recs := range t.owners {
		for _, e := range recs {
			if e.tomb || e.rec == nil {
				continue
			}
			switch r := e.rec.(type) {
			case Endpoint:
				// e.rec is already boxed: keep it (no allocation per
				// record); Version is filled when the winners are copied out.
				k := epKey{r.Network, r.IP}
				c := cand{e.rec, e.version}
				old, ok := best[k]
				if !ok {
					best[k] = c
					continue
				}
				if endpointWins(c, old) {
					best[k], c = c, old
				}
				losers = append(losers, c)
			case BlockClaim:
				claims = append(claims, cand{e.rec, e.version})
			}
		}
	}
	// Sort small keys, not the large Endpoint values.
	type winner struct {
		k epKey
		c cand
	}
	winners := make([]winner, 0, len(best))
	for k, c := range best {
		winners = append(winners, winner{k, c})
	}
	slices.SortFunc(winners, func(a, b winner) int {
		if c := cmp.Compare(a.k.network, b.k.network); c != 0 {
			return c
		}
		return a.k.ip.Compare(b.k.ip)
	})
	s.Endpoints = make([]Endpoint, len(winners))
	for i, w := range winners {
		ep := w.c.rec.(Endpoint)
		ep.Version = w.c.version
		s.Endpoints[i] = ep
	}
	for _, l := range losers {
		e := l.rec.(Endpoint)
		e.Version = l.version
		w := best[epKey{e.Network, e.IP}].rec.(Endpoint)
		s.Conflicts = append(s.Conflicts, Conflict{Kind: KindEndpoint, Network: e.Network, Key: e.IP.String(), Winner: w.Host, Loser: e.Host})
		s.Shadowed = append(s.Shadowed, e)
	}
	slices.SortFunc(s.Shadowed, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Network, b.Network), a.IP.Compare(b.IP), cmp.Compare(a.Host, b.Host))
	})

	// Claims: fixed (ip_range) ones first, then oldest first; a claim
	// stands unless it overlaps a standing claim of another host.
	slices.SortFunc(claims, func(a, b cand) int {
		if fa, fb := a.rec.(BlockClaim).Fixed, b.rec.(BlockClaim).Fixed; fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.version, b.version); c != 0 {
			return c
		}
		return cmp.Compare(a.rec.Owner(), b.rec.Owner())
	})
	byNet := map[string][]BlockClaim{}
	for _, c := range claims {
		bc := c.rec.(BlockClaim)
		var lostTo *BlockClaim
		for i, st := range byNet[bc.Network] {
			if st.Host != bc.Host && st.Prefix.Overlaps(bc.Prefix) {
				lostTo = &byNet[bc.Network][i]
				break
			}
		}
		if lostTo != nil {
			cf := Conflict{Kind: KindBlockClaim, Network: bc.Network, Key: lostTo.Prefix.String(), Winner: lostTo.Host, Loser: bc.Host}
			if lostTo.Prefix != bc.Prefix {
				cf.LoserKey = bc.Prefix.String()
			}
			s.Conflicts = append(s.Conflicts, cf)
			continue
		}
		byNet[bc.Network] = append(byNet[bc.Network], bc)
		s.BlockClaims = append(s.BlockClaims, bc)
	}
	slices.SortFunc(s.BlockClaims, func(a, b BlockClaim) int {
		if c := cmp.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	slices.SortFunc(s.Conflicts, func(a, b Conflict) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Network, b.Network),
			cmp.Compare(a.Key, b.Key), cmp.Compare(a.Loser, b.Loser), cmp.Compare(a.LoserKey, b.LoserKey))
	})
	t.snap, t.snapGen = s, t.gen
	return s
}

// cand is a live record competing in snapshot resolution.
type cand struct {
	rec     Record
	version uint64
}

// endpointWins: the higher version, then the lower host name.
func endpointWins(a, b cand) bool {
	if a.version != b.version {
		return a.version > b.version
	}
	return a.rec.Owner() < b.rec.Owner()
}

// clone deep-copies s so callers may keep and modify it.
func (s *Snapshot) clone() Snapshot {
	c := *s
	c.Endpoints = cloneEndpoints(s.Endpoints)
	c.BlockClaims = slices.Clone(s.BlockClaims)
	c.Conflicts = slices.Clone(s.Conflicts)
	c.Shadowed = cloneEndpoints(s.Shadowed)
	if len(c.Shadowed) == 0 {
		c.Shadowed = nil
	}
	return c
}

// cloneEndpoints deep-copies eps with three allocations, not two per
// endpoint: every MAC and every name list is a capacity-limited window on
// one shared array, so a caller that appends to one gets a copy and
// cannot touch its neighbours. (The agent clones the table every pass: at
// 10,000 endpoints, 20,000 small allocations a pass.)
func cloneEndpoints(eps []Endpoint) []Endpoint {
	out := make([]Endpoint, len(eps))
	nmac, nnames := 0, 0
	for i := range eps {
		nmac += len(eps[i].MAC)
		nnames += len(eps[i].Names)
	}
	macs := make([]byte, 0, nmac)
	names := make([]string, 0, nnames)
	for i, e := range eps {
		if e.MAC != nil {
			at := len(macs)
			macs = append(macs, e.MAC...)
			e.MAC = macs[at:len(macs):len(macs)]
		}
		if e.Names != nil {
			at := len(names)
			names = append(names, e.Names...)
			e.Names = names[at:len(names):len(names)]
		}
		out[i] = e
	}
	return out
}
