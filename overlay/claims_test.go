package overlay

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestPlanClaims(t *testing.T) {
	subnet := netip.MustParsePrefix("10.0.0.0/16")
	pfx := netip.MustParsePrefix
	for _, c := range []struct {
		name     string
		in       ClaimInput
		claim    []HeldClaim
		withdraw []netip.Prefix
		unfix    []netip.Prefix
		err      error
	}{
		{
			name:  "first claim: a free block",
			in:    ClaimInput{Self: "h1", Subnet: subnet},
			claim: []HeldClaim{{}}, // any free /24
		},
		{
			name: "a held claim standing in the table: nothing to do",
			in: ClaimInput{Self: "h1", Subnet: subnet, Held: []HeldClaim{{Prefix: pfx("10.0.5.0/24")}},
				Table: []Claim{{Host: "h1", Prefix: pfx("10.0.5.0/24"), Version: 3}}},
		},
		{
			name: "an unpublished claim loses to another host's standing one",
			in: ClaimInput{Self: "h1", Subnet: subnet, Held: []HeldClaim{{Prefix: pfx("10.0.5.0/24")}},
				Table: []Claim{{Host: "h2", Prefix: pfx("10.0.5.0/24")}}},
			withdraw: []netip.Prefix{pfx("10.0.5.0/24")},
			claim:    []HeldClaim{{}},
		},
		{
			name:  "the ip_range is claimed fixed",
			in:    ClaimInput{Self: "h1", Subnet: subnet, IPRange: pfx("10.0.9.0/24")},
			claim: []HeldClaim{{Prefix: pfx("10.0.9.0/24"), Fixed: true}},
		},
		{
			name: "an ip_range removed: its claim is no longer fixed",
			in: ClaimInput{Self: "h1", Subnet: subnet, Held: []HeldClaim{{Prefix: pfx("10.0.9.0/24"), Fixed: true}},
				Table: []Claim{{Host: "h1", Prefix: pfx("10.0.9.0/24"), Version: 1, Fixed: true}}},
			unfix: []netip.Prefix{pfx("10.0.9.0/24")},
		},
		{
			name: "every held block full: another one",
			in: ClaimInput{Self: "h1", Subnet: subnet, Full: true, Held: []HeldClaim{{Prefix: pfx("10.0.0.0/24")}},
				Table: []Claim{{Host: "h1", Prefix: pfx("10.0.0.0/24"), Version: 1}}},
			claim: []HeldClaim{{}},
		},
		{
			name: "full and no block left",
			in: ClaimInput{Self: "h1", Subnet: pfx("10.0.0.0/24"), Full: true, Held: []HeldClaim{{Prefix: pfx("10.0.0.0/24")}},
				Table: []Claim{{Host: "h1", Prefix: pfx("10.0.0.0/24"), Version: 1}}},
			err: ErrNoFreeBlock,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := PlanClaims(c.in)
			for i := range c.claim {
				// A zero wanted claim is any free /24 of the subnet, not
				// held, not another host's.
				if i < len(p.Claim) && !c.claim[i].Prefix.IsValid() {
					got := p.Claim[i].Prefix
					if got.Bits() == 24 && c.in.Subnet.Contains(got.Addr()) && !slices.ContainsFunc(c.in.Table, func(o Claim) bool { return o.Prefix.Overlaps(got) }) {
						c.claim[i] = p.Claim[i]
					}
				}
			}
			if !slices.Equal(p.Claim, c.claim) || !slices.Equal(p.Withdraw, c.withdraw) || !slices.Equal(p.Unfix, c.unfix) {
				t.Errorf("plan = claim %v withdraw %v unfix %v; want %v %v %v", p.Claim, p.Withdraw, p.Unfix, c.claim, c.withdraw, c.unfix)
			}
			if (c.err == nil) != (p.Err == nil) || (c.err != nil && !errors.Is(p.Err, c.err)) {
				t.Errorf("err = %v, want %v", p.Err, c.err)
			}
		})
	}
}

func TestYieldAddrs(t *testing.T) {
	ip := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	rec := func(host, ctr, addr string, ver uint64) EndpointRecord {
		return EndpointRecord{Network: "mesh", Container: ctr, Host: host, IP: ip(addr), Version: ver}
	}
	blocks := map[string][]Claim{"mesh": {
		{Host: "h1", Prefix: pfx("10.0.1.0/24")},
		{Host: "h2", Prefix: pfx("10.0.2.0/24")},
		// claimed on both sides of a cut
		{Host: "h1", Prefix: pfx("10.0.3.0/24")},
		{Host: "h2", Prefix: pfx("10.0.3.0/24")},
	}}
	allocated := func(static ...string) func(string, string, netip.Addr) bool {
		return func(_, ctr string, _ netip.Addr) bool { return !slices.Contains(static, ctr) }
	}
	for _, c := range []struct {
		name       string
		recs       []EndpointRecord
		dead       []string
		static     []string // this host's containers with static addresses
		want       []string // containers of h1 that yield
		winner     string   // the first yield's winner
		wantStatic bool
	}{
		{
			name: "no conflict",
			recs: []EndpointRecord{rec("h1", "a", "10.0.1.2", 5), rec("h2", "b", "10.0.2.2", 3)},
		},
		{
			name: "both allocated: the older keeps it, the newer yields",
			recs: []EndpointRecord{rec("h1", "a", "10.0.3.2", 7), rec("h2", "b", "10.0.3.2", 5)},
			want: []string{"a"}, winner: "b",
		},
		{
			name: "both allocated: this host's is older and keeps it",
			recs: []EndpointRecord{rec("h1", "a", "10.0.3.2", 4), rec("h2", "b", "10.0.3.2", 5)},
		},
		{
			name: "both allocated, same version: the lower host keeps it",
			recs: []EndpointRecord{rec("h1", "a", "10.0.3.2", 5), rec("h2", "b", "10.0.3.2", 5)},
		},
		{
			name: "a static address (outside its host's blocks) beats an older allocated one",
			recs: []EndpointRecord{rec("h1", "a", "10.0.1.2", 1), rec("h2", "moved", "10.0.1.2", 9)},
			want: []string{"a"}, winner: "moved", wantStatic: true,
		},
		{
			name:   "this host's static address never yields",
			recs:   []EndpointRecord{rec("h1", "a", "10.0.1.2", 9), rec("h2", "b", "10.0.1.2", 1)},
			static: []string{"a"},
		},
		{
			name: "a dead host's record makes nobody yield",
			recs: []EndpointRecord{rec("h1", "a", "10.0.1.2", 9), rec("h3", "gone", "10.0.1.2", 1)},
			dead: []string{"h3"},
		},
		{
			name: "another network's address is no conflict",
			recs: []EndpointRecord{rec("h1", "a", "10.0.1.2", 9), {Network: "other", Container: "b", Host: "h2", IP: ip("10.0.1.2"), Version: 1}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := YieldAddrs(YieldInput{
				Self: "h1", Records: c.recs, Blocks: blocks,
				Alive:     func(h string) bool { return !slices.Contains(c.dead, h) },
				Allocated: allocated(c.static...),
			})
			var names []string
			for _, y := range got {
				names = append(names, y.Container)
			}
			if !slices.Equal(names, c.want) {
				t.Fatalf("yield %v, want %v (%v)", names, c.want, got)
			}
			if len(got) > 0 && (got[0].Winner.Endpoint != c.winner || got[0].Static != c.wantStatic) {
				t.Errorf("winner %v static %v, want %s static %v", got[0].Winner, got[0].Static, c.winner, c.wantStatic)
			}
		})
	}
}
