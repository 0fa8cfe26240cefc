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
