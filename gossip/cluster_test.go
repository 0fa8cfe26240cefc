package gossip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// Multi-member tests with real memberlist. Pure-gossip tests run many
// members on 127.0.0.x inside one fresh namespace; partition tests run
// members on nstest hosts and cut a host's underlay link.

func TestClusterConvergesAndLateJoiner(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	cs := loCluster(t, ns, 4, nil)
	for i, c := range cs {
		recs := append(hostEndpoints(i+1, 5, 0), BlockClaim{Network: "mesh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i + 1), 0}), 24)})
		mustSet(t, c, recs...)
	}
	waitSame(t, 5*time.Second, cs, "")
	s := cs[0].Snapshot()
	if len(s.Endpoints) != 20 || len(s.BlockClaims) != 4 || len(s.Conflicts) != 0 {
		t.Fatalf("snapshot: %d endpoints, %d claims, %d conflicts; want 20, 4, 0", len(s.Endpoints), len(s.BlockClaims), len(s.Conflicts))
	}
	for _, e := range s.Endpoints {
		if want := lo(int(e.IP.As4()[2])); e.VTEP != want || e.Host != fmt.Sprintf("h%d", e.IP.As4()[2]) {
			t.Fatalf("endpoint %s: host %s vtep %s, want h%d %s", e.IP, e.Host, e.VTEP, e.IP.As4()[2], want)
		}
	}

	// Change MACs and drop two endpoints on h2: no stale entry anywhere.
	mustSet(t, cs[1], hostEndpoints(2, 3, 9)...)
	waitSame(t, 5*time.Second, cs, "")
	var h2 []string
	for _, e := range cs[3].Snapshot().Endpoints {
		if e.Host == "h2" {
			h2 = append(h2, e.IP.String()+"="+e.MAC.String())
		}
	}
	if want := []string{"10.200.2.2=02:09:00:00:02:02", "10.200.2.3=02:09:00:00:02:03", "10.200.2.4=02:09:00:00:02:04"}; !slices.Equal(h2, want) {
		t.Fatalf("h2 endpoints at h4: %q, want %q", h2, want)
	}

	// A member joining late gets the whole table.
	late := start(t, Config{Name: "h9", Addr: lo(9), Netns: ns, Join: []netip.AddrPort{netip.AddrPortFrom(lo(3), DefaultPort)}})
	waitSame(t, 5*time.Second, append(cs, late), view(cs[0]))
	waitMembers(t, append(cs, late), 5)

	ms := cs[0].Members()
	var got []string
	for _, m := range ms {
		got = append(got, fmt.Sprintf("%s %s %s %d %v", m.Name, m.Addr, m.State, m.Records, m.Self))
	}
	want := []string{
		"h1 127.0.0.1:7946 alive 6 true",
		"h2 127.0.0.2:7946 alive 3 false",
		"h3 127.0.0.3:7946 alive 6 false",
		"h4 127.0.0.4:7946 alive 6 false",
		"h9 127.0.0.9:7946 alive 0 false",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("members:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := cs[0].Stats()
	if st.Members != 5 || st.LocalRecords != 6 || st.RemoteRecords != 15 || st.BytesSent == 0 || st.BytesReceived == 0 || st.Rejected != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestClusterMovedAddress(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	cs := loCluster(t, ns, 3, nil)
	x := func(mac byte) Endpoint {
		return Endpoint{Network: "mesh", Container: "web", IP: netip.MustParseAddr("10.200.9.9"), MAC: []byte{2, 0, 0, 0, 0, mac}, Names: []string{"web"}}
	}
	mustSet(t, cs[0], x(1))
	waitSame(t, 5*time.Second, cs, "mesh 10.200.9.9 02:00:00:00:00:01 h1 127.0.0.1 [web]")

	// The container moves from h1 to h2 (new MAC): h1 withdraws, h2 claims.
	mustSet(t, cs[0])
	mustSet(t, cs[1], x(2))
	waitSame(t, 5*time.Second, cs, "mesh 10.200.9.9 02:00:00:00:00:02 h2 127.0.0.2 [web]")
	// Once h1's withdrawal has arrived everywhere, nothing is shadowed.
	nstest.Eventually(t, 5*time.Second, func() error {
		for _, c := range cs {
			if cf := c.Snapshot().Conflicts; len(cf) != 0 {
				return fmt.Errorf("%s: conflicts after a clean move: %+v", c.Name(), cf)
			}
		}
		return nil
	})

	// It moves on to h3 while h2 dies without withdrawing: h3's newer
	// claim wins at once everywhere; h2's shadowed record goes at reap.
	cs[1].Shutdown()
	mustSet(t, cs[2], x(3))
	waitSame(t, 5*time.Second, []*Cluster{cs[0], cs[2]}, "mesh 10.200.9.9 02:00:00:00:00:03 h3 127.0.0.3 [web]")
	if cf := cs[0].Snapshot().Conflicts; len(cf) != 1 || cf[0].Winner != "h3" || cf[0].Loser != "h2" {
		t.Fatalf("conflicts at h1: %+v, want h3 over h2", cf)
	}
	if n := cs[0].Stats().Conflicts; n != 1 {
		t.Fatalf("Stats.Conflicts at h1 = %d, want 1", n)
	}
}

// TestClusterRestart: a host restarts with a new MAC for one address, one
// endpoint gone and one new; its new records replace the old everywhere.
func TestClusterRestart(t *testing.T) {
	t.Parallel()
	for _, waitDead := range []bool{false, true} {
		t.Run(fmt.Sprintf("waitDead=%v", waitDead), func(t *testing.T) {
			t.Parallel()
			ns := loopbackNS(t)
			cs := loCluster(t, ns, 3, nil)
			mustSet(t, cs[0], hostEndpoints(1, 1, 0)...)
			mustSet(t, cs[2], hostEndpoints(3, 3, 0)...)
			waitSame(t, 5*time.Second, cs, "")

			cs[2].Shutdown()
			if waitDead {
				nstest.Eventually(t, 5*time.Second, func() error {
					if m := cs[0].Members(); m[2].State != MemberDead {
						return fmt.Errorf("h3 is %s at h1", m[2].State)
					}
					return nil
				})
			}
			cfg := Config{Name: "h3", Addr: lo(3), Netns: ns, ReapAfter: 30 * time.Second, Join: []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}}
			h3 := startWith(t, cfg, func(c *Cluster) {
				recs := hostEndpoints(3, 2, 7)[:1]             // 10.200.3.2, new MAC
				recs = append(recs, hostEndpoints(3, 5, 0)[4]) // 10.200.3.6, new
				if err := c.SetLocal(recs); err != nil {       // before Run, as the agent does
					t.Fatal(err)
				}
			})
			want := strings.Join([]string{
				"mesh 10.200.1.2 02:00:00:00:01:02 h1 127.0.0.1 [c1-0]",
				"mesh 10.200.3.2 02:07:00:00:03:02 h3 127.0.0.3 [c3-0]",
				"mesh 10.200.3.6 02:00:00:00:03:06 h3 127.0.0.3 [c3-4]",
			}, "\n")
			waitSame(t, 5*time.Second, []*Cluster{cs[0], cs[1], h3}, want)
		})
	}
}

// TestClusterTwoRestarts: two hosts whose agents restart one after the
// other (docs/overlay.md, "Gossip readiness and agent restarts"). h1
// restarts and joins h2; before h1 declares its records, h2 restarts too
// and can only join h1. h2 must receive h1's records from h1 itself, as
// relay copies of h1's previous life, or it programs a table without them
// until h1 declares. Then h1's declaration supersedes them.
func TestClusterTwoRestarts(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	cfg := func(i, join int) Config {
		return Config{Name: fmt.Sprintf("h%d", i), Addr: lo(i), Netns: ns, ReapAfter: 30 * time.Second,
			Join: []netip.AddrPort{netip.AddrPortFrom(lo(join), DefaultPort)}}
	}
	h1, h2 := start(t, cfg(1, 2)), start(t, cfg(2, 1))
	waitMembers(t, []*Cluster{h1, h2}, 2)
	mustSet(t, h1, hostEndpoints(1, 2, 0)...)
	mustSet(t, h2, hostEndpoints(2, 1, 0)...)
	waitSame(t, 5*time.Second, []*Cluster{h1, h2}, "")
	h1Recs := strings.Join([]string{
		"mesh 10.200.1.2 02:00:00:00:01:02 h1 127.0.0.1 [c1-0]",
		"mesh 10.200.1.3 02:00:00:00:01:03 h1 127.0.0.1 [c1-1]",
	}, "\n")
	h2Recs := "mesh 10.200.2.2 02:00:00:00:02:02 h2 127.0.0.2 [c2-0]"

	stop := func(c *Cluster) {
		t.Helper()
		if err := c.Leave(time.Second); err != nil {
			t.Fatal(err)
		}
		c.Shutdown()
	}
	stop(h1)
	h1b := start(t, cfg(1, 2)) // does not declare in this test
	waitSame(t, 5*time.Second, []*Cluster{h1b}, h2Recs)
	stop(h2)
	h2b := start(t, cfg(2, 1)) // nor does this one, until the end
	// h1b, undeclared, is the only holder of h1's records.
	nstest.Eventually(t, 5*time.Second, func() error {
		if v := view(h2b); !strings.Contains(v, h1Recs) {
			return fmt.Errorf("h2 after joining undeclared h1 has\n%s\nwant h1's records\n%s", v, h1Recs)
		}
		return nil
	})

	// h1 declares: one endpoint as before, one gone.
	mustSet(t, h1b, hostEndpoints(1, 1, 0)...)
	mustSet(t, h2b, hostEndpoints(2, 1, 0)...)
	want := "mesh 10.200.1.2 02:00:00:00:01:02 h1 127.0.0.1 [c1-0]\n" + h2Recs
	waitSame(t, 5*time.Second, []*Cluster{h1b, h2b}, want)
	if st := h1b.Stats(); st.Refuted != 0 {
		t.Fatalf("h1 refuted %d records of its previous life; its declaration should supersede them", st.Refuted)
	}
}

// TestClusterReap: a host that dies (or leaves) keeps its records in the
// others' tables for reap_after, then they go everywhere; when it returns
// its records come back.
func TestClusterReap(t *testing.T) {
	t.Parallel()
	const reapAfter = 2 * time.Second
	for _, leave := range []bool{false, true} {
		t.Run(fmt.Sprintf("leave=%v", leave), func(t *testing.T) {
			t.Parallel()
			ns := loopbackNS(t)
			cs := loCluster(t, ns, 3, func(c *Config) { c.ReapAfter = reapAfter })
			mustSet(t, cs[2], hostEndpoints(3, 4, 0)...)
			waitSame(t, 5*time.Second, cs, "")
			full := view(cs[0])

			gone := time.Now()
			if leave {
				if err := cs[2].Leave(time.Second); err != nil {
					t.Fatal(err)
				}
			}
			cs[2].Shutdown()
			// Not before: for reap_after after the host went, its records stay.
			for time.Since(gone) < reapAfter {
				for _, c := range cs[:2] {
					if v := view(c); v != full {
						t.Fatalf("%s dropped records %v after the host went, before reap_after %v:\n%s", c.Name(), time.Since(gone), reapAfter, v)
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			wantState := MemberDead
			if leave {
				wantState = MemberLeft
			}
			if m := cs[0].Members()[2]; m.State != wantState || m.ReapAt.IsZero() {
				t.Fatalf("h3 at h1: %+v, want %s with a reap time", m, wantState)
			}
			// Then gone everywhere.
			waitSame(t, 10*time.Second, cs[:2], "-")
			for _, c := range cs[:2] {
				if st := c.Stats(); st.Reaped != 4 {
					t.Fatalf("%s reaped %d records, want 4", c.Name(), st.Reaped)
				}
			}

			// The host comes back: its records are back everywhere.
			h3 := startWith(t, Config{Name: "h3", Addr: lo(3), Netns: ns, ReapAfter: reapAfter, Join: []netip.AddrPort{netip.AddrPortFrom(lo(2), DefaultPort)}}, func(c *Cluster) {
				mustSet(t, c, hostEndpoints(3, 4, 0)...)
			})
			waitSame(t, 5*time.Second, []*Cluster{cs[0], cs[1], h3}, full)
		})
	}
}

func TestClusterWrongKey(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	cs := loCluster(t, ns, 2, func(c *Config) { c.Keys = [][]byte{k1} })
	mustSet(t, cs[0], hostEndpoints(1, 2, 0)...)
	waitSame(t, 5*time.Second, cs, "")
	keyed := view(cs[0])

	join := []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}
	for _, tc := range []struct {
		name string
		keys [][]byte
		addr netip.Addr
	}{
		{"wrong key", [][]byte{k2}, lo(7)},
		{"no key", nil, lo(8)},
	} {
		c := start(t, Config{Name: tc.name[:2], Addr: tc.addr, Netns: ns, Keys: tc.keys, Join: join})
		mustSet(t, c, hostEndpoints(int(tc.addr.As4()[3]), 2, 0)...)
		if _, err := c.ml.Join([]string{join[0].String()}); err == nil {
			t.Fatalf("%s: join succeeded", tc.name)
		}
		if got := c.Stats().Members; got != 1 {
			t.Fatalf("%s: outsider sees %d members", tc.name, got)
		}
	}
	// The keyed members never saw the outsiders nor their records.
	for _, c := range cs {
		if got := c.Stats().Members; got != 2 {
			t.Fatalf("%s sees %d members: %s", c.Name(), got, memberList(c))
		}
		if v := view(c); v != keyed {
			t.Fatalf("%s took outsider records:\n%s", c.Name(), v)
		}
	}
}

// TestClusterForged sends records that break the ownership rules from a
// real member, directly and through gossip, and checks they are refused,
// counted, and change nothing.
func TestClusterForged(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	var cs []*Cluster
	for i := 1; i <= 3; i++ {
		cfg := Config{Name: fmt.Sprintf("h%d", i), Addr: lo(i), Netns: ns, Tuning: fastTuning()}
		if i > 1 {
			cfg.Join = []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}
		}
		cs = append(cs, startWith(t, cfg, func(c *Cluster) { c.pendingTTL = 300 * time.Millisecond }))
	}
	waitMembers(t, cs, 3)
	h1, h2, evil := cs[0], cs[1], cs[2]
	mustSet(t, h1, hostEndpoints(1, 2, 0)...)
	mustSet(t, h2, hostEndpoints(2, 2, 0)...)
	waitSame(t, 5*time.Second, cs, "")
	honest := view(h1)

	rec := func(owner string, vtep netip.Addr, mac byte) []byte {
		e := hostEndpoints(1, 1, mac)[0].(Endpoint)
		return encodeUpdate(msgUpdate, &group{owner: owner, vtep: vtep, recs: []wireRecord{
			{kind: KindEndpoint, version: 1 << 61, key: string(e.appendKey(nil)), val: string(e.appendValue(nil))},
		}})
	}
	var h2node memberlist.Node
	for _, n := range evil.ml.Members() {
		if n.Name == "h2" {
			h2node = *n
		}
	}
	send := func(msg []byte) {
		if err := evil.ml.SendBestEffort(&h2node, msg); err != nil {
			t.Fatal(err)
		}
	}
	gossip := func(name string, msg []byte) {
		evil.relayQ.QueueBroadcast(&broadcast{name: name, msg: msg})
	}
	before := h2.Stats()

	// h1's record, with evil's own address as VTEP: refused (VTEP rule),
	// also by h1 itself.
	send(rec("h1", lo(3), 0x66))
	gossip("a", rec("h1", lo(3), 0x67))
	// evil's record pointing at h1's address: refused (VTEP rule).
	send(rec("h3", lo(1), 0x68))
	// A host that is no member: parked, then refused.
	send(rec("ghost", lo(9), 0x69))
	// h2's own record, forged: h2 refutes it.
	send(rec("h2", lo(2), 0x6a))
	// Garbage.
	send([]byte{wireFormat, msgUpdate, 0xff})

	nstest.Eventually(t, 5*time.Second, func() error {
		st := h2.Stats()
		d := func(a, b uint64) uint64 { return a - b }
		if d(st.RejectedVTEP, before.RejectedVTEP) < 2 || d(st.RejectedUnknownOwner, before.RejectedUnknownOwner) != 1 ||
			d(st.RejectedMalformed, before.RejectedMalformed) != 1 || d(st.Refuted, before.Refuted) != 1 {
			return fmt.Errorf("h2 stats: vtep %d unknown %d malformed %d refuted %d",
				d(st.RejectedVTEP, before.RejectedVTEP), d(st.RejectedUnknownOwner, before.RejectedUnknownOwner),
				d(st.RejectedMalformed, before.RejectedMalformed), d(st.Refuted, before.Refuted))
		}
		if st := h1.Stats(); st.RejectedVTEP == 0 {
			return fmt.Errorf("h1 did not refuse the gossiped forgery")
		}
		return nil
	})
	// The forged h2 record was refuted: everyone ends with the honest view.
	waitSame(t, 5*time.Second, cs, honest)
}

// TestKeyRotation rotates the gossip key on a running cluster in the three
// documented steps; the cluster stays whole and updates keep flowing.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	k1 := []byte("0123456789abcdef")
	k2 := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
	cs := loCluster(t, ns, 3, func(c *Config) { c.Keys = [][]byte{k1} })
	for step, keys := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, c := range cs {
			if err := c.SetKeys(keys); err != nil {
				t.Fatalf("step %d: %v", step+1, err)
			}
		}
		mustSet(t, cs[step], hostEndpoints(step+1, 1, byte(step))...)
		waitSame(t, 5*time.Second, cs, "")
		waitMembers(t, cs, 3)
		if got := len(cs[0].Snapshot().Endpoints); got != step+1 {
			t.Fatalf("step %d: %d endpoints, want %d", step+1, got, step+1)
		}
	}
	// Only the new key gets in now.
	join := []string{netip.AddrPortFrom(lo(1), DefaultPort).String()}
	old := start(t, Config{Name: "old", Addr: lo(8), Netns: ns, Keys: [][]byte{k1}})
	if _, err := old.ml.Join(join); err == nil {
		t.Fatal("a member with the retired key joined")
	}
	fresh := start(t, Config{Name: "new", Addr: lo(9), Netns: ns, Keys: [][]byte{k2}})
	if _, err := fresh.ml.Join(join); err != nil {
		t.Fatalf("a member with the new key cannot join: %v", err)
	}
	if err := (&Cluster{}).SetKeys([][]byte{k1}); err == nil {
		t.Fatal("SetKeys on a cluster without encryption succeeded")
	}
}

// TestClusterPartition cuts one host's underlay link, changes records on
// both sides, lets tombstones expire (or, long partition, lets both sides
// reap each other), heals, and checks everyone converges with no stale
// record. Members rejoin by themselves.
func TestClusterPartition(t *testing.T) {
	t.Parallel()
	for _, long := range []bool{false, true} {
		t.Run(fmt.Sprintf("long=%v", long), func(t *testing.T) {
			t.Parallel()
			tp := nstest.New(t, nstest.Options{Hosts: 3})
			reap := 30 * time.Second
			if long {
				reap = time.Second
			}
			var cs []*Cluster
			for i, h := range tp.Hosts {
				cfg := Config{Name: h.Name, Addr: h.Addr, Netns: h.NsHandle(t), ReapAfter: reap, TombstoneTTL: 500 * time.Millisecond}
				if i > 0 {
					cfg.Join = []netip.AddrPort{netip.AddrPortFrom(tp.Hosts[0].Addr, DefaultPort)}
				}
				cs = append(cs, start(t, cfg))
			}
			waitMembers(t, cs, 3)
			for i, c := range cs {
				mustSet(t, c, hostEndpoints(i+1, 3, 0)...)
			}
			waitSame(t, 5*time.Second, cs, "")

			tp.Hosts[2].SetUnderlayUp(t, false)
			waitMembers(t, cs[:2], 2)
			waitMembers(t, cs[2:], 1)
			// Both sides change: h1 drops one endpoint and adds one; h3 gives
			// one a new MAC and drops one.
			mustSet(t, cs[0], append(hostEndpoints(1, 2, 0), hostEndpoints(1, 5, 0)[4])...)
			mustSet(t, cs[2], hostEndpoints(3, 2, 5)...)
			nstest.Eventually(t, 10*time.Second, func() error {
				for _, c := range cs {
					st := c.Stats()
					if st.Tombstones != 0 {
						return fmt.Errorf("%s still has %d tombstones", c.Name(), st.Tombstones)
					}
					if long && st.Reaped == 0 {
						return fmt.Errorf("%s reaped nothing yet", c.Name())
					}
				}
				return nil
			})

			tp.Hosts[2].SetUnderlayUp(t, true)
			want := strings.Join([]string{
				"mesh 10.200.1.2 02:00:00:00:01:02 h1 198.18.0.1 [c1-0]",
				"mesh 10.200.1.3 02:00:00:00:01:03 h1 198.18.0.1 [c1-1]",
				"mesh 10.200.1.6 02:00:00:00:01:06 h1 198.18.0.1 [c1-4]",
				"mesh 10.200.2.2 02:00:00:00:02:02 h2 198.18.0.2 [c2-0]",
				"mesh 10.200.2.3 02:00:00:00:02:03 h2 198.18.0.2 [c2-1]",
				"mesh 10.200.2.4 02:00:00:00:02:04 h2 198.18.0.2 [c2-2]",
				"mesh 10.200.3.2 02:05:00:00:03:02 h3 198.18.0.3 [c3-0]",
				"mesh 10.200.3.3 02:05:00:00:03:03 h3 198.18.0.3 [c3-1]",
			}, "\n")
			waitSame(t, 10*time.Second, cs, want)
			waitMembers(t, cs, 3)
		})
	}
}

// TestSetJoin: peers configured at run time (a reload) are joined by the
// rejoin loop.
func TestSetJoin(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	h1 := start(t, Config{Name: "h1", Addr: lo(1), Netns: ns})
	h2 := start(t, Config{Name: "h2", Addr: lo(2), Netns: ns})
	mustSet(t, h1, hostEndpoints(1, 1, 0)...)
	if err := h2.SetJoin([]netip.AddrPort{{}}); err == nil {
		t.Fatal("SetJoin took an invalid address")
	}
	if err := h2.SetJoin([]netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, []*Cluster{h1, h2}, 2)
	waitSame(t, 5*time.Second, []*Cluster{h1, h2}, "")
}
