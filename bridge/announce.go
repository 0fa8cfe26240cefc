package bridge

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// announceAgain are the pauses between the first announcement and the
// repeats. The first one can be lost on kernels before 6.7: a new veth's
// bridge port starts forwarding only when the kernel's link watcher has
// seen its carrier, a few milliseconds after the link is set up (SetUp
// hurries that along on newer ones, see syncCarrier); RFC 5227 also
// repeats.
var announceAgain = []time.Duration{20 * time.Millisecond, 200 * time.Millisecond, time.Second}

// htons converts a 16-bit value to network byte order, as the packet
// socket API wants its protocol numbers.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Announce sends a gratuitous ARP (IPv4) or an unsolicited neighbour
// advertisement (IPv6) for ip from link name in ns, so neighbours that
// cached another MAC for ip switch to the link's MAC at once. The first
// announcement goes out before Announce returns, the repeats in the
// background (Close stops them). It does not change kernel state and so
// does not count toward Writes.
func (k *NetlinkKernel) Announce(ns, name string, ip netip.Addr) error {
	ip = ip.Unmap()
	if ip.Is6() {
		return k.announce6(ns, name, ip)
	}
	h, done, err := k.handle(ns)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(name)
	done()
	if err != nil {
		return fmt.Errorf("find link %q: %w", name, err)
	}
	mac := l.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("link %q has no Ethernet address", name)
	}
	// A packet socket belongs to the namespace of the thread that opens it;
	// protocol 0 receives nothing, the protocol to send goes in the address.
	fd := -1
	open := func() error {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}
	if ns == "" {
		err = k.inHost(open)
	} else {
		err = netnsutil.Do(ns, open)
	}
	if err != nil {
		return fmt.Errorf("open packet socket: %w", err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.Attrs().Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	pkt := arpAnnouncement(mac, ip)
	send := func() error { return unix.Sendto(fd, pkt, 0, to) }
	if err := send(); err != nil {
		unix.Close(fd)
		return fmt.Errorf("send gratuitous arp: %w", err)
	}
	k.repeat(fd, send)
	return nil
}
