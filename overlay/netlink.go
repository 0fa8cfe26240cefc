package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// Netlink is what this package needs from a netlink handle bound to one
// network namespace. *netlink.Handle implements it, and so does *Handle,
// which adds pipelined writes; unit tests use a fake.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetMaster(link, master netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkSetAlias(link netlink.Link, alias string) error
	LinkSetIP6AddrGenMode(link netlink.Link, mode int) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error)
	NeighSet(neigh *netlink.Neigh) error
	NeighAppend(neigh *netlink.Neigh) error
	NeighDel(neigh *netlink.Neigh) error
}

var _ Netlink = (*netlink.Handle)(nil)

// The dumps below go through nlsafe.Dump: a dump the kernel marked
// interrupted (NLM_F_DUMP_INTR: the table changed while it was being read)
// may miss entries, so it is repeated.

// dumpNeigh lists one family's neighbour (or FDB) entries.
func dumpNeigh(h Netlink, family int) ([]netlink.Neigh, error) {
	return nlsafe.Dump(func() ([]netlink.Neigh, error) {
		return h.NeighListExecute(netlink.Ndmsg{Family: uint8(family)})
	})
}

// dumpLinks lists links.
func dumpLinks(h Netlink) ([]netlink.Link, error) {
	return nlsafe.Dump(h.LinkList)
}

// dumpAddrs lists a link's addresses.
func dumpAddrs(h Netlink, link netlink.Link, family int) ([]netlink.Addr, error) {
	return nlsafe.Dump(func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// vxlanLink looks name up and checks that it is a VXLAN device.
func vxlanLink(h Netlink, name string) (*netlink.Vxlan, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find vxlan device %q: %w", name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("find vxlan device %q: it is a %s device", name, l.Type())
	}
	return vx, nil
}

// ReadState reads the entries vxmesh manages on the VXLAN device link: its
// permanent NTF_SELF FDB entries and its permanent neighbour entries. The
// bridge's entries for the port (no NTF_SELF), learned or otherwise
// non-permanent entries are left out: Sync never touches them.
func ReadState(h Netlink, link string) (State, error) {
	vx, err := vxlanLink(h, link)
	if err != nil {
		return State{}, err
	}
	s, err := readState(h, vx)
	sortState(&s)
	return s, err
}

// neighDumper is implemented by *Handle: dumps of one device's entries,
// filtered by the kernel.
type neighDumper interface {
	dumpNeighs(family, ifindex int) ([]netlink.Neigh, error)
}

// dumpLinkNeigh lists one family's entries of the link with index idx
// (others may be included; callers filter).
func dumpLinkNeigh(h Netlink, family, idx int) ([]netlink.Neigh, error) {
	if d, ok := h.(neighDumper); ok {
		return d.dumpNeighs(family, idx)
	}
	return dumpNeigh(h, family)
}

func readState(h Netlink, vx *netlink.Vxlan) (State, error) {
	var s State
	idx := vx.Attrs().Index
	fdb, err := dumpLinkNeigh(h, unix.AF_BRIDGE, idx)
	if err != nil {
		return s, fmt.Errorf("list fdb of %q: %w", vx.Name, err)
	}
	// The device's default destination (its "remote"/"group", which vxmesh
	// never sets) is an all-zeros entry the kernel made: not ours.
	group, _ := netip.AddrFromSlice(vx.Group)
	group = group.Unmap()
	for _, n := range fdb {
		if n.LinkIndex != idx || n.Flags&netlink.NTF_SELF == 0 || n.Flags&netlink.NTF_MASTER != 0 ||
			n.State&netlink.NUD_PERMANENT == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		vtep, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		vtep = vtep.Unmap()
		if isZeroMAC(n.HardwareAddr) && group.IsValid() && !group.IsUnspecified() && vtep == group {
			continue
		}
		s.FDB = append(s.FDB, FDBEntry{MAC: cloneMAC(n.HardwareAddr), VTEP: vtep, VNI: uint32(n.VNI)})
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		list, err := dumpLinkNeigh(h, fam, idx)
		if err != nil {
			return s, fmt.Errorf("list neighbours of %q: %w", vx.Name, err)
		}
		for _, n := range list {
			if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 || n.Flags&netlink.NTF_PROXY != 0 || len(n.HardwareAddr) != 6 {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			s.Neigh = append(s.Neigh, NeighEntry{IP: ip.Unmap(), MAC: cloneMAC(n.HardwareAddr)})
		}
	}
	return s, nil
}

func cloneMAC(m net.HardwareAddr) net.HardwareAddr {
	return append(net.HardwareAddr(nil), m...)
}

// neighFor translates an op into the netlink.Neigh that performs it on the
// device with index link.
func neighFor(link int, o Op) *netlink.Neigh {
	switch o.Table {
	case TableFDB:
		return &netlink.Neigh{
			LinkIndex:    link,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			HardwareAddr: o.MAC,
			IP:           net.IP(o.VTEP.AsSlice()),
			VNI:          int(o.VNI),
		}
	default:
		fam := unix.AF_INET
		if o.IP.Is6() {
			fam = unix.AF_INET6
		}
		n := &netlink.Neigh{
			LinkIndex: link,
			Family:    fam,
			State:     netlink.NUD_PERMANENT,
			IP:        net.IP(o.IP.AsSlice()),
		}
		if o.Action != ActionDelete {
			n.HardwareAddr = o.MAC
		}
		return n
	}
}
