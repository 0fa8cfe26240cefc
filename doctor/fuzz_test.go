package doctor

import (
	"net/netip"
	"testing"
)

// FuzzIsEchoReply feeds the raw ICMP socket's reader any bytes.
func FuzzIsEchoReply(f *testing.F) {
	src := netip.MustParseAddr("198.18.0.2")
	p := vxlanEchoPacket(netip.MustParseAddr("198.18.0.1"), src, 42, nil, 64, 1, 2)
	f.Add(p[22:])
	f.Add([]byte{0x45})
	f.Add([]byte{0x4f, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		isEchoReply(b, src, 1, 2)
	})
}

// FuzzParseContainerAlias feeds link aliases (anyone may set one).
func FuzzParseContainerAlias(f *testing.F) {
	f.Add("vxmesh:ctr=web1,net=mesh")
	f.Add("vxmesh:ctr=,net=")
	f.Add("vxmesh:net=web")
	f.Fuzz(func(t *testing.T, a string) {
		ctr, network, ok := parseContainerAlias(a)
		if ok && (ctr == "" || network == "") {
			t.Fatalf("%q: ok with empty parts", a)
		}
	})
}
