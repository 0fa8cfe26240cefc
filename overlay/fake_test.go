package overlay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNL is an in-memory Netlink with the kernel semantics Sync and
// EnsureDevice rely on: NLM_F_REPLACE is refused for non-unicast FDB
// entries, appends add a destination to all-zeros entries, deletes of
// missing entries fail with ENOENT, and dumps can be made to report
// interruption.
type fakeNL struct {
	mu     sync.Mutex
	links  map[string]netlink.Link
	next   int
	addrs  []netlink.Addr
	fdb    []netlink.Neigh // AF_BRIDGE
	neighs []netlink.Neigh // AF_INET, AF_INET6

	interrupt int            // dumps still to report ErrDumpInterrupted
	failSet   map[string]int // op key -> errno for NeighSet/Append
	writes    []string       // log of writes
	calls     map[string]int
}

func newFake() *fakeNL {
	return &fakeNL{links: map[string]netlink.Link{}, next: 1, failSet: map[string]int{}, calls: map[string]int{}}
}

func (f *fakeNL) addLink(l netlink.Link) netlink.Link {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	l.Attrs().Index = f.next
	f.links[l.Attrs().Name] = l
	return l
}

func (f *fakeNL) byIndex(i int) netlink.Link {
	for _, l := range f.links {
		if l.Attrs().Index == i {
			return l
		}
	}
	return nil
}

func cloneLink(l netlink.Link) netlink.Link {
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
	}
	panic(fmt.Sprintf("fake: clone %T", l))
}

func (f *fakeNL) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["LinkByName"]++
	l, ok := f.links[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	return cloneLink(l), nil
}

func (f *fakeNL) LinkList() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netlink.Link
	for _, l := range f.links {
		out = append(out, cloneLink(l))
	}
	slices.SortFunc(out, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
	return out, nil
}

func (f *fakeNL) LinkAdd(l netlink.Link) error {
	f.mu.Lock()
	if _, ok := f.links[l.Attrs().Name]; ok {
		f.mu.Unlock()
		return unix.EEXIST
	}
	f.writes = append(f.writes, "link add "+l.Attrs().Name)
	f.mu.Unlock()
	c := cloneLink(l)
	if vx, ok := c.(*netlink.Vxlan); ok && vx.Port == 0 {
		vx.Port = 8472 // what the kernel does when no port is sent
	}
	f.addLink(c)
	return nil
}

func (f *fakeNL) LinkDel(l netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.links[l.Attrs().Name]
	if !ok {
		return netlink.LinkNotFoundError{}
	}
	f.writes = append(f.writes, "link del "+l.Attrs().Name)
	idx := have.Attrs().Index
	delete(f.links, l.Attrs().Name)
	f.fdb = slices.DeleteFunc(f.fdb, func(n netlink.Neigh) bool { return n.LinkIndex == idx })
	f.neighs = slices.DeleteFunc(f.neighs, func(n netlink.Neigh) bool { return n.LinkIndex == idx })
	return nil
}

func (f *fakeNL) mod(l netlink.Link, what string, fn func(a *netlink.LinkAttrs)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	have, ok := f.links[l.Attrs().Name]
	if !ok {
		return netlink.LinkNotFoundError{}
	}
	f.writes = append(f.writes, what+" "+l.Attrs().Name)
	fn(have.Attrs())
	return nil
}

func (f *fakeNL) LinkSetMTU(l netlink.Link, mtu int) error {
	return f.mod(l, "mtu", func(a *netlink.LinkAttrs) { a.MTU = mtu })
}

func (f *fakeNL) LinkSetMaster(l, m netlink.Link) error {
	return f.mod(l, "master", func(a *netlink.LinkAttrs) { a.MasterIndex = m.Attrs().Index })
}

func (f *fakeNL) LinkSetUp(l netlink.Link) error {
	return f.mod(l, "up", func(a *netlink.LinkAttrs) { a.Flags |= net.FlagUp })
}

func (f *fakeNL) LinkSetAlias(l netlink.Link, alias string) error {
	return f.mod(l, "alias", func(a *netlink.LinkAttrs) { a.Alias = alias })
}

func (f *fakeNL) LinkSetIP6AddrGenMode(l netlink.Link, mode int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[l.Attrs().Name]; !ok {
		return netlink.LinkNotFoundError{}
	}
	return nil
}

func (f *fakeNL) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netlink.Addr
	for _, a := range f.addrs {
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

func (f *fakeNL) NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["dump"]++
	var src []netlink.Neigh
	if msg.Family == unix.AF_BRIDGE {
		src = f.fdb
	} else {
		for _, n := range f.neighs {
			if n.Family == int(msg.Family) {
				src = append(src, n)
			}
		}
	}
	out := slices.Clone(src)
	if f.interrupt > 0 {
		f.interrupt--
		return out[:len(out)/2], netlink.ErrDumpInterrupted
	}
	return out, nil
}

func macIP(n *netlink.Neigh) string { return n.HardwareAddr.String() + "/" + n.IP.String() }

func (f *fakeNL) checkLink(n *netlink.Neigh) error {
	if f.byIndex(n.LinkIndex) == nil {
		return unix.ENODEV
	}
	return nil
}

func (f *fakeNL) NeighSet(n *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(n); err != nil {
		return err
	}
	if n.Family == unix.AF_BRIDGE {
		if e, ok := f.failSet[macIP(n)]; ok {
			return unix.Errno(e)
		}
		if isZeroMAC(n.HardwareAddr) || n.HardwareAddr[0]&1 != 0 {
			for _, h := range f.fdb {
				if h.LinkIndex == n.LinkIndex && bytes.Equal(h.HardwareAddr, n.HardwareAddr) {
					return unix.EOPNOTSUPP // "Cannot replace non-unicast FDB entries"
				}
			}
		}
		f.writes = append(f.writes, "fdb replace "+macIP(n))
		for i, h := range f.fdb {
			if h.LinkIndex == n.LinkIndex && bytes.Equal(h.HardwareAddr, n.HardwareAddr) {
				f.fdb[i].IP, f.fdb[i].State, f.fdb[i].Flags, f.fdb[i].VNI = n.IP, n.State, n.Flags, 0
				return nil
			}
		}
		f.fdb = append(f.fdb, *n)
		return nil
	}
	f.writes = append(f.writes, "neigh replace "+n.IP.String())
	for i, h := range f.neighs {
		if h.LinkIndex == n.LinkIndex && h.IP.Equal(n.IP) {
			f.neighs[i].HardwareAddr, f.neighs[i].State = n.HardwareAddr, n.State
			return nil
		}
	}
	f.neighs = append(f.neighs, *n)
	return nil
}

func (f *fakeNL) NeighAppend(n *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(n); err != nil {
		return err
	}
	if n.Family != unix.AF_BRIDGE {
		return unix.EINVAL
	}
	f.writes = append(f.writes, "fdb append "+macIP(n))
	for _, h := range f.fdb {
		if h.LinkIndex == n.LinkIndex && bytes.Equal(h.HardwareAddr, n.HardwareAddr) && h.IP.Equal(n.IP) {
			return nil
		}
	}
	f.fdb = append(f.fdb, *n)
	return nil
}

func (f *fakeNL) NeighDel(n *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(n); err != nil {
		return err
	}
	if n.Family == unix.AF_BRIDGE {
		f.writes = append(f.writes, "fdb del "+macIP(n))
		for i, h := range f.fdb {
			if h.LinkIndex == n.LinkIndex && bytes.Equal(h.HardwareAddr, n.HardwareAddr) && h.IP.Equal(n.IP) {
				f.fdb = slices.Delete(f.fdb, i, i+1)
				return nil
			}
		}
		return unix.ENOENT
	}
	f.writes = append(f.writes, "neigh del "+n.IP.String())
	for i, h := range f.neighs {
		if h.LinkIndex == n.LinkIndex && h.IP.Equal(n.IP) {
			f.neighs = slices.Delete(f.neighs, i, i+1)
			return nil
		}
	}
	return unix.ENOENT
}

// vxlanFake returns a fake with bridge "vxb-t" and VXLAN device "vx-42"
// (local 198.18.0.1) enslaved to it; it returns the device's index.
func vxlanFake() (*fakeNL, int) {
	f := newFake()
	br := f.addLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-t", MTU: 1500}})
	vx := f.addLink(&netlink.Vxlan{
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
