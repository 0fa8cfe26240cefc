package overlay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var pfx = netip.MustParsePrefix

func TestBlockBits(t *testing.T) {
	tests := []struct {
		subnet string
		want   int
	}{
		{"10.0.0.0/8", 24},
		{"10.200.0.0/16", 24},
		{"10.200.0.0/20", 24},
		{"10.200.0.0/22", 26},
		{"10.200.0.0/24", 28},
		{"10.200.0.0/26", 28},
		{"10.200.0.0/28", 28},
		{"10.200.0.0/29", 29},
		{"fd00::/48", 112},
		{"fd00::/112", 116},
		{"fd00::/126", 126},
	}
	for _, tt := range tests {
		if got := BlockBits(pfx(tt.subnet)); got != tt.want {
			t.Errorf("BlockBits(%s) = %d, want %d", tt.subnet, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	subnet := pfx("10.200.0.0/16")
	tests := []struct {
		name   string
		claims []Claim
		won    []string // "prefix host"
	}{
		{
			name:   "disjoint",
			claims: []Claim{{"h1", pfx("10.200.1.0/24"), 5, false}, {"h2", pfx("10.200.2.0/24"), 3, false}},
			won:    []string{"10.200.2.0/24 h2", "10.200.1.0/24 h1"},
		},
		{
			name:   "same block: older wins",
			claims: []Claim{{"h1", pfx("10.200.1.0/24"), 5, false}, {"h2", pfx("10.200.1.0/24"), 3, false}},
			won:    []string{"10.200.1.0/24 h2"},
		},
		{
			name:   "same block, same time: lower name wins",
			claims: []Claim{{"h2", pfx("10.200.1.0/24"), 5, false}, {"h1", pfx("10.200.1.0/24"), 5, false}},
			won:    []string{"10.200.1.0/24 h1"},
		},
		{
			name:   "configured range beats an older automatic claim",
			claims: []Claim{{"h1", pfx("10.200.1.0/24"), 1, false}, {"h2", pfx("10.200.0.0/23"), 9, true}},
			won:    []string{"10.200.0.0/23 h2"},
		},
		{
			name:   "outside the subnet",
			claims: []Claim{{"h1", pfx("10.9.1.0/24"), 1, false}, {"h2", netip.Prefix{}, 1, false}},
			won:    nil,
		},
		{
			name:   "a host may hold two blocks",
			claims: []Claim{{"h1", pfx("10.200.1.0/24"), 1, false}, {"h1", pfx("10.200.2.0/24"), 2, false}},
			won:    []string{"10.200.1.0/24 h1", "10.200.2.0/24 h1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			won, lost := Resolve(subnet, tt.claims)
			var got []string
			for _, c := range won {
				got = append(got, c.Prefix.String()+" "+c.Host)
			}
			if !slices.Equal(got, tt.won) {
				t.Fatalf("won %v, want %v", got, tt.won)
			}
			if len(won)+len(lost) != len(tt.claims) {
				t.Fatalf("won %d + lost %d != %d claims", len(won), len(lost), len(tt.claims))
			}
			// The result does not depend on the input order.
			rev := slices.Clone(tt.claims)
			slices.Reverse(rev)
			won2, _ := Resolve(subnet, rev)
			if fmt.Sprint(won2) != fmt.Sprint(won) {
				t.Fatalf("order matters: %v vs %v", won2, won)
			}
		})
	}
}

func TestChooseBlock(t *testing.T) {
	subnet := pfx("10.200.0.0/16")

	// A host with no claim is told to claim a free block.
	ch, err := ChooseBlock(subnet, netip.Prefix{}, "h1", nil)
	if err != nil || len(ch.Held) != 0 || !ch.Claim.IsValid() || ch.Claim.Bits() != 24 || !subnet.Overlaps(ch.Claim) {
		t.Fatalf("first choice %+v, %v", ch, err)
	}
	b1 := ch.Claim

	// h2 claimed the same block at the same moment (version 10 both): the
	// lower name keeps it; h2 learns it lost and is offered another one.
	claims := []Claim{{"h1", b1, 10, false}, {"h2", b1, 10, false}}
	ch1, _ := ChooseBlock(subnet, netip.Prefix{}, "h1", claims)
	ch2, _ := ChooseBlock(subnet, netip.Prefix{}, "h2", claims)
	if !slices.Equal(ch1.Held, []netip.Prefix{b1}) || ch1.Claim.IsValid() || len(ch1.Lost) != 0 {
		t.Fatalf("h1: %+v", ch1)
	}
	if len(ch2.Held) != 0 || !slices.Equal(ch2.Lost, []netip.Prefix{b1}) || !ch2.Claim.IsValid() || ch2.Claim.Overlaps(b1) {
		t.Fatalf("h2: %+v", ch2)
	}

	// After h2 claims its new block, both hold one.
	claims = append(claims, Claim{"h2", ch2.Claim, 11, false})
	ch2, _ = ChooseBlock(subnet, netip.Prefix{}, "h2", claims)
	if len(ch2.Held) != 1 || ch2.Held[0] != claims[2].Prefix || ch2.Claim.IsValid() {
		t.Fatalf("h2 after reclaim: %+v", ch2)
	}

	// A configured ip_range is used and claimed, and overlapping ranges of
	// other hosts are reported.
	claims = append(claims, Claim{"h3", pfx("10.200.200.0/24"), 1, true})
	ch3, err := ChooseBlock(subnet, pfx("10.200.200.0/23"), "h4", claims)
	if err != nil || !slices.Equal(ch3.Held, []netip.Prefix{pfx("10.200.200.0/23")}) || ch3.Claim != pfx("10.200.200.0/23") || len(ch3.Conflicts) != 1 {
		t.Fatalf("ip_range: %+v, %v", ch3, err)
	}
	if _, err := ChooseBlock(subnet, pfx("10.9.0.0/24"), "h4", nil); err == nil {
		t.Fatal("ip_range outside the subnet accepted")
	}
}

func TestChooseBlockExhausted(t *testing.T) {
	subnet := pfx("10.200.0.0/26") // 4 blocks of /28
	var claims []Claim
	for i := range 4 {
		ch, err := ChooseBlock(subnet, netip.Prefix{}, fmt.Sprintf("h%d", i), claims)
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		claims = append(claims, Claim{fmt.Sprintf("h%d", i), ch.Claim, uint64(i), false})
	}
	if _, err := ChooseBlock(subnet, netip.Prefix{}, "h9", claims); !errors.Is(err, ErrNoFreeBlock) {
		t.Fatalf("fifth host: %v", err)
	}
}

// TestClaimsConverge simulates hosts claiming blocks at random moments with
// partial views and checks that, once everyone sees every claim, no two
// hosts hold overlapping blocks and every host holds one.
func TestClaimsConverge(t *testing.T) {
	subnet := pfx("10.200.0.0/20") // 16 blocks: crowded on purpose
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		hosts := 2 + r.IntN(12)
		var claims []Claim
		clock := uint64(0)
		for range 50 {
			// Each step, a random host acts on a random subset of the claims.
			h := fmt.Sprintf("h%02d", r.IntN(hosts))
			var view []Claim
			for _, c := range claims {
				if r.IntN(3) > 0 || c.Host == h {
					view = append(view, c)
				}
			}
			ch, err := ChooseBlock(subnet, netip.Prefix{}, h, view)
			if err != nil {
				continue
			}
			claims = slices.DeleteFunc(claims, func(c Claim) bool { return c.Host == h && slices.Contains(ch.Lost, c.Prefix) })
			if ch.Claim.IsValid() {
				clock += uint64(r.IntN(2)) // equal versions happen
				claims = append(claims, Claim{h, ch.Claim, clock, false})
			}
		}
		// Full view: iterate until nobody changes.
		for range 100 {
			changed := false
			for i := range hosts {
				h := fmt.Sprintf("h%02d", i)
				ch, err := ChooseBlock(subnet, netip.Prefix{}, h, claims)
				if err != nil {
					t.Fatalf("round %d: %s: %v", round, h, err)
				}
				if len(ch.Lost) > 0 {
					claims = slices.DeleteFunc(claims, func(c Claim) bool { return c.Host == h && slices.Contains(ch.Lost, c.Prefix) })
					changed = true
				}
				if ch.Claim.IsValid() {
					clock++
					claims = append(claims, Claim{h, ch.Claim, clock, false})
					changed = true
				}
			}
			if !changed {
				break
			}
		}
		won, lost := Resolve(subnet, claims)
		if len(lost) != 0 {
			t.Fatalf("round %d: claims still losing after convergence: %v", round, lost)
		}
		for i, a := range won {
			for _, b := range won[i+1:] {
				if a.Host != b.Host && a.Prefix.Overlaps(b.Prefix) {
					t.Fatalf("round %d: %v and %v overlap", round, a, b)
				}
			}
		}
		for i := range hosts {
			h := fmt.Sprintf("h%02d", i)
			if !slices.ContainsFunc(won, func(c Claim) bool { return c.Host == h }) {
				t.Fatalf("round %d: %s holds no block: %v", round, h, won)
			}
		}
	}
}

func TestAllocate(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		block   string
		gateway string
		used    []string
		prev    string
		want    string
		err     error
	}{
		{"first", "10.200.0.0/24", "10.200.0.1", nil, "", "10.200.0.2", nil},
		{"after prev", "10.200.5.0/24", "10.200.0.1", []string{"10.200.5.9"}, "10.200.5.8", "10.200.5.10", nil},
		{"wraps, skipping broadcast", "10.200.5.0/24", "10.200.0.1", nil, "10.200.5.254", "10.200.5.1", nil},
		{"prev outside block", "10.200.5.0/24", "10.200.0.1", nil, "10.9.9.9", "10.200.5.1", nil},
		{"full", "10.200.0.0/30", "10.200.0.1", []string{"10.200.0.2"}, "", "", ErrBlockFull},
		{"too small", "10.200.0.0/31", "", nil, "", "", errors.New("too small")},
		{"ipv6", "fd00::/120", "fd00::1", nil, "", "fd00::2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[netip.Addr]bool{}
			for _, u := range tt.used {
				used[a(u)] = true
			}
			var gw, prev netip.Addr
			if tt.gateway != "" {
				gw = a(tt.gateway)
			}
			if tt.prev != "" {
				prev = a(tt.prev)
			}
			got, err := Allocate(pfx(tt.block), gw, used, prev)
			if tt.err != nil {
				if err == nil || !errors.Is(err, tt.err) && !strings.Contains(err.Error(), tt.err.Error()) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || got != a(tt.want) {
				t.Fatalf("Allocate = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
	// Filling a block hands out each usable address once.
	used := map[netip.Addr]bool{}
	var prev netip.Addr
	for range 253 {
		ip, err := Allocate(pfx("10.200.0.0/24"), a("10.200.0.1"), used, prev)
		if err != nil {
			t.Fatal(err)
		}
		if used[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		used[ip], prev = true, ip
	}
	if _, err := Allocate(pfx("10.200.0.0/24"), a("10.200.0.1"), used, prev); !errors.Is(err, ErrBlockFull) {
		t.Fatalf("254th allocation: %v", err)
	}
}

func TestAddrConflicts(t *testing.T) {
	a := netip.MustParseAddr
	claims := []AddrClaim{
		{"h2", "web2", a("10.200.1.10"), 20},
		{"h1", "web1", a("10.200.1.10"), 10},
		{"h3", "web3", a("10.200.1.10"), 10},
		{"h1", "db", a("10.200.1.11"), 5},
		{"h1", "db", a("10.200.1.11"), 5}, // the same endpoint twice: no conflict
		{"h2", "x", a("10.200.1.12"), 1},
	}
	got := AddrConflicts(claims)
	if len(got) != 1 {
		t.Fatalf("conflicts %v, want one", got)
	}
	c := got[0]
	if c.Addr != a("10.200.1.10") || c.Winner.Endpoint != "web1" || len(c.Losers) != 2 || c.Losers[0].Endpoint != "web3" || c.Losers[1].Endpoint != "web2" {
		t.Fatalf("conflict %+v", c)
	}
}

func TestNewMAC(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		m := NewMAC()
		if len(m) != 6 || m[0]&0x01 != 0 || m[0]&0x02 == 0 || m[0] == 0x06 {
			t.Fatalf("NewMAC() = %s: want locally administered unicast, not 06:", m)
		}
		if seen[m.String()] {
			t.Fatalf("NewMAC() repeated %s", m)
		}
		seen[m.String()] = true
	}
}
