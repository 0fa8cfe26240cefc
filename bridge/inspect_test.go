package bridge

import (
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// newLinkMsg builds an RTM_NEWLINK message for link index with the given
// IFLA_LINKINFO kind and info data attributes.
func newLinkMsg(index int32, kind string, data ...*nl.RtAttr) []byte {
	ifi := nl.NewIfInfomsg(unix.AF_UNSPEC)
	ifi.Index = index
	info := nl.NewRtAttr(unix.IFLA_LINKINFO|unix.NLA_F_NESTED, nil)
	info.AddRtAttr(unix.IFLA_INFO_KIND, nl.ZeroTerminated(kind))
	d := info.AddRtAttr(unix.IFLA_INFO_DATA|unix.NLA_F_NESTED, nil)
	for _, a := range data {
		d.AddChild(a)
	}
	return append(ifi.Serialize(), info.Serialize()...)
}

func TestParseBridgeAttrs(t *testing.T) {
	stp := nl.NewRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(1))
	id := nl.NewRtAttr(unix.IFLA_BR_BRIDGE_ID, []byte{0x80, 0x00, 0x06, 0xcd, 0x99, 0x36, 0xa3, 0xc5})
	got := parseBridgeAttrs([][]byte{
		newLinkMsg(3, "bridge", stp, id),
		newLinkMsg(4, "bridge"),
		newLinkMsg(5, "veth"),
		{1, 2, 3}, // too short: skipped
	})
	want := map[int]BridgeAttrs{3: {STP: true, ID: "8000.06cd9936a3c5"}, 4: {}}
	if len(got) != len(want) || got[3] != want[3] || got[4] != want[4] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// FuzzParseBridgeAttrs feeds arbitrary RTM_NEWLINK bytes: no panic, and an
// id, when found, has brctl's form.
func FuzzParseBridgeAttrs(f *testing.F) {
	f.Add(newLinkMsg(3, "bridge", nl.NewRtAttr(unix.IFLA_BR_BRIDGE_ID, []byte{0x80, 0, 1, 2, 3, 4, 5, 6})))
	f.Add(newLinkMsg(4, "bridge"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, at := range parseBridgeAttrs([][]byte{msg}) {
			if at.ID != "" && len(at.ID) != len("8000.06cd9936a3c5") {
				t.Fatalf("id %q", at.ID)
			}
		}
	})
}

func TestReadChains(t *testing.T) {
	f := newFakeIPT()
	f.Chains["nat/VXMESH-ZZZ"] = []string{"-j RETURN"}
	f.Chains["nat/"+ChainPostrouting] = []string{"-j " + ChainHairpin}
	f.Chains["nat/"+ChainDNAT] = []string{}
	f.Chains["filter/"+ChainForward] = []string{"-j ACCEPT"}
	f.Chains["nat/PREROUTING"] = []string{"-j OTHER"}
	f.Jumps[ipt.Jump{Table: "nat", From: "PREROUTING", Rule: "-j " + ChainDNAT}] = true
	got, errs := ReadChains(f)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Table+" "+c.Chain)
	}
	want := []string{"nat PREROUTING", "nat " + ChainDNAT, "nat " + ChainPostrouting, "nat VXMESH-ZZZ", "filter " + ChainForward}
	if !slices.Equal(names, want) {
		t.Fatalf("chains %q, want %q", names, want)
	}
	if !got[0].Builtin || !slices.Equal(got[0].Rules, []string{"-A PREROUTING -j " + ChainDNAT}) {
		t.Errorf("prerouting: %+v (only the jump into ours)", got[0])
	}
	if got[1].Rules == nil || len(got[1].Rules) != 0 || got[1].Builtin {
		t.Errorf("empty chain: %+v", got[1])
	}
}

func TestJumpTarget(t *testing.T) {
	for rule, want := range map[string]string{
		`-A POSTROUTING -m comment --comment "-j VXMESH-FAKE" -j VXMESH-POSTROUTING`: "VXMESH-POSTROUTING",
		`-A FORWARD -g VXMESH-FORWARD`: "VXMESH-FORWARD",
		`-A FORWARD -j ACCEPT`:         "",
	} {
		if got := JumpTarget(rule); got != want {
			t.Errorf("%s: %q, want %q", rule, got, want)
		}
	}
}

func TestRouteLine(t *testing.T) {
	cidr := func(s string) *net.IPNet { _, n, _ := net.ParseCIDR(s); return n }
	names := map[int]string{2: "eth0"}
	for _, c := range []struct {
		r    netlink.Route
		want string
	}{
		{netlink.Route{Gw: net.ParseIP("10.61.0.1"), LinkIndex: 2, Protocol: unix.RTPROT_BOOT}, "default via 10.61.0.1 dev eth0"},
		{netlink.Route{Dst: cidr("0.0.0.0/0"), Gw: net.ParseIP("10.61.0.1"), LinkIndex: 2}, "default via 10.61.0.1 dev eth0"},
		{netlink.Route{Dst: cidr("10.61.0.0/24"), LinkIndex: 2, Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK, Src: net.ParseIP("10.61.0.2")},
			"10.61.0.0/24 dev eth0 proto kernel scope link src 10.61.0.2"},
		{netlink.Route{Dst: cidr("fd00::/64"), LinkIndex: 2, Protocol: unix.RTPROT_KERNEL, Priority: 256}, "fd00::/64 dev eth0 proto kernel metric 256"},
		{netlink.Route{Dst: cidr("fe80::/64"), LinkIndex: 2}, ""},
		{netlink.Route{Dst: cidr("ff00::/8"), LinkIndex: 2}, ""},
		{netlink.Route{Dst: cidr("10.9.0.0/16"), Type: unix.RTN_BLACKHOLE}, "blackhole 10.9.0.0/16"},
		{netlink.Route{Dst: cidr("10.8.0.0/16"), Type: 99}, "type 99 10.8.0.0/16"},
	} {
		if got := routeLine(c.r, names); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}
