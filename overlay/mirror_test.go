package overlay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpCounter counts the neighbour dumps Sync makes through it.
type dumpCounter struct {
	Netlink
	dumps int
}

func (d *dumpCounter) NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	d.dumps++
	return d.Netlink.NeighListExecute(msg)
}

func neighUpd(typ uint16, n netlink.Neigh) netlink.NeighUpdate {
	u := netlink.NeighUpdate{Neigh: n}
	u.Type = typ
	return u
}

// TestMirrorSync: with a live mirror, Sync reads the kernel once, plans
// later changes against the copy, skips an unchanged input, and reads
// again after a notification it cannot explain, a failed write, a broken
// subscription or the maximum age.
func TestMirrorSync(t *testing.T) {
	f, idx := vxlanFake()
	k := &dumpCounter{Netlink: f}
	m := newMirror()
	clock := time.Unix(1e9, 0)
	m.now = func() time.Time { return clock }
	m.subscribed(true)
	remote := []Entry{ent("10.200.2.5", m1, v2), ent("10.200.3.5", m2, v3)}
	fdbSelf := func(mac, vtep string) netlink.Neigh {
		return netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			HardwareAddr: mustMAC(mac), IP: net.ParseIP(vtep)}
	}
	neigh := func(ip, mac string, state int) netlink.Neigh {
		return netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: state, IP: net.ParseIP(ip).To4(), HardwareAddr: mustMAC(mac)}
	}

	steps := []struct {
		name      string
		before    func()
		remote    []Entry
		dumps     int // dumps made by this step's Sync
		added     int
		unchanged int
	}{
		{"first sync reads", nil, remote, 3, 6, 0},
		{"same input: nothing", nil, remote, 0, 0, 6},
		{"our own writes' notifications are explained", func() {
			for _, u := range []netlink.NeighUpdate{
				neighUpd(unix.RTM_NEWNEIGH, fdbSelf(m1, v2)),
				neighUpd(unix.RTM_NEWNEIGH, fdbSelf(z, v3)),
				neighUpd(unix.RTM_NEWNEIGH, neigh("10.200.2.5", m1, netlink.NUD_PERMANENT)),
				neighUpd(unix.RTM_DELNEIGH, neigh("10.200.9.9", m3, netlink.NUD_PERMANENT)),
				neighUpd(unix.RTM_NEWNEIGH, neigh("10.200.9.9", m3, netlink.NUD_STALE)),
				neighUpd(unix.RTM_NEWNEIGH, netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, MasterIndex: 1, HardwareAddr: mustMAC(m3)}),
				neighUpd(unix.RTM_NEWNEIGH, neigh("10.200.2.5", m1, netlink.NUD_PERMANENT)),
			} {
				if !m.neighEvent(u) {
					t.Errorf("%+v not explained", u)
				}
			}
		}, remote, 0, 0, 6},
		{"new input: planned against the copy", nil, append(remote, ent("10.200.2.6", m3, v2)), 0, 2, 6},
		{"an entry deleted outside: read again", func() {
			f.Neighs = f.Neighs[:0]
			if m.neighEvent(neighUpd(unix.RTM_DELNEIGH, neigh("10.200.2.5", m1, netlink.NUD_PERMANENT))) {
				t.Error("outside delete explained")
			}
		}, append(remote, ent("10.200.2.6", m3, v2)), 3, 3, 5},
		{"an entry changed outside: read again", func() {
			if m.neighEvent(neighUpd(unix.RTM_NEWNEIGH, fdbSelf(m1, v3))) {
				t.Error("outside change explained")
			}
		}, append(remote, ent("10.200.2.6", m3, v2)), 3, 0, 8},
		{"subscription broke: read again", func() { m.subscribed(false); m.subscribed(true) },
			append(remote, ent("10.200.2.6", m3, v2)), 3, 0, 8},
		{"too old: read again", func() { clock = clock.Add(maxMirrorAge(8)) },
			append(remote, ent("10.200.2.6", m3, v2)), 3, 0, 8},
		{"and trusted after", nil, append(remote, ent("10.200.2.6", m3, v2)), 0, 0, 8},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		k.dumps = 0
		st, err := SyncWith(k, "vx-42", s.remote, m)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if k.dumps != s.dumps || st.Added != s.added || st.Unchanged != s.unchanged {
			t.Errorf("%s: %d dumps, %s; want %d dumps, %d added, %d unchanged", s.name, k.dumps, st, s.dumps, s.added, s.unchanged)
		}
		// The kernel holds what a Sync without the mirror wants.
		if st, err := Sync(f, "vx-42", s.remote); err != nil || st.Changed() {
			t.Errorf("%s: the kernel differs: %s, %v", s.name, st, err)
		}
	}
}

// TestMirrorNotLive: without a subscription (or before one), every Sync
// reads the kernel.
func TestMirrorNotLive(t *testing.T) {
	f, _ := vxlanFake()
	k := &dumpCounter{Netlink: f}
	m := newMirror()
	remote := []Entry{ent("10.200.2.5", m1, v2)}
	for i := range 3 {
		k.dumps = 0
		if _, err := SyncWith(k, "vx-42", remote, m); err != nil {
			t.Fatal(err)
		}
		if k.dumps != 3 {
			t.Fatalf("sync %d: %d dumps, want 3", i, k.dumps)
		}
	}
	// A read that spans a new subscription is not kept either.
	m.subscribed(true)
	_, _, _, _, tok := m.lookup(99, 0)
	m.subscribed(false)
	m.subscribed(true)
	m.expect(99, State{}, 0, Stats{}, true, tok)
	if m.links[99] != nil {
		t.Fatal("copy kept across subscriptions")
	}
}

// TestMirrorExplains covers the notification filter one case at a time.
func TestMirrorExplains(t *testing.T) {
	l := &linkMirror{known: true,
		uni:   map[macKey]fdbDst{keyOf(mustMAC(m1)): {vtep: netip.MustParseAddr(v2)}},
		flood: map[netip.Addr]bool{netip.MustParseAddr(v2): true},
		neigh: map[netip.Addr]macKey{netip.MustParseAddr("10.200.2.5"): keyOf(mustMAC(m1))},
	}
	fdb := func(mac, vtep string, state int, flags int, vni int) netlink.Neigh {
		return netlink.Neigh{Family: unix.AF_BRIDGE, Flags: flags, State: state, HardwareAddr: mustMAC(mac), IP: net.ParseIP(vtep), VNI: vni}
	}
	nb := func(ip, mac string, state, flags int) netlink.Neigh {
		n := netlink.Neigh{Family: unix.AF_INET, State: state, Flags: flags, IP: net.ParseIP(ip).To4()}
		if mac != "" {
			n.HardwareAddr = mustMAC(mac)
		}
		return n
	}
	const p, self = netlink.NUD_PERMANENT, netlink.NTF_SELF
	cases := []struct {
		name string
		typ  uint16
		n    netlink.Neigh
		want bool
	}{
		{"our fdb entry written", unix.RTM_NEWNEIGH, fdb(m1, v2, p, self, 0), true},
		{"our fdb entry moved", unix.RTM_NEWNEIGH, fdb(m1, v3, p, self, 0), false},
		{"our fdb entry with a vni", unix.RTM_NEWNEIGH, fdb(m1, v2, p, self, 7), false},
		{"our fdb entry deleted", unix.RTM_DELNEIGH, fdb(m1, v2, p, self, 0), false},
		{"an old destination deleted", unix.RTM_DELNEIGH, fdb(m1, v3, p, self, 0), true},
		{"a foreign permanent fdb entry", unix.RTM_NEWNEIGH, fdb(m2, v2, p, self, 0), false},
		{"a learned fdb entry", unix.RTM_NEWNEIGH, fdb(m2, v2, netlink.NUD_REACHABLE, self, 0), true},
		{"a learned entry replaced ours", unix.RTM_NEWNEIGH, fdb(m1, v2, netlink.NUD_REACHABLE, self, 0), false},
		{"the bridge's entry for the port", unix.RTM_DELNEIGH, fdb(m1, v2, p, 0, 0), true},
		{"our flood destination", unix.RTM_NEWNEIGH, fdb(z, v2, p, self, 0), true},
		{"a foreign flood destination", unix.RTM_NEWNEIGH, fdb(z, v3, p, self, 0), false},
		{"our flood destination deleted", unix.RTM_DELNEIGH, fdb(z, v2, p, self, 0), false},
		{"a foreign-vni destination deleted", unix.RTM_DELNEIGH, fdb(z, v2, p, self, 5), true},
		{"our neighbour written", unix.RTM_NEWNEIGH, nb("10.200.2.5", m1, p, 0), true},
		{"our neighbour remapped", unix.RTM_NEWNEIGH, nb("10.200.2.5", m2, p, 0), false},
		{"our neighbour deleted", unix.RTM_DELNEIGH, nb("10.200.2.5", m1, p, 0), false},
		{"our neighbour made dynamic", unix.RTM_NEWNEIGH, nb("10.200.2.5", m1, netlink.NUD_STALE, 0), false},
		{"a stale neighbour deleted", unix.RTM_DELNEIGH, nb("10.200.3.5", "", p, 0), true},
		{"a dynamic neighbour elsewhere", unix.RTM_NEWNEIGH, nb("10.200.3.5", "", netlink.NUD_INCOMPLETE, 0), true},
		{"a foreign permanent neighbour", unix.RTM_NEWNEIGH, nb("10.200.3.5", m2, p, 0), false},
		{"a proxy entry", unix.RTM_NEWNEIGH, nb("10.200.2.5", "", p, netlink.NTF_PROXY), true},
	}
	for _, c := range cases {
		if got := l.explains(neighUpd(c.typ, c.n)); got != c.want {
			t.Errorf("%s: explained %v, want %v", c.name, got, c.want)
		}
	}
}
