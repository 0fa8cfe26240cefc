package overlay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func fdb(mac, vtep string) FDBEntry {
	return FDBEntry{MAC: mustMAC(mac), VTEP: netip.MustParseAddr(vtep)}
}

func nb(ip, mac string) NeighEntry {
	return NeighEntry{IP: netip.MustParseAddr(ip), MAC: mustMAC(mac)}
}

const (
	z  = "00:00:00:00:00:00"
	m1 = "02:00:00:00:00:01"
	m2 = "02:00:00:00:00:02"
	m3 = "02:00:00:00:00:03"
	v2 = "198.18.0.2"
	v3 = "198.18.0.3"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		actual State
		remote []Entry
		want   []string
	}{
		{
			name:   "empty to two hosts",
			remote: []Entry{ent("10.200.2.5", m1, v2), ent("10.200.3.5", m2, v3), ent("10.200.3.6", m3, v3)},
			want: []string{
				"replace fdb " + m1 + " dst " + v2,
				"replace fdb " + m2 + " dst " + v3,
				"replace fdb " + m3 + " dst " + v3,
				"append fdb " + z + " dst " + v2,
				"append fdb " + z + " dst " + v3,
				"replace neigh 10.200.2.5 lladdr " + m1,
				"replace neigh 10.200.3.5 lladdr " + m2,
				"replace neigh 10.200.3.6 lladdr " + m3,
			},
		},
		{
			name: "in sync",
			actual: State{
				FDB:   []FDBEntry{fdb(m1, v2), fdb(z, v2)},
				Neigh: []NeighEntry{nb("10.200.2.5", m1)},
			},
			remote: []Entry{ent("10.200.2.5", m1, v2)},
		},
		{
			name: "mac moved to another vtep",
			actual: State{
				FDB:   []FDBEntry{fdb(m1, v2), fdb(z, v2)},
				Neigh: []NeighEntry{nb("10.200.2.5", m1)},
			},
			remote: []Entry{ent("10.200.2.5", m1, v3)},
			want: []string{
				"replace fdb " + m1 + " dst " + v3,
				"append fdb " + z + " dst " + v3,
				"delete fdb " + z + " dst " + v2,
			},
		},
		{
			name: "ip reused by a new container on another host",
			actual: State{
				FDB:   []FDBEntry{fdb(m1, v2), fdb(z, v2), fdb(z, v3)},
				Neigh: []NeighEntry{nb("10.200.2.5", m1)},
			},
			remote: []Entry{ent("10.200.2.5", m2, v3)},
			want: []string{
				"replace fdb " + m2 + " dst " + v3,
				"replace neigh 10.200.2.5 lladdr " + m2,
				"delete fdb " + m1 + " dst " + v2,
				"delete fdb " + z + " dst " + v2,
			},
		},
		{
			name: "everything removed",
			actual: State{
				FDB:   []FDBEntry{fdb(m1, v2), fdb(z, v2)},
				Neigh: []NeighEntry{nb("10.200.2.5", m1), nb("fd00:200::5", m1)},
			},
			want: []string{
				"delete neigh 10.200.2.5",
				"delete neigh fd00:200::5",
				"delete fdb " + m1 + " dst " + v2,
				"delete fdb " + z + " dst " + v2,
			},
		},
		{
			name: "foreign vni is rewritten",
			actual: State{
				FDB:   []FDBEntry{{MAC: mustMAC(m1), VTEP: netip.MustParseAddr(v2), VNI: 7}, {MAC: mustMAC(z), VTEP: netip.MustParseAddr(v2), VNI: 7}},
				Neigh: []NeighEntry{nb("10.200.2.5", m1)},
			},
			remote: []Entry{ent("10.200.2.5", m1, v2)},
			want: []string{
				"delete fdb " + z + " dst " + v2 + " vni 7",
				"replace fdb " + m1 + " dst " + v2,
				"append fdb " + z + " dst " + v2,
			},
		},
		{
			name: "unicast mac with two destinations",
			actual: State{
				FDB:   []FDBEntry{fdb(m1, v2), fdb(m1, v3), fdb(z, v2)},
				Neigh: []NeighEntry{nb("10.200.2.5", m1)},
			},
			remote: []Entry{ent("10.200.2.5", m1, v2)},
			want: []string{
				"delete fdb " + m1 + " dst " + v2,
				"delete fdb " + m1 + " dst " + v3,
				"replace fdb " + m1 + " dst " + v2,
			},
		},
		{
			name:   "conflicting input: the later entry wins",
			remote: []Entry{ent("10.200.2.5", m1, v2), ent("10.200.2.5", m2, v3), ent("10.200.2.9", m2, v3)},
			want: []string{
				"replace fdb " + m1 + " dst " + v2,
				"replace fdb " + m2 + " dst " + v3,
				"append fdb " + z + " dst " + v2,
				"append fdb " + z + " dst " + v3,
				"replace neigh 10.200.2.5 lladdr " + m2,
				"replace neigh 10.200.2.9 lladdr " + m2,
			},
		},
		{
			name:   "ipv6 underlay and overlay",
			remote: []Entry{ent("fd00:200::5", m1, "fd00:198:18::2")},
			want: []string{
				"replace fdb " + m1 + " dst fd00:198:18::2",
				"append fdb " + z + " dst fd00:198:18::2",
				"replace neigh fd00:200::5 lladdr " + m1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := Plan(tt.actual, tt.remote)
			got := strings.Split(strings.TrimSpace(FormatOps(ops)), "\n")
			if len(ops) == 0 {
				got = nil
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// Applying the plan reaches the desired state, and planning again is empty.
			after := simulate(tt.actual, ops)
			want, _ := Desired(tt.remote)
			if !equalState(after, want) {
				t.Fatalf("after applying: %+v\nwant %+v", after, want)
			}
			if again := Plan(after, tt.remote); len(again) != 0 {
				t.Fatalf("second Plan not empty:\n%s", FormatOps(again))
			}
		})
	}
}

// simulate applies ops to s with the kernel's semantics: replace rewrites
// the (first) destination of a unicast MAC, append adds a destination,
// delete removes the named destination.
func simulate(s State, ops []Op) State {
	out := State{FDB: slices.Clone(s.FDB), Neigh: slices.Clone(s.Neigh)}
	for _, o := range ops {
		switch {
		case o.Table == TableFDB && o.Action == ActionDelete:
			out.FDB = slices.DeleteFunc(out.FDB, func(f FDBEntry) bool {
				return bytes.Equal(f.MAC, o.MAC) && f.VTEP == o.VTEP && f.VNI == o.VNI
			})
		case o.Table == TableFDB && o.Flood():
			if !slices.ContainsFunc(out.FDB, func(f FDBEntry) bool { return f.Flood() && f.VTEP == o.VTEP && f.VNI == 0 }) {
				out.FDB = append(out.FDB, FDBEntry{MAC: o.MAC, VTEP: o.VTEP})
			}
		case o.Table == TableFDB:
			i := slices.IndexFunc(out.FDB, func(f FDBEntry) bool { return bytes.Equal(f.MAC, o.MAC) })
			if i < 0 {
				out.FDB = append(out.FDB, FDBEntry{MAC: o.MAC, VTEP: o.VTEP})
			} else {
				out.FDB[i] = FDBEntry{MAC: o.MAC, VTEP: o.VTEP}
			}
		case o.Action == ActionDelete:
			out.Neigh = slices.DeleteFunc(out.Neigh, func(n NeighEntry) bool { return n.IP == o.IP })
		default:
			i := slices.IndexFunc(out.Neigh, func(n NeighEntry) bool { return n.IP == o.IP })
			if i < 0 {
				out.Neigh = append(out.Neigh, NeighEntry{IP: o.IP, MAC: o.MAC})
			} else {
				out.Neigh[i].MAC = o.MAC
			}
		}
	}
	sortState(&out)
	return out
}

func equalState(a, b State) bool {
	sortState(&a)
	sortState(&b)
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestPlanConverges checks, on random actual and wanted states, that one
// plan reaches the desired state and that a second plan is empty.
func TestPlanConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vteps := []string{"198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"}
	randMAC := func() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, byte(1 + r.IntN(12))} }
	randIP := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 200, 0, byte(1 + r.IntN(12))}) }
	randVTEP := func() netip.Addr { return netip.MustParseAddr(vteps[r.IntN(len(vteps))]) }
	for i := range 2000 {
		var actual State
		for range r.IntN(10) {
			switch r.IntN(3) {
			case 0:
				actual.FDB = append(actual.FDB, FDBEntry{MAC: randMAC(), VTEP: randVTEP()})
			case 1:
				f := FDBEntry{MAC: cloneMAC(zeroMAC), VTEP: randVTEP()}
				if r.IntN(5) == 0 {
					f.VNI = 9
				}
				actual.FDB = append(actual.FDB, f)
			default:
				actual.Neigh = append(actual.Neigh, NeighEntry{IP: randIP(), MAC: randMAC()})
			}
		}
		// The kernel never holds the same destination twice, nor two
		// neighbour entries for one IP.
		actual.FDB = slices.CompactFunc(sorted(actual.FDB), func(a, b FDBEntry) bool {
			return bytes.Equal(a.MAC, b.MAC) && a.VTEP == b.VTEP
		})
		seen := map[netip.Addr]bool{}
		actual.Neigh = slices.DeleteFunc(actual.Neigh, func(n NeighEntry) bool {
			d := seen[n.IP]
			seen[n.IP] = true
			return d
		})
		var remote []Entry
		for range r.IntN(10) {
			remote = append(remote, Entry{IP: randIP(), MAC: randMAC(), VTEP: randVTEP()})
		}
		ops := Plan(actual, remote)
		after := simulate(actual, ops)
		want, _ := Desired(remote)
		if !equalState(after, want) {
			t.Fatalf("case %d: actual %v remote %v\nplan:\n%s\nafter %v\nwant %v", i, actual, remote, FormatOps(ops), after, want)
		}
		if again := Plan(after, remote); len(again) != 0 {
			t.Fatalf("case %d: second plan not empty:\n%s", i, FormatOps(again))
		}
	}
}

func sorted(f []FDBEntry) []FDBEntry {
	s := State{FDB: f}
	sortState(&s)
	return s.FDB
}

func TestDesiredConflicts(t *testing.T) {
	tests := []struct {
		name   string
		remote []Entry
		want   int
	}{
		{"none", []Entry{ent("10.0.0.1", m1, v2), ent("10.0.0.2", m2, v3)}, 0},
		{"exact repeat", []Entry{ent("10.0.0.1", m1, v2), ent("10.0.0.1", m1, v2)}, 0},
		{"ip reused", []Entry{ent("10.0.0.1", m1, v2), ent("10.0.0.1", m2, v3)}, 1},
		{"mac on two hosts", []Entry{ent("10.0.0.1", m1, v2), ent("10.0.0.2", m1, v3)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := Desired(tt.remote); got != tt.want {
				t.Fatalf("conflicts = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEntryValidate(t *testing.T) {
	local := netip.MustParseAddr("198.18.0.1")
	tests := []struct {
		name  string
		e     Entry
		local netip.Addr
		err   string
	}{
		{"ok", ent("10.0.0.1", m1, v2), local, ""},
		{"no ip", Entry{MAC: mustMAC(m1), VTEP: netip.MustParseAddr(v2)}, local, "not a unicast address"},
		{"multicast ip", ent("224.0.0.1", m1, v2), local, "not a unicast address"},
		{"no mac", Entry{IP: netip.MustParseAddr("10.0.0.1"), VTEP: netip.MustParseAddr(v2)}, local, "not an Ethernet address"},
		{"zero mac", ent("10.0.0.1", z, v2), local, "not a unicast address"},
		{"multicast mac", ent("10.0.0.1", "01:00:5e:00:00:01", v2), local, "not a unicast address"},
		{"own vtep", ent("10.0.0.1", m1, "198.18.0.1"), local, "own address"},
		{"family mismatch", ent("10.0.0.1", m1, "fd00::2"), local, "family"},
		{"no local given", ent("10.0.0.1", m1, "fd00::2"), netip.Addr{}, ""},
		{"zero vtep", ent("10.0.0.1", m1, "0.0.0.0"), local, "not a unicast address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate(tt.local)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.err)
			}
		})
	}
}
