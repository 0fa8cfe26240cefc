package overlay

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
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
