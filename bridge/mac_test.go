package bridge

import (
	"bytes"
	"encoding/hex"
	"net"
	"slices"
	"testing"
)

func TestAddrMAC(t *testing.T) {
	for _, c := range []struct {
		addr string
		want string // "" for nil
	}{
		{"172.17.0.2", "02:42:ac:11:00:02"}, // what Docker gives the first container on docker0
		{"10.1.0.3", "02:42:0a:01:00:03"},
		{"255.255.255.255", "02:42:ff:ff:ff:ff"},
		{"fd00::2", ""},
		{"::ffff:10.1.0.3", ""}, // a mapped address is an IPv6 one here
	} {
		got := AddrMAC(addr(c.addr))
		if (got == nil) != (c.want == "") || (got != nil && got.String() != c.want) {
			t.Errorf("AddrMAC(%s) = %v, want %q", c.addr, got, c.want)
		}
		if got != nil && (got[0]&1 != 0 || got[0]&2 == 0) {
			t.Errorf("AddrMAC(%s) = %s: not locally administered unicast", c.addr, got)
		}
	}
}

func TestARPAnnouncement(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0x0a, 0x01, 0x00, 0x03}
	got := arpAnnouncement(mac, addr("10.1.0.3"))
	want, _ := hex.DecodeString("0001" + "0800" + "06" + "04" + "0001" + // Ethernet, IPv4, request
		"02420a010003" + "0a010003" + // sender: its MAC and address
		"000000000000" + "0a010003") // target: no MAC, the same address
	if !bytes.Equal(got, want) {
		t.Fatalf("announcement\n%x\nwant\n%x", got, want)
	}
}

// TestPlanDerivedMACs: new interfaces get the MAC of their IPv4 address
// unless another container that stays holds it; recorded MACs win; IPv6
// and the bridges keep random ones; interfaces that get an address are
// announced, and nothing is announced on a pass that changes nothing.
func TestPlanDerivedMACs(t *testing.T) {
	g := newRig(t)
	g.r.Planner.NewMAC = func() net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99} }
	want := testState()
	want.Containers[1].Interfaces[0].MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb} // recorded
	if err := g.pass(t, want).Err(); err != nil {
		t.Fatal(err)
	}
	for key, mac := range map[string]string{
		MACKey("ns-a", "web"): "02:42:0a:01:00:02",
		MACKey("ns-a", "db"):  "02:42:0a:02:00:02",
		MACKey("ns-b", "web"): "02:00:00:00:00:bb",
	} {
		if g.rec.MACs[key] != mac {
			t.Errorf("MAC of %s = %q, want %q", key, g.rec.MACs[key], mac)
		}
	}
	wantAnn := []string{"ns-a:eth0 10.1.0.2", "ns-a:eth1 10.2.0.2", "ns-b:eth0 10.1.0.3"}
	if !slices.Equal(g.k.announced, wantAnn) {
		t.Fatalf("announced %v, want %v", g.k.announced, wantAnn)
	}

	// Adoption: nothing written, nothing announced.
	g.k.announced = nil
	w := g.k.Writes()
	if res := g.pass(t, want); res.Changes != 0 || g.k.Writes() != w || len(g.k.announced) != 0 {
		t.Fatalf("second pass: %d changes, %d writes, announced %v", res.Changes, g.k.Writes()-w, g.k.announced)
	}

	// a's address moves in place (it keeps the MAC of 10.1.0.2) and a new
	// container d takes 10.1.0.2: d may not get a's MAC. a announces its
	// new address.
	want.Containers[0].Interfaces[0].Addr = pfx("10.1.0.4/24")
	want.Containers[0].Interfaces[0].MAC = mustParseMAC(t, g.rec.MACs[MACKey("ns-a", "web")])
	want.Containers = append(want.Containers, Container{Name: "d", Netns: "ns-d", Interfaces: []Interface{
		{Network: "web", IfName: "eth0", Addr: pfx("10.1.0.2/24"), Gateway: addr("10.1.0.1")},
		{Network: "db", IfName: "eth1", Addr: pfx("fd00::5/64")},
	}})
	if err := g.pass(t, want).Err(); err != nil {
		t.Fatal(err)
	}
	if got := g.rec.MACs[MACKey("ns-d", "web")]; got != "02:00:00:00:00:99" {
		t.Errorf("d took MAC %s, want a random one (02:42:0a:01:00:02 is a's)", got)
	}
	if got := g.rec.MACs[MACKey("ns-d", "db")]; got != "02:00:00:00:00:99" {
		t.Errorf("IPv6-only interface got MAC %s, want a random one", got)
	}
	// IPv6 addresses are announced too (unsolicited neighbour advertisement).
	wantAnn = []string{"ns-a:eth0 10.1.0.4", "ns-d:eth0 10.1.0.2", "ns-d:eth1 fd00::5"}
	if !slices.Equal(g.k.announced, wantAnn) {
		t.Fatalf("announced %v, want %v", g.k.announced, wantAnn)
	}
}

func mustParseMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
