package overlay

import (
	"net"
	"net/netip"
	"testing"
)

// TestDesiredDualStack: an endpoint with an IPv4 and an IPv6 address is two
// entries with one MAC and VTEP: one FDB entry, two neighbour entries, no
// conflict; an IPv6 endpoint over an IPv4 VTEP (and the reverse) is valid.
func TestDesiredDualStack(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 2}
	v4 := netip.MustParseAddr("198.18.0.2")
	v6 := netip.MustParseAddr("fd00:198:18::2")
	entries := []Entry{
		{IP: netip.MustParseAddr("10.200.0.2"), MAC: mac, VTEP: v4},
		{IP: netip.MustParseAddr("fd00:200::2"), MAC: mac, VTEP: v4},
	}
	for _, e := range entries {
		if err := e.Validate(netip.MustParseAddr("198.18.0.1")); err != nil {
			t.Errorf("IPv4 underlay: %v", err)
		}
		e.VTEP = v6
		if err := e.Validate(netip.MustParseAddr("fd00:198:18::1")); err != nil {
			t.Errorf("IPv6 underlay: %v", err)
		}
	}
	s, conflicts := Desired(entries)
	if conflicts != 0 || len(s.FDB) != 2 || len(s.Neigh) != 2 {
		t.Fatalf("desired %+v, %d conflicts; want 1 FDB + flood, 2 neighbours", s, conflicts)
	}
	if !s.Neigh[1].IP.Is6() || s.Neigh[1].MAC.String() != mac.String() {
		t.Errorf("IPv6 neighbour %+v", s.Neigh[1])
	}
}
