package fakekernel

import (
	"bytes"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// The methods below are the netlink calls overlay makes (its Netlink
// interface), on this namespace.

// CloneLink copies a link so callers cannot change the stored one.
func CloneLink(l netlink.Link) netlink.Link {
	switch v := l.(type) {
	case *netlink.Vxlan:
		c := *v
		return &c
	case *netlink.Bridge:
		c := *v
		return &c
	case *netlink.Dummy:
		c := *v
		return &c
	case *netlink.Device:
		c := *v
		return &c
	case *netlink.Veth:
		c := *v
		return &c
	case *netlink.Macvlan:
		c := *v
		return &c
	case *netlink.IPVlan:
		c := *v
		return &c
	case *netlink.GenericLink:
		c := *v
		return &c
	}
	panic(fmt.Sprintf("fakekernel: clone %T", l))
}

// LinkByName implements overlay's Netlink.
func (n *NS) LinkByName(name string) (netlink.Link, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	n.Calls["LinkByName"]++
	l := n.Link(name)
	if l == nil {
		return nil, netlink.LinkNotFoundError{}
	}
	return CloneLink(l), nil
}

// LinkList implements overlay's Netlink.
func (n *NS) LinkList() ([]netlink.Link, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	var out []netlink.Link
	for _, l := range n.AllLinks() {
		out = append(out, CloneLink(l))
	}
	return out, nil
}

// LinkAdd implements overlay's Netlink.
func (n *NS) LinkAdd(l netlink.Link) error {
	n.k.mu.Lock()
	if n.Link(l.Attrs().Name) != nil {
		n.k.mu.Unlock()
		return unix.EEXIST
	}
	n.Log = append(n.Log, "link add "+l.Attrs().Name)
	n.k.mu.Unlock()
	c := CloneLink(l)
	if vx, ok := c.(*netlink.Vxlan); ok && vx.Port == 0 {
		vx.Port = 8472 // what the kernel does when no port is sent
	}
	c.Attrs().Index = 0
	n.AddLink(c)
	return nil
}

// LinkDel implements overlay's Netlink.
func (n *NS) LinkDel(l netlink.Link) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if n.Link(l.Attrs().Name) == nil {
		return netlink.LinkNotFoundError{}
	}
	n.Log = append(n.Log, "link del "+l.Attrs().Name)
	for name, x := range n.k.ns {
		if x == n {
			n.k.DelLink(name, l.Attrs().Name)
		}
	}
	return nil
}

func (n *NS) mod(l netlink.Link, what string, fn func(a *netlink.LinkAttrs)) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	have := n.Link(l.Attrs().Name)
	if have == nil {
		return netlink.LinkNotFoundError{}
	}
	n.Log = append(n.Log, what+" "+l.Attrs().Name)
	fn(have.Attrs())
	return nil
}

// LinkSetMTU implements overlay's Netlink.
func (n *NS) LinkSetMTU(l netlink.Link, mtu int) error {
	return n.mod(l, "mtu", func(a *netlink.LinkAttrs) { a.MTU = mtu })
}

// LinkSetMaster implements overlay's Netlink.
func (n *NS) LinkSetMaster(l, m netlink.Link) error {
	return n.mod(l, "master", func(a *netlink.LinkAttrs) { a.MasterIndex = m.Attrs().Index })
}

// LinkSetUp implements overlay's Netlink.
func (n *NS) LinkSetUp(l netlink.Link) error {
	return n.mod(l, "up", func(a *netlink.LinkAttrs) { a.Flags |= net.FlagUp })
}

// LinkSetAlias implements overlay's Netlink.
func (n *NS) LinkSetAlias(l netlink.Link, alias string) error {
	return n.mod(l, "alias", func(a *netlink.LinkAttrs) { a.Alias = alias })
}

// LinkSetIP6AddrGenMode implements overlay's Netlink: the fake keeps no
// address generation mode, so it only checks the link exists.
func (n *NS) LinkSetIP6AddrGenMode(l netlink.Link, mode int) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if n.Link(l.Attrs().Name) == nil {
		return netlink.LinkNotFoundError{}
	}
	return nil
}

// AddrList implements overlay's Netlink.
func (n *NS) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	var out []netlink.Addr
	for _, a := range n.Addrs {
		if l != nil && a.LinkIndex != l.Attrs().Index {
			continue
		}
		if family == unix.AF_INET && a.IP.To4() == nil || family == unix.AF_INET6 && a.IP.To4() != nil {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// NeighListExecute implements overlay's Netlink.
func (n *NS) NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	n.Calls["dump"]++
	var src []netlink.Neigh
	if msg.Family == unix.AF_BRIDGE {
		src = n.FDB
	} else {
		for _, e := range n.Neighs {
			if e.Family == int(msg.Family) {
				src = append(src, e)
			}
		}
	}
	out := slices.Clone(src)
	if n.Interrupt > 0 {
		n.Interrupt--
		return out[:len(out)/2], nlsafe.ErrInterrupted
	}
	return out, nil
}

// MACIP names an entry "MAC/IP", as in Log and FailNeigh.
func MACIP(e *netlink.Neigh) string { return e.HardwareAddr.String() + "/" + e.IP.String() }

func (n *NS) checkLink(e *netlink.Neigh) error {
	if n.LinkByIndex(e.LinkIndex) == nil {
		return unix.ENODEV
	}
	return nil
}

func isZeroMAC(m net.HardwareAddr) bool {
	if len(m) == 0 {
		return false
	}
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// NeighSet implements overlay's Netlink (NLM_F_REPLACE).
func (n *NS) NeighSet(e *netlink.Neigh) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if err := n.checkLink(e); err != nil {
		return err
	}
	if e.Family == unix.AF_BRIDGE {
		return n.fdbReplace(e)
	}
	n.Log = append(n.Log, "neigh replace "+e.IP.String())
	for i, h := range n.Neighs {
		if h.LinkIndex == e.LinkIndex && h.IP.Equal(e.IP) {
			n.Neighs[i].HardwareAddr, n.Neighs[i].State = e.HardwareAddr, e.State
			return nil
		}
	}
	n.Neighs = append(n.Neighs, *e)
	return nil
}

func (n *NS) fdbReplace(e *netlink.Neigh) error {
	if errno, ok := n.FailNeigh[MACIP(e)]; ok {
		return unix.Errno(errno)
	}
	if isZeroMAC(e.HardwareAddr) || e.HardwareAddr[0]&1 != 0 {
		for _, h := range n.FDB {
			if h.LinkIndex == e.LinkIndex && bytes.Equal(h.HardwareAddr, e.HardwareAddr) {
				return unix.EOPNOTSUPP // "Cannot replace non-unicast FDB entries"
			}
		}
	}
	n.Log = append(n.Log, "fdb replace "+MACIP(e))
	for i, h := range n.FDB {
		if h.LinkIndex == e.LinkIndex && bytes.Equal(h.HardwareAddr, e.HardwareAddr) {
			n.FDB[i].IP, n.FDB[i].State, n.FDB[i].Flags, n.FDB[i].VNI = e.IP, e.State, e.Flags, 0
			return nil
		}
	}
	n.FDB = append(n.FDB, *e)
	return nil
}

// NeighAppend implements overlay's Netlink (NLM_F_APPEND, FDB only).
func (n *NS) NeighAppend(e *netlink.Neigh) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if err := n.checkLink(e); err != nil {
		return err
	}
	if e.Family != unix.AF_BRIDGE {
		return unix.EINVAL
	}
	n.Log = append(n.Log, "fdb append "+MACIP(e))
	for _, h := range n.FDB {
		if h.LinkIndex == e.LinkIndex && bytes.Equal(h.HardwareAddr, e.HardwareAddr) && h.IP.Equal(e.IP) {
			return nil
		}
	}
	n.FDB = append(n.FDB, *e)
	return nil
}

// NeighDel implements overlay's Netlink.
func (n *NS) NeighDel(e *netlink.Neigh) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if err := n.checkLink(e); err != nil {
		return err
	}
	if e.Family == unix.AF_BRIDGE {
		n.Log = append(n.Log, "fdb del "+MACIP(e))
		for i, h := range n.FDB {
			if h.LinkIndex == e.LinkIndex && bytes.Equal(h.HardwareAddr, e.HardwareAddr) && h.IP.Equal(e.IP) {
				n.FDB = slices.Delete(n.FDB, i, i+1)
				return nil
			}
		}
		return unix.ENOENT
	}
	n.Log = append(n.Log, "neigh del "+e.IP.String())
	for i, h := range n.Neighs {
		if h.LinkIndex == e.LinkIndex && h.IP.Equal(e.IP) {
			n.Neighs = slices.Delete(n.Neighs, i, i+1)
			return nil
		}
	}
	return unix.ENOENT
}
