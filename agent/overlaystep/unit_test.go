package overlaystep

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
)

// Unit tests of the overlay step's pure parts: who holds an address, the
// entries programmed, cluster IPAM. No root needed.

func gep(host, network, ctr, ip string, version uint64) gossip.Endpoint {
	a := netip.MustParseAddr(ip)
	mac := net.HardwareAddr{0x02, 0, 0, 0, byte(version), a.As4()[3]}
	return gossip.Endpoint{Network: network, Container: ctr, IP: a, MAC: mac, Names: []string{ctr},
		Host: host, VTEP: netip.MustParseAddr("198.18.0." + host[1:]), Version: version}
}

func view(self string, alive map[string]gossip.MemberState, eps, shadowed []gossip.Endpoint) *pass.GossipView {
	v := &pass.GossipView{Snapshot: gossip.Snapshot{Self: self, Endpoints: eps, Shadowed: shadowed}, Ready: true}
	for name, st := range alive {
		v.Members = append(v.Members, gossip.Member{Name: name, State: st, Self: name == self})
	}
	return v
}

// TestResolveRemoteFromView: the step hands overlay.ResolveRemote every
// record of the view, shadowed ones included, and the members' liveness
// (overlay/remote_test.go tests the rules themselves).
func TestResolveRemoteFromView(t *testing.T) {
	members := map[string]gossip.MemberState{"h1": gossip.MemberAlive, "h2": gossip.MemberDead, "h3": gossip.MemberAlive}
	v := view("h1", members, []gossip.Endpoint{gep("h3", "mesh", "new", "10.0.0.9", 2)}, []gossip.Endpoint{gep("h2", "mesh", "old", "10.0.0.9", 1)})
	res := resolveRemote("h1", map[string]bool{"mesh": true}, v, nil)
	if len(res.Remote) != 1 || res.Remote[0].Container != "new" {
		t.Errorf("remote = %+v, want h3's new", res.Remote)
	}
	if n := res.Notes[epKey{Host: "h2", Network: "mesh", IP: netip.MustParseAddr("10.0.0.9")}]; !strings.HasPrefix(n, "stale") {
		t.Errorf("note on h2's shadowed record = %q", n)
	}
	if res := resolveRemote("h1", map[string]bool{"mesh": true}, nil, nil); len(res.Remote) != 0 {
		t.Errorf("no gossip: remote = %+v", res.Remote)
	}
}

func TestEntriesForSkipsBadEntries(t *testing.T) {
	local := netip.MustParseAddr("198.18.0.1")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	remote := []pass.RemoteEndpoint{
		{Network: "mesh", Container: "ok", Host: "h2", IP: netip.MustParseAddr("10.0.0.2"), MAC: mac, VTEP: netip.MustParseAddr("198.18.0.2")},
		{Network: "mesh", Container: "v6", Host: "h3", IP: netip.MustParseAddr("10.0.0.3"), MAC: mac, VTEP: netip.MustParseAddr("fd00::3")},
		{Network: "mesh", Container: "self", Host: "hx", IP: netip.MustParseAddr("10.0.0.4"), MAC: mac, VTEP: local},
		{Network: "mesh", Container: "ib", Host: "h4", IP: netip.MustParseAddr("10.0.0.5"), MAC: make(net.HardwareAddr, 20), VTEP: netip.MustParseAddr("198.18.0.4")},
		{Network: "other", Container: "x", Host: "h2", IP: netip.MustParseAddr("10.1.0.2"), MAC: mac, VTEP: netip.MustParseAddr("198.18.0.2")},
	}
	entries, bad := entriesFor("mesh", remote, local)
	if len(entries) != 1 || entries[0].IP != netip.MustParseAddr("10.0.0.2") || len(bad) != 3 {
		t.Fatalf("entries %v, refused %v", entries, bad)
	}
}

func newTestStep() *Step {
	return &Step{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), settle: time.Second,
		full: map[string]bool{}, claims: map[string][]pass.OverlayClaim{}, last: map[string]netip.Addr{},
		loaded: true,
	}
}

func TestSettle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	in := &ipamInput{ready: true, readyAt: t0.Add(2 * time.Second), lost: map[string]map[netip.Prefix]bool{}}
	p := netip.MustParsePrefix("10.0.1.0/24")
	for _, c := range []struct {
		name  string
		claim pass.OverlayClaim
		now   time.Time
		ok    bool
	}{
		{"fresh claim before ready+settle", pass.OverlayClaim{Prefix: p, Since: t0, Published: t0}, t0.Add(2500 * time.Millisecond), false},
		{"settle counts from ready", pass.OverlayClaim{Prefix: p, Since: t0, Published: t0}, t0.Add(3 * time.Second), true},
		{"settle counts from the announcement", pass.OverlayClaim{Prefix: p, Since: t0, Published: t0.Add(5 * time.Second)}, t0.Add(5500 * time.Millisecond), false},
		{"never announced", pass.OverlayClaim{Prefix: p, Since: t0}, t0.Add(time.Hour), false},
		{"ip_range at once", pass.OverlayClaim{Prefix: p, Since: t0, Fixed: true}, t0, true},
		{"settled before (state file)", pass.OverlayClaim{Prefix: p, Since: t0, Settled: true}, t0, true},
	} {
		ok, _ := in.settledAt("mesh", c.claim, time.Second, c.now)
		if ok != c.ok {
			t.Errorf("%s: settled %v, want %v", c.name, ok, c.ok)
		}
	}
	in.lost["mesh"] = map[netip.Prefix]bool{p: true}
	if ok, _ := in.settledAt("mesh", pass.OverlayClaim{Prefix: p, Settled: true}, time.Second, t0); ok {
		t.Error("a lost claim is usable")
	}
	in.lost = map[string]map[netip.Prefix]bool{}
	in.ready = false
	if ok, at := in.settledAt("mesh", pass.OverlayClaim{Prefix: p, Since: t0}, time.Second, t0.Add(time.Hour)); ok || !at.IsZero() {
		t.Error("a fresh claim settled before gossip was ready")
	}
}

func TestOverlayPool(t *testing.T) {
	n := &config.Network{Name: "mesh", Driver: config.DriverOverlay, Subnet: netip.MustParsePrefix("10.0.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.1")}
	s := newTestStep()
	s.claims["mesh"] = []pass.OverlayClaim{{Prefix: netip.MustParsePrefix("10.0.5.0/30"), Settled: true}, {Prefix: netip.MustParsePrefix("10.0.9.0/24"), Since: time.Now()}}
	// The pass's gossip view: another host uses 10.0.5.1.
	snap := &pass.Snapshot{Gossip: view("h1", nil, []gossip.Endpoint{gep("h2", "mesh", "x", "10.0.5.1", 1)}, nil)}
	snap.Gossip.ReadyAt = time.Now()
	p := s.Pool(n, snap)
	// 10.0.5.0/30: .0 and .3 are skipped, .1 is another host's: .2 only.
	if ip, err := p.Allocate("a"); err != nil || ip != netip.MustParseAddr("10.0.5.2") {
		t.Fatalf("first: %v %v", ip, err)
	}
	// The second block is still settling: full, and a new claim is asked for.
	if _, err := p.Allocate("b"); !errors.Is(err, ErrIPAMWait) || !s.full["mesh"] {
		t.Fatalf("second: %v, full %v", err, s.full)
	}
	// A static address anywhere in the subnet, even one another host uses
	// (that is a conflict the older endpoint wins), but not the gateway.
	if err := p.Reserve(netip.MustParseAddr("10.0.5.1"), "c"); err != nil {
		t.Errorf("reserve another host's address: %v", err)
	}
	if err := p.Reserve(netip.MustParseAddr("10.0.0.1"), "d"); err == nil {
		t.Error("reserved the gateway")
	}
	// No block at all.
	s.claims["mesh"] = nil
	if _, err := s.Pool(n, snap).Allocate("e"); !errors.Is(err, ErrIPAMWait) || !strings.Contains(err.Error(), "no block claimed yet") {
		t.Errorf("no block: %v", err)
	}
	// Round robin from the last address.
	s.claims["mesh"] = []pass.OverlayClaim{{Prefix: netip.MustParsePrefix("10.0.9.0/24"), Settled: true}}
	s.last["mesh"] = netip.MustParseAddr("10.0.9.7")
	if ip, _ := s.Pool(n, snap).Allocate("f"); ip != netip.MustParseAddr("10.0.9.8") {
		t.Errorf("round robin: %v", ip)
	}
	// An allocation of an API call's build (committed to the state before
	// any pass runs, then released by an rm) moves the round robin too: a
	// released address is not handed out again at once.
	if ip, _ := s.Pool(n, snap).Allocate("g"); ip != netip.MustParseAddr("10.0.9.9") {
		t.Errorf("round robin after an API allocation: %v, want 10.0.9.9", ip)
	}
	if d := (&pass.Desired{Snapshot: &pass.Snapshot{State: &pass.State{}}}); !s.roundRobinLocked(d, map[string]bool{"mesh": true}) {
		t.Error("a moved round robin is not reported for saving")
	}
	if s.Pool(&config.Network{Name: "web", Driver: config.DriverBridge}, snap) != nil {
		t.Error("a bridge network got an overlay pool")
	}
}

func TestPlanClaims(t *testing.T) {
	n := &config.Network{Name: "mesh", Driver: config.DriverOverlay, Subnet: netip.MustParsePrefix("10.0.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.1")}
	now := time.Now()
	t.Run("first claim avoids standing claims", func(t *testing.T) {
		s := newTestStep()
		want, _ := overlay.FreeBlock(n.Subnet, "h1", nil)
		v := view("h1", nil, nil, nil)
		v.Snapshot.BlockClaims = []gossip.BlockClaim{{Network: "mesh", Prefix: want, Host: "h2"}}
		changed, _, err := s.planClaims("h1", n, v, ipamFromView(v), false, now)
		if err != nil || !changed || len(s.claims["mesh"]) != 1 || s.claims["mesh"][0].Prefix == want {
			t.Fatalf("claims %v (h2 holds %s), changed %v, %v", s.claims, want, changed, err)
		}
		// Nothing more to do on the next pass.
		if changed, _, _ := s.planClaims("h1", n, v, ipamFromView(v), false, now); changed {
			t.Error("a second pass changed the claims")
		}
	})
	t.Run("a lost claim is withdrawn and another made", func(t *testing.T) {
		s := newTestStep()
		p := netip.MustParsePrefix("10.0.7.0/24")
		s.claims["mesh"] = []pass.OverlayClaim{{Prefix: p, Since: now}}
		v := view("h1", nil, nil, nil)
		v.Snapshot.BlockClaims = []gossip.BlockClaim{{Network: "mesh", Prefix: p, Host: "h2"}}
		v.Snapshot.Conflicts = []gossip.Conflict{{Kind: gossip.KindBlockClaim, Network: "mesh", Key: p.String(), Winner: "h2", Loser: "h1"}}
		if _, _, err := s.planClaims("h1", n, v, ipamFromView(v), false, now); err != nil {
			t.Fatal(err)
		}
		if cs := s.claims["mesh"]; len(cs) != 1 || cs[0].Prefix == p {
			t.Fatalf("claims %v", cs)
		}
	})
	t.Run("a full block gets a second one", func(t *testing.T) {
		s := newTestStep()
		p := netip.MustParsePrefix("10.0.7.0/24")
		s.claims["mesh"] = []pass.OverlayClaim{{Prefix: p, Since: now, Settled: true}}
		v := view("h1", nil, nil, nil)
		v.Snapshot.BlockClaims = []gossip.BlockClaim{{Network: "mesh", Prefix: p, Host: "h1"}}
		if _, _, err := s.planClaims("h1", n, v, ipamFromView(v), true, now); err != nil || len(s.claims["mesh"]) != 2 {
			t.Fatalf("claims %v, %v", s.claims["mesh"], err)
		}
	})
	t.Run("ip_range is a fixed claim; overlapping ranges are a conflict", func(t *testing.T) {
		s := newTestStep()
		nr := *n
		nr.IPRange = netip.MustParsePrefix("10.0.200.0/24")
		s.claims["mesh"] = []pass.OverlayClaim{{Prefix: netip.MustParsePrefix("10.0.7.0/24"), Since: now}}
		v := view("h1", nil, nil, nil)
		v.Snapshot.BlockClaims = []gossip.BlockClaim{{Network: "mesh", Prefix: netip.MustParsePrefix("10.0.200.0/25"), Host: "h2", Fixed: true}}
		_, cf, err := s.planClaims("h1", &nr, v, ipamFromView(v), false, now)
		if err != nil {
			t.Fatal(err)
		}
		if cs := s.claims["mesh"]; len(cs) != 1 || cs[0].Prefix != nr.IPRange || !cs[0].Fixed {
			t.Errorf("claims %v, want only the fixed ip_range", cs)
		}
		if len(cf) != 1 || !strings.Contains(cf[0], `host "h2"`) {
			t.Errorf("conflicts %q", cf)
		}
		recs := s.claimRecords()
		if len(recs) != 1 || !recs[0].(gossip.BlockClaim).Fixed {
			t.Errorf("records %v", recs)
		}
	})
}

// TestPlanClaimsDualStack: each family of a network plans its own claims
// (an IPv6 plan never withdraws the IPv4 blocks as lost, nor the other way
// round), the order is stable (IPv4 first), and removing subnet6 withdraws
// the IPv6 blocks.
func TestPlanClaimsDualStack(t *testing.T) {
	n := &config.Network{Name: "mesh", Driver: config.DriverOverlay,
		Subnet: netip.MustParsePrefix("10.0.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.1"),
		Subnet6: netip.MustParsePrefix("fd00:1::/64"), Gateway6: netip.MustParseAddr("fd00:1::1")}
	s := newTestStep()
	v := view("h1", nil, nil, nil)
	now := time.Now()
	plan := func() {
		t.Helper()
		for _, fv := range pass.Families(n) {
			if _, _, err := s.planClaims("h1", fv.Net, v, ipamFromView(v), false, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan()
	cs := s.claims["mesh"]
	if len(cs) != 2 || !cs[0].Prefix.Addr().Is4() || !cs[1].Prefix.Addr().Is6() || !n.Subnet6.Contains(cs[1].Prefix.Addr()) {
		t.Fatalf("claims %v, want one IPv4 then one IPv6 block", cs)
	}
	first := slices.Clone(cs)
	plan()
	if !slices.EqualFunc(first, s.claims["mesh"], func(a, b pass.OverlayClaim) bool { return a.Prefix == b.Prefix }) {
		t.Errorf("a second pass changed the claims: %v -> %v", first, s.claims["mesh"])
	}
	n6 := pass.Families(n)[1].Net
	p := s.Pool(n6, &pass.Snapshot{State: pass.NewState()}).(*overlayPool)
	if len(p.blocks) != 0 || p.wait == "" {
		t.Errorf("IPv6 pool of an unsettled claim: blocks %v", p.blocks)
	}
	n.Subnet6 = netip.Prefix{}
	if !s.dropFamiliesLocked(n) || len(s.claims["mesh"]) != 1 || !s.claims["mesh"][0].Prefix.Addr().Is4() {
		t.Errorf("after removing subnet6: %v", s.claims["mesh"])
	}
}

// TestResolveCache: the resolution is reused while the table generation,
// the alive members, the networks and the local endpoints stand, and made
// again when any of them changes.
func TestResolveCache(t *testing.T) {
	v := &pass.GossipView{
		Snapshot: gossip.Snapshot{Self: "h1", Generation: 7, Endpoints: []gossip.Endpoint{{
			Network: "mesh", Container: "c", IP: netip.MustParseAddr("10.200.2.2"),
			MAC: net.HardwareAddr{2, 0, 0, 0, 2, 2}, Host: "h2", VTEP: netip.MustParseAddr("198.18.0.2"), Version: 1,
		}}},
		Members: []gossip.Member{{Name: "h1", State: gossip.MemberAlive, Self: true}, {Name: "h2", State: gossip.MemberAlive}},
	}
	nets := map[string]bool{"mesh": true}
	var c resolveCache
	first := c.resolve("h1", nets, v, nil)
	if len(first.Remote) != 1 {
		t.Fatalf("resolved %d remote endpoints, want 1", len(first.Remote))
	}
	same := func(a, b overlay.Resolution) bool { return fmt.Sprintf("%p", a.Notes) == fmt.Sprintf("%p", b.Notes) }
	if !same(first, c.resolve("h1", nets, v, nil)) {
		t.Fatal("the same inputs were resolved again")
	}
	for name, change := range map[string]func(v *pass.GossipView) (map[string]bool, []localEndpoint){
		"generation": func(v *pass.GossipView) (map[string]bool, []localEndpoint) { v.Snapshot.Generation++; return nets, nil },
		"member down": func(v *pass.GossipView) (map[string]bool, []localEndpoint) {
			v.Members = []gossip.Member{v.Members[0], {Name: "h2", State: gossip.MemberDead}}
			return nets, nil
		},
		"networks": func(v *pass.GossipView) (map[string]bool, []localEndpoint) {
			return map[string]bool{"mesh": true, "other": true}, nil
		},
		"local": func(v *pass.GossipView) (map[string]bool, []localEndpoint) {
			return nets, []localEndpoint{{Network: "mesh", IP: netip.MustParseAddr("10.200.1.2")}}
		},
	} {
		c := resolveCache{}
		base := c.resolve("h1", nets, v, nil)
		v2 := *v
		n2, l2 := change(&v2)
		if same(base, c.resolve("h1", n2, &v2, l2)) {
			t.Errorf("%s: changed inputs got the cached resolution", name)
		}
	}
}

// TestLogOnceBounded: logOnce logs a problem once, and its memory does not
// grow past maxLogged however many distinct problems come.
func TestLogOnceBounded(t *testing.T) {
	s := newTestStep()
	for i := range 3 * maxLogged {
		s.logOnce("overlay entry refused", fmt.Sprintf("problem %d", i))
	}
	if len(s.logged) > maxLogged {
		t.Fatalf("%d problems remembered, want at most %d", len(s.logged), maxLogged)
	}
	s.logOnce("overlay entry refused", "again")
	if !s.logged["again"] {
		t.Fatal("a new problem is not remembered")
	}
}
