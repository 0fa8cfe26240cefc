package gossip

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ep(network, ip, mac string, names ...string) Endpoint {
	return Endpoint{Network: network, Container: names0(names), IP: netip.MustParseAddr(ip), MAC: mustMAC(mac), Names: names}
}

func names0(n []string) string {
	if len(n) == 0 {
		return ""
	}
	return n[0]
}

func claim(network, prefix string) BlockClaim {
	return BlockClaim{Network: network, Prefix: netip.MustParsePrefix(prefix)}
}

// node is a table with a name and address, for merge tests.
type node struct {
	*table
	now time.Time
}

func newNode(name string, i int, start time.Time) *node {
	return &node{table: newTable(name, netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), time.Minute, start), now: start}
}

func (n *node) set(t *testing.T, recs ...Record) []wireRecord {
	t.Helper()
	ups, err := n.setLocal(recs, n.now)
	if err != nil {
		t.Fatalf("%s: setLocal: %v", n.self, err)
	}
	return ups
}

// updates wraps own records as the Update groups the cluster would send,
// one record each (as gossip does).
func (n *node) updates(ups []wireRecord) []*group {
	var out []*group
	for i := range ups {
		out = append(out, &group{owner: n.self, vtep: n.vtep, recs: []wireRecord{ups[i]}})
	}
	return out
}

// roundTrip encodes and decodes a group, as the wire would.
func roundTrip(t *testing.T, typ byte, g *group) *group {
	t.Helper()
	m, err := decodeMessage(encodeUpdate(typ, g))
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	return &m.groups[0]
}

func (n *node) deliver(t *testing.T, gs ...*group) mergeResult {
	t.Helper()
	var all mergeResult
	for _, g := range gs {
		r := n.merge(roundTrip(t, msgUpdate, g), n.now)
		all.accepted = append(all.accepted, r.accepted...)
		all.own = append(all.own, r.own...)
		all.changed = all.changed || r.changed
		all.dropped += r.dropped
		all.invalid += r.invalid
	}
	return all
}

// pushPull gives dst the state of src, through the wire encoding.
func pushPull(t *testing.T, dst, src *node) mergeResult {
	t.Helper()
	m, err := decodeMessage(encodeState(src.state(src.now)))
	if err != nil {
		t.Fatalf("decode state: %v", err)
	}
	var all mergeResult
	for i := range m.groups {
		r := dst.merge(&m.groups[i], dst.now)
		all.own = append(all.own, r.own...)
		all.changed = all.changed || r.changed
		all.dropped += r.dropped
	}
	return all
}

// endpoints renders a snapshot's endpoints as "net ip mac host" lines.
func endpoints(n *node) string {
	var b []string
	for _, e := range n.snapshot().Endpoints {
		b = append(b, fmt.Sprintf("%s %s %s %s", e.Network, e.IP, e.MAC, e.Host))
	}
	return strings.Join(b, "; ")
}

func TestSetLocal(t *testing.T) {
	a := newNode("a", 1, t0)
	ups := a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web"), claim("mesh", "10.0.0.0/24"))
	if len(ups) != 2 {
		t.Fatalf("first setLocal: %d updates, want 2", len(ups))
	}
	// Same set: nothing to publish.
	if ups := a.set(t, claim("mesh", "10.0.0.0/24"), ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web")); len(ups) != 0 {
		t.Fatalf("unchanged setLocal published %d updates", len(ups))
	}
	// New MAC for the same address: one update of the same key, higher version.
	v1 := a.lookup("a", rkey{KindEndpoint, string(ep("mesh", "10.0.0.2", "02:00:00:00:00:02").appendKey(nil))}).version
	ups = a.set(t, claim("mesh", "10.0.0.0/24"), ep("mesh", "10.0.0.2", "02:00:00:00:00:99", "web"))
	if len(ups) != 1 || ups[0].tomb || ups[0].version <= v1 {
		t.Fatalf("MAC change: updates %+v, want one live update above %d", ups, v1)
	}
	// Dropping the claim: a tombstone.
	ups = a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:99", "web"))
	if len(ups) != 1 || !ups[0].tomb || ups[0].kind != KindBlockClaim || ups[0].ttl != time.Minute {
		t.Fatalf("drop claim: updates %+v, want one block-claim tombstone with ttl 1m", ups)
	}
	if got, want := endpoints(a), "mesh 10.0.0.2 02:00:00:00:00:99 a"; got != want {
		t.Fatalf("snapshot: %q, want %q", got, want)
	}
	s := a.snapshot()
	if s.Endpoints[0].VTEP != a.vtep || s.Endpoints[0].Host != "a" {
		t.Fatalf("snapshot endpoint not stamped: %+v", s.Endpoints[0])
	}
}

func TestSetLocalRejects(t *testing.T) {
	good := ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web")
	other := good
	other.Host = "b"
	badVTEP := good
	badVTEP.VTEP = netip.MustParseAddr("198.18.0.9")
	tests := []struct {
		name string
		recs []Record
		want string
	}{
		{"nil", []Record{nil}, "nil"},
		{"empty network", []Record{ep("", "10.0.0.2", "02:00:00:00:00:02")}, "empty network"},
		{"bad ip", []Record{Endpoint{Network: "mesh", MAC: mustMAC("02:00:00:00:00:01")}}, "invalid IP"},
		{"no mac", []Record{Endpoint{Network: "mesh", IP: netip.MustParseAddr("10.0.0.1")}}, "MAC"},
		{"other owner", []Record{other}, `owner "b"`},
		{"other vtep", []Record{badVTEP}, "VTEP"},
		{"duplicate", []Record{good, ep("mesh", "10.0.0.2", "02:00:00:00:00:03")}, "duplicate"},
		{"unmasked claim", []Record{claim("mesh", "10.0.0.0/24"), BlockClaim{Network: "mesh", Prefix: netip.MustParsePrefix("10.0.1.1/24")}}, "unmasked"},
		{"long name", []Record{ep("mesh", "10.0.0.2", "02:00:00:00:00:02", strings.Repeat("x", 256))}, "longer than"},
		{"control char", []Record{ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "a\nb")}, "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newNode("a", 1, t0)
			a.set(t, good)
			gen := a.gen
			_, err := a.setLocal(tt.recs, a.now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if a.gen != gen || endpoints(a) != "mesh 10.0.0.2 02:00:00:00:00:02 a" {
				t.Fatalf("failed setLocal changed the table: %s", endpoints(a))
			}
		})
	}
}

// TestMergeReorderDuplicates delivers every version an owner wrote, in
// random orders with duplicates, and checks the receiver always ends at
// the owner's final state.
func TestMergeReorderDuplicates(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		a := newNode("a", 1, t0)
		var all []*group
		for step := range 20 {
			var recs []Record
			for i := range 4 {
				if rng.IntN(3) > 0 {
					recs = append(recs, ep("mesh", fmt.Sprintf("10.0.0.%d", i+2), fmt.Sprintf("02:00:00:00:%02x:%02x", step, i)))
				}
			}
			all = append(all, a.updates(a.set(t, recs...))...)
		}
		// duplicates
		for range 10 {
			all = append(all, all[rng.IntN(len(all))])
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		b := newNode("b", 2, t0)
		b.deliver(t, all...)
		if got, want := ownerView(b, "a"), ownerView(a, "a"); got != want {
			t.Fatalf("seed %d: receiver has %q, owner has %q", seed, got, want)
		}
	}
}

// ownerView renders owner's live records in n.
func ownerView(n *node, owner string) string {
	var out []string
	for _, e := range n.snapshot().Endpoints {
		if e.Host == owner {
			out = append(out, e.IP.String()+"="+e.MAC.String())
		}
	}
	return strings.Join(out, ",")
}

func TestTombstoneBeatsLateUpdate(t *testing.T) {
	a := newNode("a", 1, t0)
	add := a.updates(a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02")))
	del := a.updates(a.set(t))
	b := newNode("b", 2, t0)
	b.deliver(t, del...)
	if r := b.deliver(t, add...); r.changed || len(r.accepted) != 0 {
		t.Fatalf("late add after tombstone was accepted: %+v", r)
	}
	if got := endpoints(b); got != "" {
		t.Fatalf("deleted endpoint is back: %s", got)
	}
	// The tombstone travels on with its remaining lifetime, not a fresh one.
	b.now = b.now.Add(20 * time.Second)
	st := b.state(b.now)
	if len(st) != 1 || len(st[0].recs) != 1 || st[0].recs[0].ttl != 40*time.Second {
		t.Fatalf("state after 20s: %+v, want one tombstone with 40s left", st)
	}
}

func TestTombstoneGC(t *testing.T) {
	a := newNode("a", 1, t0)
	add := a.updates(a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02")))
	del := a.updates(a.set(t))
	b := newNode("b", 2, t0)
	b.deliver(t, add...)
	b.deliver(t, del...)
	if _, _, tombs := b.counts(); tombs != 1 {
		t.Fatalf("tombstones = %d, want 1", tombs)
	}
	if n := b.gc(b.now.Add(59 * time.Second)); n != 0 {
		t.Fatalf("collected %d tombstones before their time", n)
	}
	if n := b.gc(b.now.Add(time.Minute)); n != 1 {
		t.Fatalf("collected %d tombstones at expiry, want 1", n)
	}
	// After collection a very late copy of the add can come back; the owner
	// refutes it as soon as it sees it, and the refutation wins.
	b.deliver(t, add...)
	if endpoints(b) == "" {
		t.Fatalf("setup: late add not accepted after GC")
	}
	a.now = a.now.Add(time.Minute)
	a.gc(a.now)
	r := pushPull(t, a, b)
	if len(r.own) != 1 || !r.own[0].tomb {
		t.Fatalf("owner did not refute its deleted record: %+v", r.own)
	}
	b.deliver(t, a.updates(r.own)...)
	if got := endpoints(b); got != "" {
		t.Fatalf("stale endpoint survived the refutation: %s", got)
	}
}

// TestTombstoneTTLBounded: a tombstone's lifetime can only shrink as it is
// passed on, so two nodes cannot keep one alive forever.
func TestTombstoneTTLBounded(t *testing.T) {
	a := newNode("a", 1, t0)
	a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02"))
	del := a.set(t)
	del[0].ttl = time.Hour // a peer claiming more than our own TTL
	b := newNode("b", 2, t0)
	b.deliver(t, a.updates(del)...)
	if e := b.lookup("a", rkey{del[0].kind, del[0].key}); e.expires != b.now.Add(time.Minute) {
		t.Fatalf("tombstone expires %v, want capped at %v", e.expires, b.now.Add(time.Minute))
	}
}

func TestConcurrentWritersSameAddress(t *testing.T) {
	// a and b both claim 10.0.0.9 without having seen each other. Every
	// observer must pick the same winner whatever the arrival order.
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0) // same clock start: equal versions
	ua := a.updates(a.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0a")))
	ub := b.updates(b.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0b")))
	c1 := newNode("c1", 3, t0)
	c1.deliver(t, append(ua, ub...)...)
	c2 := newNode("c2", 4, t0)
	c2.deliver(t, append(ub, ua...)...)
	if endpoints(c1) != endpoints(c2) {
		t.Fatalf("observers disagree: %q vs %q", endpoints(c1), endpoints(c2))
	}
	if got, want := endpoints(c1), "mesh 10.0.0.9 02:00:00:00:00:0a a"; got != want {
		t.Fatalf("tie: %q, want %q (equal versions: lower host name wins)", got, want)
	}
	if cf := c1.snapshot().Conflicts; len(cf) != 1 || cf[0].Winner != "a" || cf[0].Loser != "b" {
		t.Fatalf("conflicts = %+v, want a over b", cf)
	}
}

func TestMovedAddress(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0.Add(-time.Hour)) // b's clock starts far behind
	c := newNode("c", 3, t0)
	addA := a.updates(a.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0a")))
	b.deliver(t, addA...) // b witnesses a's version
	c.deliver(t, addA...)

	// The container moves: b claims the address while a (dead, or not yet
	// told) still has it. b's version is above a's because b witnessed it.
	addB := b.updates(b.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0b")))
	c.deliver(t, addB...)
	if got, want := endpoints(c), "mesh 10.0.0.9 02:00:00:00:00:0b b"; got != want {
		t.Fatalf("after move: %q, want %q", got, want)
	}
	if n := len(c.snapshot().Conflicts); n != 1 {
		t.Fatalf("conflicts = %d, want 1 while a still claims the address", n)
	}
	// a withdraws (or is reaped): the conflict goes, b stays.
	c.deliver(t, a.updates(a.set(t))...)
	if got, want := endpoints(c), "mesh 10.0.0.9 02:00:00:00:00:0b b"; got != want {
		t.Fatalf("after withdraw: %q, want %q", got, want)
	}
	if cf := c.snapshot().Conflicts; len(cf) != 0 {
		t.Fatalf("conflicts = %+v after withdraw, want none", cf)
	}
	// Order the other way round: the withdraw first, then the claim.
	d := newNode("d", 4, t0)
	d.deliver(t, addA...)
	d.deliver(t, a.updates(a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:01")))...)
	d.deliver(t, addB...)
	if got, want := endpoints(d), "mesh 10.0.0.1 02:00:00:00:00:01 a; mesh 10.0.0.9 02:00:00:00:00:0b b"; got != want {
		t.Fatalf("withdraw then claim: %q, want %q", got, want)
	}
}

// TestRestartWins: a host restarts with an empty table. Its new records
// replace its old ones everywhere (same address, new MAC), and old records
// it no longer has disappear, whether its clock moved forward or back.
func TestRestartWins(t *testing.T) {
	for _, skew := range []time.Duration{time.Second, -time.Hour} {
		t.Run(fmt.Sprintf("clock%+v", skew), func(t *testing.T) {
			a1 := newNode("a", 1, t0)
			b := newNode("b", 2, t0)
			b.deliver(t, a1.updates(a1.set(t,
				ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web"),
				ep("mesh", "10.0.0.3", "02:00:00:00:00:03", "db"),
				claim("mesh", "10.0.0.0/24")))...)

			a2 := newNode("a", 1, t0.Add(skew)) // same host, new life, no memory
			// Before it declares anything, the new life refutes nothing.
			if r := pushPull(t, a2, b); len(r.own) != 0 {
				t.Fatalf("undeclared restart refuted %d records", len(r.own))
			}
			ups := a2.set(t,
				ep("mesh", "10.0.0.2", "02:00:00:00:00:22", "web"), // new MAC
				claim("mesh", "10.0.0.0/24"))
			b.deliver(t, a2.updates(ups)...)
			// The join push/pull both ways: b gets a2's complete set (asOf),
			// a2 sees its old records and refutes those that still win.
			pushPull(t, b, a2)
			r := pushPull(t, a2, b)
			b.deliver(t, a2.updates(r.own)...)
			if got, want := endpoints(b), "mesh 10.0.0.2 02:00:00:00:00:22 a"; got != want {
				t.Fatalf("after restart: %q, want %q", got, want)
			}
			if n := len(b.snapshot().BlockClaims); n != 1 {
				t.Fatalf("block claims = %d, want 1", n)
			}
			// And the new life is now stable: another exchange changes nothing.
			if r := pushPull(t, a2, b); len(r.own) != 0 {
				t.Fatalf("second exchange refuted %d more records", len(r.own))
			}
			if r := pushPull(t, b, a2); r.changed {
				t.Fatalf("second exchange changed b")
			}
		})
	}
}

// TestRestartRelaysOwnRecords: two hosts restart one after the other
// (docs/overlay.md, "Gossip readiness and agent restarts"). The first, a,
// joins b before it declares; then b restarts and joins a, the only member
// left. b must get a's records from a even though a has not declared them
// yet: otherwise b, ready after its join grace, programs from a table
// without them and deletes a's entries until a declares. Then a's first
// declaration supersedes the relay copies everywhere, and the ones it no
// longer has go.
func TestRestartRelaysOwnRecords(t *testing.T) {
	web := ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web")
	db := ep("mesh", "10.0.0.3", "02:00:00:00:00:03", "db")
	a1 := newNode("a", 1, t0)
	b1 := newNode("b", 2, t0)
	b1.deliver(t, a1.updates(a1.set(t, web, db, claim("mesh", "10.0.0.0/24")))...)
	b1.deliver(t, b1.updates(b1.set(t, ep("mesh", "10.0.1.2", "02:00:00:00:01:02", "api")))...)
	const aRecs = "mesh 10.0.0.2 02:00:00:00:00:02 a; mesh 10.0.0.3 02:00:00:00:00:03 a"

	a2 := newNode("a", 1, t0.Add(time.Second)) // a restarts and joins b
	if r := pushPull(t, a2, b1); len(r.own) != 0 {
		t.Fatalf("undeclared restart refuted %d records", len(r.own))
	}
	// Relay copies claim nothing: not in a2's own view, no asOf.
	if got, want := endpoints(a2), "mesh 10.0.1.2 02:00:00:00:01:02 b"; got != want {
		t.Fatalf("a2's view before it declares: %q, want %q", got, want)
	}
	for _, g := range a2.state(a2.now) {
		if g.owner == "a" && g.asOf != 0 {
			t.Fatalf("undeclared a2 sends asOf %d for its records", g.asOf)
		}
	}

	b2 := newNode("b", 2, t0.Add(2*time.Second)) // b restarts and joins a2
	pushPull(t, b2, a2)
	if got := endpoints(b2); got != aRecs {
		t.Fatalf("b2 after joining undeclared a2: %q, want %q", got, aRecs)
	}
	pushPull(t, a2, b2) // the other half of the join: a2 keeps its copies
	if got := endpoints(b2); got != aRecs {
		t.Fatalf("b2 after the whole join: %q, want %q", got, aRecs)
	}

	// a2 declares: web anew (same value, new version), db gone, a new one.
	api2 := ep("mesh", "10.0.0.4", "02:00:00:00:00:04", "api2")
	ups := a2.set(t, web, api2, claim("mesh", "10.0.0.0/24"))
	if len(ups) != 4 {
		t.Fatalf("first declaration published %d records, want 4 (web, api2, the claim anew; db's tombstone)", len(ups))
	}
	webKey := rkey{KindEndpoint, string(web.appendKey(nil))}
	prev := b2.lookup("a", webKey).version
	b2.deliver(t, a2.updates(ups)...)
	if v := b2.lookup("a", webKey).version; v <= prev {
		t.Fatalf("web's new version %d does not supersede the previous life's %d", v, prev)
	}
	const after = "mesh 10.0.0.2 02:00:00:00:00:02 a; mesh 10.0.0.4 02:00:00:00:00:04 a"
	if got := endpoints(b2); got != after {
		t.Fatalf("b2 after a2 declared: %q, want %q", got, after)
	}
	if got := endpoints(a2); !strings.Contains(got, after) {
		t.Fatalf("a2's own view after it declared: %q, want %q in it", got, after)
	}
	// Stable: the join exchanges both ways change and refute nothing.
	if r := pushPull(t, a2, b2); len(r.own) != 0 || r.changed {
		t.Fatalf("exchange after the declaration: %d refuted, changed %v", len(r.own), r.changed)
	}
	if r := pushPull(t, b2, a2); r.changed {
		t.Fatal("exchange after the declaration changed b2")
	}
}

func TestForgedOwnRecordRefuted(t *testing.T) {
	a := newNode("a", 1, t0)
	a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02"))
	// Someone publishes "a's" record for 10.0.0.2 with another MAC and a
	// huge version, and an extra record a never had.
	forged := &group{owner: "a", vtep: a.vtep, recs: []wireRecord{
		{kind: KindEndpoint, version: 1 << 60, key: string(ep("mesh", "10.0.0.2", "02:00:00:00:00:02").appendKey(nil)), val: string(ep("mesh", "10.0.0.2", "02:00:00:00:00:66").appendValue(nil))},
		{kind: KindEndpoint, version: 5, key: string(ep("mesh", "10.0.0.7", "02:00:00:00:00:07").appendKey(nil)), val: string(ep("mesh", "10.0.0.7", "02:00:00:00:00:07").appendValue(nil))},
	}}
	r := a.deliver(t, forged)
	if len(r.own) != 2 {
		t.Fatalf("refutations = %+v, want 2", r.own)
	}
	for _, w := range r.own {
		if w.version <= 1<<60 {
			t.Fatalf("refutation version %d does not beat the forgery", w.version)
		}
	}
	if got := endpoints(a); got != "mesh 10.0.0.2 02:00:00:00:00:02 a" {
		t.Fatalf("own view changed by forgery: %s", got)
	}
	// A third node that saw the forgery converges to a's truth.
	c := newNode("c", 3, t0)
	c.deliver(t, forged)
	c.deliver(t, a.updates(r.own)...)
	if got, want := endpoints(c), "mesh 10.0.0.2 02:00:00:00:00:02 a"; got != want {
		t.Fatalf("observer: %q, want %q", got, want)
	}
}

func TestSyncDropsMissing(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0)
	b.deliver(t, a.updates(a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02"), ep("mesh", "10.0.0.3", "02:00:00:00:00:03")))...)
	// b misses the delete (partition) and the tombstone is long gone.
	a.set(t, ep("mesh", "10.0.0.3", "02:00:00:00:00:03"))
	a.now = a.now.Add(time.Hour)
	a.gc(a.now)
	// A record written after the sync was built arrives first (UDP beats TCP).
	g, ok := a.ownSync(a.now)
	if !ok {
		t.Fatal("ownSync not ok after setLocal")
	}
	late := a.updates(a.set(t, ep("mesh", "10.0.0.3", "02:00:00:00:00:03"), ep("mesh", "10.0.0.4", "02:00:00:00:00:04")))
	b.deliver(t, late...)
	r := b.merge(roundTrip(t, msgSync, &g), b.now)
	if r.dropped != 1 {
		t.Fatalf("dropped = %d, want 1", r.dropped)
	}
	if got, want := ownerView(b, "a"), "10.0.0.3=02:00:00:00:00:03,10.0.0.4=02:00:00:00:00:04"; got != want {
		t.Fatalf("after sync: %q, want %q", got, want)
	}
}

func TestUnknownKindRelayed(t *testing.T) {
	a := newNode("a", 1, t0)
	g := &group{owner: "a", vtep: a.vtep, recs: []wireRecord{{kind: 200, version: 7, key: "opaque-key", val: "opaque-value"}}}
	b := newNode("b", 2, t0)
	r := b.deliver(t, g)
	if len(r.accepted) != 1 || r.changed {
		t.Fatalf("unknown kind: accepted %d changed %v, want stored without a visible change", len(r.accepted), r.changed)
	}
	if s := b.snapshot(); len(s.Endpoints)+len(s.BlockClaims) != 0 {
		t.Fatalf("unknown kind in snapshot: %+v", s)
	}
	c := newNode("c", 3, t0)
	pushPull(t, c, b)
	if e := c.lookup("a", rkey{200, "opaque-key"}); e == nil || e.val != "opaque-value" || e.version != 7 {
		t.Fatalf("unknown kind not carried by push/pull: %+v", e)
	}
}

func TestInvalidRecordsSkipped(t *testing.T) {
	a := newNode("a", 1, t0)
	good := ep("mesh", "10.0.0.2", "02:00:00:00:00:02")
	g := &group{owner: "a", vtep: a.vtep, recs: []wireRecord{
		{kind: KindEndpoint, version: 3, key: "junk", val: "junk"},
		{kind: KindEndpoint, version: 4, key: string(good.appendKey(nil)), val: string(good.appendValue(nil))},
	}}
	b := newNode("b", 2, t0)
	r := b.deliver(t, g)
	if r.invalid != 1 || len(r.accepted) != 1 {
		t.Fatalf("invalid = %d accepted = %d, want 1 and 1", r.invalid, len(r.accepted))
	}
}

func TestReap(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0)
	b.deliver(t, a.updates(a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02"), claim("mesh", "10.0.0.0/24")))...)
	if n := b.liveCount("a"); n != 2 {
		t.Fatalf("liveCount = %d, want 2", n)
	}
	gen := b.gen
	if n := b.reap("a"); n != 2 {
		t.Fatalf("reap = %d, want 2", n)
	}
	if b.gen == gen || endpoints(b) != "" {
		t.Fatalf("reap left %q (gen %d -> %d)", endpoints(b), gen, b.gen)
	}
}

func TestBlockClaimConflicts(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0.Add(time.Second))
	c := newNode("c", 3, t0)
	c.deliver(t, a.updates(a.set(t, claim("mesh", "10.0.0.0/24"), claim("mesh", "10.0.2.0/24")))...)
	// b claims an overlapping /23 later, and a disjoint block, and the same
	// block on another network.
	c.deliver(t, b.updates(b.set(t, claim("mesh", "10.0.0.0/23"), claim("mesh", "10.0.4.0/24"), claim("other", "10.0.0.0/24")))...)
	s := c.snapshot()
	var got []string
	for _, bc := range s.BlockClaims {
		got = append(got, bc.Network+" "+bc.Prefix.String()+" "+bc.Host)
	}
	want := []string{"mesh 10.0.0.0/24 a", "mesh 10.0.2.0/24 a", "mesh 10.0.4.0/24 b", "other 10.0.0.0/24 b"}
	if !slices.Equal(got, want) {
		t.Fatalf("claims = %q, want %q", got, want)
	}
	if len(s.Conflicts) != 1 || s.Conflicts[0].Loser != "b" || s.Conflicts[0].Winner != "a" || s.Conflicts[0].LoserKey != "10.0.0.0/23" {
		t.Fatalf("conflicts = %+v", s.Conflicts)
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	a := newNode("a", 1, t0)
	a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web"))
	s := a.snapshot().clone()
	s.Endpoints[0].MAC[0] = 0xff
	s.Endpoints[0].Names[0] = "evil"
	if got := a.snapshot().Endpoints[0]; got.MAC[0] != 0x02 || got.Names[0] != "web" {
		t.Fatalf("snapshot aliases the table: %+v", got)
	}
	// The copies share arrays: growing one endpoint's fields must not
	// write into the next one's.
	a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web"), ep("mesh", "10.0.0.3", "02:00:00:00:00:03", "db"))
	s = a.snapshot().clone()
	s.Endpoints[0].Names = append(s.Endpoints[0].Names, "www")
	s.Endpoints[0].MAC = append(s.Endpoints[0].MAC, 0xee)
	if e := s.Endpoints[1]; e.Names[0] != "db" || e.MAC[0] != 0x02 || e.MAC[5] != 0x03 {
		t.Fatalf("appending to one copy changed the next: %+v", e)
	}
}

func TestJSON(t *testing.T) {
	a := newNode("a", 1, t0)
	a.set(t, ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web"))
	b, err := json.Marshal(a.snapshot().Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"network":"mesh","container":"web","ip":"10.0.0.2","names":["web"],"host":"a","vtep":"198.18.0.1","version":1735732800000001,"mac":"02:00:00:00:00:02"}`
	if string(b) != want {
		t.Fatalf("json:\n%s\nwant\n%s", b, want)
	}
	if b, _ := json.Marshal(Conflict{Kind: KindBlockClaim}); !strings.Contains(string(b), `"kind":"block-claim"`) {
		t.Fatalf("conflict json: %s", b)
	}
}

func TestFixedClaimBeatsOlderClaim(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0.Add(time.Second))
	c := newNode("c", 3, t0)
	c.deliver(t, a.updates(a.set(t, claim("mesh", "10.0.5.0/24")))...)
	fixed := claim("mesh", "10.0.5.0/24")
	fixed.Fixed = true
	// b's ip_range claim is newer but wins; it survives the wire.
	c.deliver(t, b.updates(b.set(t, fixed))...)
	s := c.snapshot()
	if len(s.BlockClaims) != 1 || s.BlockClaims[0].Host != "b" || !s.BlockClaims[0].Fixed {
		t.Fatalf("claims = %+v, want b's fixed claim", s.BlockClaims)
	}
	if len(s.Conflicts) != 1 || s.Conflicts[0].Loser != "a" {
		t.Fatalf("conflicts = %+v, want a's automatic claim shadowed", s.Conflicts)
	}
}

func TestShadowedEndpoints(t *testing.T) {
	a := newNode("a", 1, t0)
	b := newNode("b", 2, t0.Add(time.Second))
	c := newNode("c", 3, t0)
	c.deliver(t, a.updates(a.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0a", "x")))...)
	c.deliver(t, b.updates(b.set(t, ep("mesh", "10.0.0.9", "02:00:00:00:00:0b", "y")))...)
	s := c.snapshot()
	if len(s.Endpoints) != 1 || s.Endpoints[0].Host != "b" {
		t.Fatalf("endpoints = %+v, want b's (newer)", s.Endpoints)
	}
	if len(s.Shadowed) != 1 || s.Shadowed[0].Host != "a" || s.Shadowed[0].Container != "x" {
		t.Fatalf("shadowed = %+v, want a's", s.Shadowed)
	}
	if s.Shadowed[0].Version == 0 || s.Shadowed[0].Version >= s.Endpoints[0].Version {
		t.Fatalf("versions: shadowed %d, winner %d; want 0 < shadowed < winner", s.Shadowed[0].Version, s.Endpoints[0].Version)
	}
	cl := s.clone()
	cl.Shadowed[0].MAC[0] = 0xff
	if c.snapshot().Shadowed[0].MAC[0] != 0x02 {
		t.Fatal("clone aliases shadowed MACs")
	}
	// A Version given to SetLocal is ignored.
	e := ep("mesh", "10.0.0.3", "02:00:00:00:00:03")
	e.Version = 7
	a.set(t, e)
	if v := a.snapshot().Endpoints[0].Version; v == 7 {
		t.Fatal("SetLocal took the caller's version")
	}
}

// TestTableSeen: the digest bookkeeping. An own change moves ownSeen; a
// merge of another owner's records (or its complete set's asOf) moves
// seen, which tombstone collection does not lower and reaping forgets.
func TestTableSeen(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newTable("h1", netip.MustParseAddr("198.18.0.1"), time.Second, now)
	b := newTable("h2", netip.MustParseAddr("198.18.0.2"), time.Second, now)
	if a.ownSeen.Load() != 0 || a.behind("h2", 0) {
		t.Fatalf("fresh table: ownSeen %d, behind %v", a.ownSeen.Load(), a.behind("h2", 0))
	}
	out, err := b.setLocal([]Record{Endpoint{Network: "mesh", Container: "x", IP: netip.MustParseAddr("10.0.0.2"), MAC: []byte{2, 0, 0, 0, 0, 2}}}, now)
	if err != nil || b.ownSeen.Load() == 0 {
		t.Fatalf("setLocal: %v, ownSeen %d", err, b.ownSeen.Load())
	}
	if !a.behind("h2", b.ownSeen.Load()) {
		t.Fatal("not behind before the merge")
	}
	a.merge(&group{owner: "h2", vtep: b.vtep, recs: out}, now)
	if a.behind("h2", b.ownSeen.Load()) {
		t.Fatal("behind after the merge")
	}
	// A deletion: a tombstone with a newer version.
	out, _ = b.setLocal(nil, now)
	if !a.behind("h2", b.ownSeen.Load()) {
		t.Fatal("not behind before the tombstone")
	}
	a.merge(&group{owner: "h2", vtep: b.vtep, recs: out}, now)
	a.gc(now.Add(time.Hour))
	if a.behind("h2", b.ownSeen.Load()) {
		t.Fatal("behind after the tombstone was collected")
	}
	// An unchanged declaration moves nothing.
	v := b.ownSeen.Load()
	if _, err := b.setLocal(nil, now); err != nil || b.ownSeen.Load() != v {
		t.Fatalf("unchanged setLocal moved ownSeen %d -> %d (%v)", v, b.ownSeen.Load(), err)
	}
	// A complete set as of a later clock.
	a.merge(&group{owner: "h2", vtep: b.vtep, asOf: b.clock + 5}, now)
	if a.behind("h2", b.clock+5) {
		t.Fatal("behind after a complete set")
	}
	a.reap("h2")
	if !a.behind("h2", 1) {
		t.Fatal("a reaped owner is still remembered")
	}
}

// TestDigests: members that hold the same records have the same digests
// (whatever the tombstones' remaining lifetimes); any difference in an
// owner's records shows as that owner, and the State of only those owners
// repairs it.
func TestDigests(t *testing.T) {
	start := time.Now()
	a, b, c := newNode("a", 1, start), newNode("b", 2, start), newNode("c", 3, start)
	a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:01", "x"), ep("mesh", "10.0.0.2", "02:00:00:00:00:02"))
	a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:01", "x")) // a tombstone
	b.set(t, ep("mesh", "10.0.1.1", "02:00:00:00:01:01"))
	c.set(t, nil...)
	pushPull(t, b, a)
	pushPull(t, a, b)
	c.now = start.Add(10 * time.Second) // tombstones with less time left
	pushPull(t, c, a)
	pushPull(t, c, b)
	for _, n := range []*node{a, b} {
		if d := c.differing(n.digests()); len(d) != 0 {
			t.Fatalf("c and %s agree but differ on %v", n.self, d)
		}
	}
	if got := len(a.digests()); got != 2 {
		t.Fatalf("a's digest has %d owners, want 2 (c has no records)", got)
	}

	// a changes a record: only a differs, for b.
	a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:09", "x"))
	if d := b.differing(a.digests()); !slices.Equal(d, []string{"a"}) {
		t.Fatalf("b differs from a on %v, want [a]", d)
	}
	// b misses none of a's owners the other way round: the change is a's.
	// The State of the owners asked for repairs b.
	m, err := decodeMessage(encodeState(a.stateOf([]string{"a"}, a.now)))
	if err != nil || len(m.groups) != 1 {
		t.Fatalf("state of a: %v, %d groups", err, len(m.groups))
	}
	b.merge(&m.groups[0], b.now)
	if d := b.differing(a.digests()); len(d) != 0 {
		t.Fatalf("after the answer b still differs on %v", d)
	}
	if a.liveCount("a") != 1 || b.liveCount("a") != 1 || b.liveCount("b") != 1 {
		t.Fatalf("live counts: a/a %d b/a %d b/b %d", a.liveCount("a"), b.liveCount("a"), b.liveCount("b"))
	}
	// Collection and reaping change the digest too.
	before := b.summary("a")
	b.gc(start.Add(time.Hour))
	if after := b.summary("a"); after == before {
		t.Fatal("gc left the summary unchanged")
	}
	b.reap("a")
	if s := b.summary("a"); s != (ownerSum{}) {
		t.Fatalf("summary after reap: %+v", s)
	}
	// Owners named in a digest that we do not hold leave no trace.
	if d := b.differing([]ownerDigest{{"nobody", 1, 1}}); !slices.Equal(d, []string{"nobody"}) || len(b.sums) > len(b.owners) {
		t.Fatalf("differing %v; %d sums cached for %d owners", d, len(b.sums), len(b.owners))
	}
}

// TestRecordHash: the hash covers what copies must agree on and nothing
// else.
func TestRecordHash(t *testing.T) {
	v := netip.MustParseAddr("198.18.0.1")
	k := rkey{KindEndpoint, "key"}
	base := entry{version: 5, val: "val", vtep: v, origin: 1}
	h := recordHash(k, &base)
	same := base
	same.origin, same.expires = 99, time.Now()
	if recordHash(k, &same) != h {
		t.Error("origin or expiry changed the hash")
	}
	for name, e := range map[string]entry{
		"version": {version: 6, val: "val", vtep: v},
		"value":   {version: 5, val: "vam", vtep: v},
		"vtep":    {version: 5, val: "val", vtep: netip.MustParseAddr("198.18.0.2")},
		"tomb":    {version: 5, tomb: true, vtep: v},
	} {
		if recordHash(k, &e) == h {
			t.Errorf("%s: same hash", name)
		}
	}
	if recordHash(rkey{KindBlockClaim, "key"}, &base) == h || recordHash(rkey{KindEndpoint, "kez"}, &base) == h {
		t.Error("kind or key left out of the hash")
	}
}

// TestGCOnlyWhenDue: gc knows when the earliest tombstone expires and
// scans nothing before.
func TestGCOnlyWhenDue(t *testing.T) {
	start := time.Now()
	a := newNode("a", 1, start)
	if !a.nextGC.IsZero() {
		t.Fatal("a new table has a gc due")
	}
	a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:01"), ep("mesh", "10.0.0.2", "02:00:00:00:00:02"))
	a.set(t, ep("mesh", "10.0.0.1", "02:00:00:00:00:01"))
	if want := start.Add(time.Minute); !a.nextGC.Equal(want) {
		t.Fatalf("next gc %v, want %v", a.nextGC, want)
	}
	a.now = start.Add(30 * time.Second)
	a.set(t, nil...) // a second tombstone, due later
	if n := a.gc(start.Add(59 * time.Second)); n != 0 {
		t.Fatalf("gc before the first expiry collected %d", n)
	}
	if n := a.gc(start.Add(time.Minute)); n != 1 || !a.nextGC.Equal(start.Add(90*time.Second)) {
		t.Fatalf("gc collected %d, next %v; want 1, %v", n, a.nextGC, start.Add(90*time.Second))
	}
	if n := a.gc(start.Add(2 * time.Minute)); n != 1 || !a.nextGC.IsZero() {
		t.Fatalf("gc collected %d, next %v; want 1, none", n, a.nextGC)
	}
}
