package bridge

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// AddrMAC derives the MAC of a container interface from its IPv4 address
// the way Docker does: 02:42 followed by the address's four bytes. A
// container that takes over an address then also takes over its MAC, so
// the ARP caches of its peers (other containers, the host, other hosts
// behind a macvlan parent) stay right when a container is re-created, even
// across agent restarts. It returns nil for anything but an IPv4 address:
// an IPv6-only interface keeps a random MAC (and its peers rely on
// neighbour discovery).
func AddrMAC(a netip.Addr) net.HardwareAddr {
	if !a.Is4() {
		return nil
	}
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// ARP constants of an Ethernet/IPv4 announcement.
const (
	arpHardwareEthernet = 1
	arpRequest          = 1
	ethTypeIPv4         = 0x0800
	arpLen              = 28
)

// arpAnnouncement is the payload of a gratuitous ARP request (RFC 5227
// "ARP Announcement") for ip from mac: sender and target address are both
// ip, target MAC zero. Linux takes it as gratuitous and replaces the MAC
// of an existing neighbour entry for ip at once, whatever the entry's state
// and locktime; hosts without an entry create none (arp_accept is off by
// default), which is what we want.
func arpAnnouncement(mac net.HardwareAddr, ip netip.Addr) []byte {
	p := make([]byte, arpLen)
	binary.BigEndian.PutUint16(p[0:], arpHardwareEthernet)
	binary.BigEndian.PutUint16(p[2:], ethTypeIPv4)
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], arpRequest)
	a := ip.As4()
	copy(p[8:14], mac)
	copy(p[14:18], a[:])
	// p[18:24] target MAC stays zero.
	copy(p[24:28], a[:])
	return p
}
