package overlay

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// AddrNetlink is Netlink with address deletion (a *Handle has it).
type AddrNetlink interface {
	Netlink
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// NoLinkLocal keeps an overlay network's gateway bridge free of an IPv6
// link-local address: every host's bridge has the same MAC (GatewayMAC),
// so they would all have the same fe80:: address, and its neighbour
// discovery and MLD frames, flooded over the VXLAN port, would arrive at
// the other bridges with their own MAC as source. It switches address
// generation off and deletes what was generated; it reports whether it
// changed anything. A missing bridge is not an error (the bridge step
// makes it).
func NoLinkLocal(h AddrNetlink, name string) (bool, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("find bridge %q: %w", name, err)
	}
	addrs, err := h.AddrList(l, unix.AF_INET6)
	if err != nil {
		return false, fmt.Errorf("list addresses of %q: %w", name, err)
	}
	var ll []netlink.Addr
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			ll = append(ll, a)
		}
	}
	if len(ll) == 0 {
		return false, nil
	}
	if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return false, fmt.Errorf("turn off ipv6 address generation on %q: %w", name, err)
	}
	for _, a := range ll {
		if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return true, fmt.Errorf("delete %s from %q: %w", a.IPNet, name, err)
		}
	}
	logOf(h).Info("removed ipv6 link-local address from overlay bridge", "bridge", name, "reason", "same gateway MAC on every host")
	return true, nil
}

// InvalidateNeighIn runs InvalidateNeigh inside the named namespace (a
// container's, under /run/netns) on its interface ifname.
func InvalidateNeighIn(ns, ifname string, ips []netip.Addr) error {
	h, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("open netlink handle in %q: %w", ns, err)
	}
	defer nh.Close()
	return InvalidateNeigh(nh, ifname, ips)
}
