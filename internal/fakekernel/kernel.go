// Package fakekernel is the in-memory kernel the unit tests of bridge and
// overlay run against, so plans and syncs can be tested without root: named
// namespaces holding links (as vishvananda/netlink types), addresses,
// routes, FDB and neighbour entries, host sysctls, and iptables chains
// (IPT). It keeps the kernel behaviour those tests rely on: a veth pair dies
// together, links die with their namespace, addresses, routes and entries
// with their link; FDB replaces of non-unicast entries are refused, deletes
// of missing entries fail with ENOENT, and dumps can be made to report
// interruption.
//
// Each package sees it through its own interface: overlay's Netlink is
// implemented by NS directly; bridge's Kernel by a thin adapter in bridge's
// tests. It is test support only: no production package imports it.
package fakekernel

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the whole machine: namespaces by name, "" being the host.
type Kernel struct {
	mu     sync.Mutex
	ns     map[string]*NS
	next   int
	writes int64

	// Sysctls of the host by /proc/sys path.
	Sysctls map[string]string
	// Fail, when set, may fail a write counted by Write: it gets the
	// method and the link or namespace name.
	Fail func(method, name string) error
}

// NS is one network namespace. Its exported tables may be read and
// changed by a test between calls.
type NS struct {
	k     *Kernel
	links []netlink.Link

	Addrs  []netlink.Addr
	Routes []netlink.Route
	FDB    []netlink.Neigh // AF_BRIDGE
	Neighs []netlink.Neigh // AF_INET, AF_INET6

	// Interrupt counts the neighbour dumps still to report interrupted
	// (returning half the entries).
	Interrupt int
	// FailNeigh makes NeighSet of the FDB entry "MAC/IP" fail with the
	// errno.
	FailNeigh map[string]int
	// Log lists the writes made through the netlink methods ("fdb replace
	// MAC/IP", "link add NAME", "mtu NAME"...).
	Log []string
	// Calls counts some reads ("LinkByName", "dump").
	Calls map[string]int
}

// New returns a kernel whose host namespace holds lo.
func New() *Kernel {
	k := &Kernel{ns: map[string]*NS{}, next: 100, Sysctls: map[string]string{}}
	k.ns[""] = k.newNS()
	return k
}

func (k *Kernel) newNS() *NS {
	n := &NS{k: k, FailNeigh: map[string]int{}, Calls: map[string]int{}}
	n.links = []netlink.Link{&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1, MTU: 65536, Flags: net.FlagUp | net.FlagLoopback}}}
	return n
}

// Lock and Unlock guard the kernel for an adapter that makes several
// changes as one.
func (k *Kernel) Lock()   { k.mu.Lock() }
func (k *Kernel) Unlock() { k.mu.Unlock() }

// Write counts a write and asks Fail whether it fails. Call with the lock
// held.
func (k *Kernel) Write(method, name string) error {
	k.writes++
	if k.Fail != nil {
		return k.Fail(method, name)
	}
	return nil
}

// Writes counts the writes so far.
func (k *Kernel) Writes() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

// NextIndex hands out a new interface index. Call with the lock held.
func (k *Kernel) NextIndex() int { k.next++; return k.next }

// NS returns the named namespace, nil if there is none.
func (k *Kernel) NS(name string) *NS { return k.ns[name] }

// Namespaces lists the named namespaces (not the host).
func (k *Kernel) Namespaces() []string {
	var out []string
	for name := range k.ns {
		if name != "" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// AddNS creates a namespace with lo up (127.0.0.1/8). Call with the lock
// held.
func (k *Kernel) AddNS(name string) error {
	if _, ok := k.ns[name]; ok {
		return fmt.Errorf("netns %q exists", name)
	}
	n := k.newNS()
	n.Addrs = []netlink.Addr{{IPNet: &net.IPNet{IP: net.IPv4(127, 0, 0, 1).To4(), Mask: net.CIDRMask(8, 32)}, LinkIndex: 1}}
	k.ns[name] = n
	return nil
}

// SetNS puts a namespace with the given links (indexes as given) in place,
// replacing any: for tests that start from a kernel state.
func (k *Kernel) SetNS(name string, links ...netlink.Link) *NS {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := &NS{k: k, links: links, FailNeigh: map[string]int{}, Calls: map[string]int{}}
	k.ns[name] = n
	return n
}

// DelNS removes a namespace and its links (with their veth peers).
// Call with the lock held.
func (k *Kernel) DelNS(name string) {
	n, ok := k.ns[name]
	if !ok {
		return
	}
	for _, l := range slices.Clone(n.links) {
		k.DelLink(name, l.Attrs().Name)
	}
	delete(k.ns, name)
}

// Link returns the link named name in namespace ns (the stored value: a
// test may change it), or nil.
func (k *Kernel) Link(ns, name string) netlink.Link {
	n := k.ns[ns]
	if n == nil {
		return nil
	}
	return n.Link(name)
}

// Lock and Unlock guard the namespace's tables (the whole kernel's lock).
func (n *NS) Lock()   { n.k.mu.Lock() }
func (n *NS) Unlock() { n.k.mu.Unlock() }

// Link returns the link named name (the stored value), or nil.
func (n *NS) Link(name string) netlink.Link {
	for _, l := range n.links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

// LinkByIndex returns the link with index i, or nil.
func (n *NS) LinkByIndex(i int) netlink.Link {
	for _, l := range n.links {
		if l.Attrs().Index == i {
			return l
		}
	}
	return nil
}

// AllLinks returns the stored links in index order.
func (n *NS) AllLinks() []netlink.Link {
	out := slices.Clone(n.links)
	slices.SortStableFunc(out, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
	return out
}

// AddLink stores l as it is, giving it a new index when it has none; a
// missing MTU becomes 1500. It returns l. Call with the lock held.
func (k *Kernel) AddLink(ns string, l netlink.Link) (netlink.Link, error) {
	n := k.ns[ns]
	if n == nil {
		return nil, fmt.Errorf("netns %q: no such namespace", ns)
	}
	a := l.Attrs()
	if n.Link(a.Name) != nil {
		return nil, unix.EEXIST
	}
	if a.Index == 0 {
		a.Index = k.NextIndex()
	}
	if a.MTU == 0 {
		a.MTU = 1500
	}
	n.links = append(n.links, l)
	return l, nil
}

// AddLink is Kernel.AddLink for this namespace, under the lock.
func (n *NS) AddLink(l netlink.Link) netlink.Link {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	a := l.Attrs()
	if a.Index == 0 {
		a.Index = n.k.NextIndex()
	}
	n.links = append(n.links, l)
	return l
}

// DelLink removes a link with its addresses, routes and entries; a veth
// takes its peer along, wherever that is. Call with the lock held.
func (k *Kernel) DelLink(ns, name string) {
	n := k.ns[ns]
	if n == nil {
		return
	}
	l := n.Link(name)
	if l == nil {
		return
	}
	idx, peer := l.Attrs().Index, l.Attrs().ParentIndex
	n.links = slices.DeleteFunc(n.links, func(x netlink.Link) bool { return x.Attrs().Name == name })
	n.Addrs = slices.DeleteFunc(n.Addrs, func(a netlink.Addr) bool { return a.LinkIndex == idx })
	n.Routes = slices.DeleteFunc(n.Routes, func(r netlink.Route) bool { return r.LinkIndex == idx })
	n.FDB = slices.DeleteFunc(n.FDB, func(e netlink.Neigh) bool { return e.LinkIndex == idx })
	n.Neighs = slices.DeleteFunc(n.Neighs, func(e netlink.Neigh) bool { return e.LinkIndex == idx })
	if _, ok := l.(*netlink.Veth); !ok {
		return
	}
	for other, on := range k.ns {
		for _, x := range on.links {
			if _, ok := x.(*netlink.Veth); ok && x.Attrs().Index == peer && x.Attrs().ParentIndex == idx {
				k.DelLink(other, x.Attrs().Name)
				return
			}
		}
	}
}

// AddrsOf returns the addresses of the link with index idx, in the order
// they were added.
func (n *NS) AddrsOf(idx int) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range n.Addrs {
		if a.LinkIndex != idx || a.IPNet == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

// AddAddr gives the link with index idx the address p, once.
func (n *NS) AddAddr(idx int, p netip.Prefix) {
	if slices.Contains(n.AddrsOf(idx), p) {
		return
	}
	n.Addrs = append(n.Addrs, netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, LinkIndex: idx})
}

// DelAddr takes the address p from the link with index idx.
func (n *NS) DelAddr(idx int, p netip.Prefix) {
	n.Addrs = slices.DeleteFunc(n.Addrs, func(a netlink.Addr) bool {
		if a.LinkIndex != idx || a.IPNet == nil {
			return false
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		return netip.PrefixFrom(ip.Unmap(), ones) == p
	})
}
