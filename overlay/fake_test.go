package overlay

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/fakekernel"
)

// newFake returns the host namespace of a fresh fake kernel: overlay's
// Netlink with the kernel semantics Sync and EnsureDevice rely on.
func newFake() *fakekernel.NS { return fakekernel.New().NS("") }

// vxlanFake returns a fake with bridge "vxb-t" and VXLAN device "vx-42"
// (local 198.18.0.1) enslaved to it; it returns the device's index.
func vxlanFake() (*fakekernel.NS, int) {
	f := newFake()
	br := f.AddLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-t", MTU: 1500}})
	vx := f.AddLink(&netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: "vx-42", MTU: 1450, MasterIndex: br.Attrs().Index, Flags: net.FlagUp},
		VxlanId:   42, SrcAddr: net.ParseIP("198.18.0.1").To4(), Port: 4789, Proxy: true,
	})
	return f, vx.Attrs().Index
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ent(ip, mac, vtep string) Entry {
	return Entry{IP: netip.MustParseAddr(ip), MAC: mustMAC(mac), VTEP: netip.MustParseAddr(vtep)}
}
