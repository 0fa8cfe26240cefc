package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// ICMPv6 neighbour advertisement (RFC 4861 4.4) fields.
const (
	icmpv6NeighborAdvert = 136
	naFlagOverride       = 0x20 // first byte of the flags word: O
	ndOptTargetLLAddr    = 2
)

// unsolicitedNA is an ICMPv6 neighbour advertisement for target from mac
// with the override flag and no solicited flag: a node that has a
// neighbour entry for target replaces its link-layer address at once
// (RFC 4861 7.2.5; Linux marks the entry STALE with the new MAC and
// confirms it on next use). The checksum stays zero: the kernel fills it
// in on a raw ICMPv6 socket.
func unsolicitedNA(mac net.HardwareAddr, target netip.Addr) []byte {
	b := make([]byte, 32)
	b[0] = icmpv6NeighborAdvert
	b[4] = naFlagOverride
	t := target.As16()
	copy(b[8:24], t[:])
	b[24] = ndOptTargetLLAddr
	b[25] = 1 // option length in units of 8 bytes
	copy(b[26:32], mac)
	return b
}

// allNodes is ff02::1, where unsolicited advertisements go.
var allNodes = [16]byte{0xff, 0x02, 15: 1}

// announce6 sends unsolicited neighbour advertisements for ip from link
// name in ns, the IPv6 counterpart of the gratuitous ARP: from a raw
// ICMPv6 socket opened in ns, bound to ip (usable at once: vxmesh adds
// IPv6 addresses with IFA_F_NODAD) and the link, hop limit 255 as
// receivers demand.
func (k *NetlinkKernel) announce6(ns, name string, ip netip.Addr) error {
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
	index := l.Attrs().Index
	fd := -1
	open := func() error {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		for _, o := range []struct{ level, opt, val int }{
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, index},
			{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0},
		} {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
				return fmt.Errorf("setsockopt %d: %w", o.opt, err)
			}
		}
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name); err != nil {
			return fmt.Errorf("bind to device: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrInet6{Addr: ip.As16(), ZoneId: uint32(index)})
	}
	if ns == "" {
		err = k.inHost(open)
	} else {
		err = netnsutil.Do(ns, open)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("open icmpv6 socket for %s: %w", ip, err)
	}
	to := &unix.SockaddrInet6{Addr: allNodes, ZoneId: uint32(index)}
	pkt := unsolicitedNA(mac, ip)
	send := func() error { return unix.Sendto(fd, pkt, 0, to) }
	if err := send(); err != nil {
		unix.Close(fd)
		return fmt.Errorf("send neighbour advertisement: %w", err)
	}
	k.repeat(fd, send)
	return nil
}

// repeat sends again after each of announceAgain in the background, then
// closes fd; Close stops it.
func (k *NetlinkKernel) repeat(fd int, send func() error) {
	k.bg.Add(1)
	go func() {
		defer k.bg.Done()
		defer unix.Close(fd)
		for _, d := range announceAgain {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-k.stop:
				t.Stop()
				return
			}
			_ = send() // best effort: the link may be gone by now
		}
	}()
}
