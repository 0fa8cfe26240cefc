package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// NetlinkKernel is the real Kernel: netlink handles that never move a
// thread (netlink.NewHandleAt), named namespaces through netnsutil, and
// /proc/sys written from a thread inside the host namespace.
type NetlinkKernel struct {
	hostNS netns.NsHandle // None: the current namespace
	host   *netlink.Handle
	writes atomic.Int64

	mu      sync.Mutex
	ipvlan  *bool // probed once
	closeNS bool

	// Spare namespaces for CreateNetns (netnspool.go), under mu.
	spares    []*os.File
	spareWant int
	filling   bool
	closed    bool

	// stop ends the background repeats of announcements; bg waits for them.
	stop     chan struct{}
	stopOnce sync.Once
	bg       sync.WaitGroup
}

// NewKernel returns the real Kernel for the host namespace named hostNetns
// ("" for the namespace the process runs in). Close it when done.
func NewKernel(hostNetns string) (*NetlinkKernel, error) {
	k := &NetlinkKernel{hostNS: netns.None(), stop: make(chan struct{})}
	if hostNetns != "" {
		h, err := netnsutil.Open(hostNetns)
		if err != nil {
			return nil, err
		}
		k.hostNS, k.closeNS = h, true
	}
	var err error
	if k.hostNS.IsOpen() {
		k.host, err = netlink.NewHandleAt(k.hostNS)
	} else {
		k.host, err = netlink.NewHandle()
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	return k, nil
}

// Close stops the announcements still repeating and releases the handles.
func (k *NetlinkKernel) Close() {
	k.stopOnce.Do(func() { close(k.stop) })
	k.closeSpares()
	k.bg.Wait()
	if k.host != nil {
		k.host.Close()
	}
	if k.closeNS {
		k.hostNS.Close()
	}
}

// Writes counts the writes made so far.
func (k *NetlinkKernel) Writes() int64 { return k.writes.Load() }

func (k *NetlinkKernel) wrote(n int) { k.writes.Add(int64(n)) }

// handle returns a netlink handle in ns and its release function.
func (k *NetlinkKernel) handle(ns string) (*netlink.Handle, func(), error) {
	if ns == "" {
		return k.host, func() {}, nil
	}
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return nil, nil, err
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink handle in netns %q: %w", ns, err)
	}
	return h, h.Close, nil
}

// Links lists the links of ns with their addresses.
func (k *NetlinkKernel) Links(ns string) ([]Link, error) {
	h, done, err := k.handle(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	ls, err := nlsafe.Dump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := nlsafe.Dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int][]netip.Prefix{}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], netip.PrefixFrom(ip, ones))
	}
	var hairpin map[int]bool
	if ns == "" {
		if hairpin, err = k.hairpins(); err != nil {
			return nil, err
		}
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		at := l.Attrs()
		out = append(out, Link{
			Name:        at.Name,
			Index:       at.Index,
			Kind:        l.Type(),
			Alias:       at.Alias,
			MasterIndex: at.MasterIndex,
			ParentIndex: at.ParentIndex,
			MTU:         at.MTU,
			Up:          at.Flags&net.FlagUp != 0,
			Hairpin:     hairpin[at.Index],
			MAC:         at.HardwareAddr,
			Addrs:       byIndex[at.Index],
		})
	}
	return out, nil
}

// DefaultRoutes lists the default routes of ns's main table.
func (k *NetlinkKernel) DefaultRoutes(ns string) ([]Route, error) {
	h, done, err := k.handle(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	var out []Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := nlsafe.Dump(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			gw, _ := netip.AddrFromSlice(r.Gw)
			name := ""
			if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			out = append(out, Route{Link: name, Gateway: gw.Unmap(), IPv6: fam == netlink.FAMILY_V6})
		}
	}
	return out, nil
}

// NetnsExists reports whether the named namespace exists.
func (k *NetlinkKernel) NetnsExists(name string) bool { return netnsutil.Exists(name) }

// inHost runs fn on a thread in the host namespace (/proc/sys/net follows
// the opening thread's namespace).
func (k *NetlinkKernel) inHost(fn func() error) error {
	if !k.hostNS.IsOpen() {
		return fn()
	}
	return netnsutil.DoHandle(k.hostNS, fn)
}

func sysctlPath(key string) (string, error) {
	if strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("bad sysctl %q", key)
	}
	return "/proc/sys/" + key, nil
}

// Sysctl reads a sysctl of the host namespace.
func (k *NetlinkKernel) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v string
	err = k.inHost(func() error {
		b, err := os.ReadFile(p)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// SetSysctl writes a sysctl of the host namespace.
func (k *NetlinkKernel) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	k.wrote(1)
	return k.inHost(func() error { return os.WriteFile(p, []byte(value+"\n"), 0o644) })
}

// SetHairpin sets hairpin mode on a bridge port of the host namespace.
func (k *NetlinkKernel) SetHairpin(name string, on bool) error {
	return k.onLink("", name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetHairpin(l, on) })
}

// hairpins returns the bridge ports of the host namespace in hairpin mode,
// by index, from one AF_BRIDGE dump (IFLA_PROTINFO is only in those).
func (k *NetlinkKernel) hairpins() (map[int]bool, error) {
	out := map[int]bool{}
	err := k.inHost(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		msgs, err := nlsafe.Dump(func() ([][]byte, error) { return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK) })
		if err != nil {
			return err
		}
		for _, m := range msgs {
			info := nl.DeserializeIfInfomsg(m)
			attrs, err := nl.ParseRouteAttr(m[info.Len():])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type != unix.IFLA_PROTINFO|unix.NLA_F_NESTED {
					continue
				}
				port, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return err
				}
				for _, p := range port {
					if p.Attr.Type == nl.IFLA_BRPORT_MODE && len(p.Value) > 0 && p.Value[0] != 0 {
						out[int(info.Index)] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list bridge ports: %w", err)
	}
	return out, nil
}

// CreateNetns creates a named namespace with lo up: it names a spare one
// when KeepSpareNetns keeps any (netnspool.go), and has the next spare made.
func (k *NetlinkKernel) CreateNetns(name string) error {
	k.wrote(1)
	if f := k.takeSpare(); f != nil {
		defer k.refill()
		err := netnsutil.Name(f, name)
		f.Close()
		k.wrote(1) // its loopback was set up when the spare was made
		return err
	}
	defer k.refill()
	if err := netnsutil.Create(name); err != nil {
		return err
	}
	return k.SetUp(name, "lo")
}

// DeleteNetns removes a named namespace.
func (k *NetlinkKernel) DeleteNetns(name string) error {
	k.wrote(1)
	return netnsutil.Delete(name)
}

// AddBridge creates a bridge with its alias, up. On a failure after the
// create it deletes the bridge again, so a bridge of ours always has its
// alias.
func (k *NetlinkKernel) AddBridge(name, alias string, mtu int, mac net.HardwareAddr) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac}}
	k.wrote(1)
	if err := k.host.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %q: %w", name, err)
	}
	err := k.host.LinkSetAlias(br, alias)
	if err == nil {
		err = k.host.LinkSetUp(br)
	}
	k.wrote(2)
	if err != nil {
		k.host.LinkDel(br)
		return fmt.Errorf("set up bridge %q: %w", name, err)
	}
	return nil
}

// AddVeth creates a veth pair whose peer is born inside netns as peerName.
func (k *NetlinkKernel) AddVeth(hostName, master, ns, peerName, alias string, mtu int, mac net.HardwareAddr) error {
	br, err := k.host.LinkByName(master)
	if err != nil {
		return fmt.Errorf("find bridge %q: %w", master, err)
	}
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: hostName, MTU: mtu},
		PeerName:         peerName,
		PeerHardwareAddr: mac,
	}
	if ns != "" { // "": both ends in the host namespace (host placement)
		nsh, err := netnsutil.Open(ns)
		if err != nil {
			return err
		}
		defer nsh.Close()
		v.PeerNamespace = netlink.NsFd(nsh)
	}
	k.wrote(1)
	if err := k.host.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %q: %w", hostName, err)
	}
	err = func() error {
		host, err := k.host.LinkByName(hostName)
		if err != nil {
			return err
		}
		k.wrote(4)
		if err := k.host.LinkSetAlias(host, alias); err != nil {
			return err
		}
		if err := k.host.LinkSetMaster(host, br); err != nil {
			return err
		}
		if err := k.host.LinkSetHairpin(host, true); err != nil {
			return err
		}
		if err := k.SetAlias(ns, peerName, alias); err != nil {
			return err
		}
		return k.host.LinkSetUp(host)
	}()
	if err != nil {
		k.host.LinkDel(v)
		return fmt.Errorf("set up veth %q: %w", hostName, err)
	}
	return nil
}

// AddMacvlan creates a bridge-mode macvlan child of parent inside ns.
func (k *NetlinkKernel) AddMacvlan(ns, name, parent, alias string, mtu int, mac net.HardwareAddr) error {
	p, err := k.host.LinkByName(parent)
	if err != nil {
		return fmt.Errorf("find parent %q: %w", parent, err)
	}
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer nsh.Close()
	m := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac, ParentIndex: p.Attrs().Index, Namespace: netlink.NsFd(nsh)},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	return k.addChild(ns, name, alias, m)
}

// addChild creates a link born inside ns (through the host handle, which
// resolves the parent) and sets its alias, deleting it again on failure.
func (k *NetlinkKernel) addChild(ns, name, alias string, l netlink.Link) error {
	k.wrote(1)
	if err := k.host.LinkAdd(l); err != nil {
		return fmt.Errorf("add %s %q: %w", l.Type(), name, err)
	}
	if err := k.SetAlias(ns, name, alias); err != nil {
		k.DeleteLink(ns, name)
		return err
	}
	return nil
}

// AddIPvlan creates an L2 ipvlan child of parent inside ns.
func (k *NetlinkKernel) AddIPvlan(ns, name, parent, alias string, mtu int) error {
	if !k.IPvlanSupported() {
		return ErrNoIPvlan
	}
	p, err := k.host.LinkByName(parent)
	if err != nil {
		return fmt.Errorf("find parent %q: %w", parent, err)
	}
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer nsh.Close()
	l := &netlink.IPVlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, ParentIndex: p.Attrs().Index, Namespace: netlink.NsFd(nsh)},
		Mode:      netlink.IPVLAN_MODE_L2,
	}
	return k.addChild(ns, name, alias, l)
}

// IPvlanSupported probes once whether the kernel knows the ipvlan link
// kind: creating one on a parent index that cannot exist fails with
// EOPNOTSUPP when the kind is unknown and with another error when it is
// known. Nothing is created either way.
func (k *NetlinkKernel) IPvlanSupported() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ipvlan == nil {
		err := k.host.LinkAdd(&netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "vxprobe" + hash8("ipvlan")[:4], ParentIndex: 0x7ffffff0}})
		ok := !errors.Is(err, unix.EOPNOTSUPP)
		if err == nil { // cannot happen; do not leave it behind
			k.host.LinkDel(&netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "vxprobe" + hash8("ipvlan")[:4]}})
		}
		k.ipvlan = &ok
	}
	return *k.ipvlan
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, netnsutil.ErrNotExist)
}

// DeleteLink removes a link; a missing one is no error.
func (k *NetlinkKernel) DeleteLink(ns, name string) error {
	h, done, err := k.handle(ns)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	defer done()
	l, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("find link %q: %w", name, err)
	}
	k.wrote(1)
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %q: %w", name, err)
	}
	return nil
}

// onLink runs fn on the named link of ns as one write.
func (k *NetlinkKernel) onLink(ns, name string, fn func(h *netlink.Handle, l netlink.Link) error) error {
	h, done, err := k.handle(ns)
	if err != nil {
		return err
	}
	defer done()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %q: %w", name, err)
	}
	k.wrote(1)
	return fn(h, l)
}

// SetAlias sets a link's alias.
func (k *NetlinkKernel) SetAlias(ns, name, alias string) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetAlias(l, alias) })
}

// SetUp sets a link up and then reads it (and, for a container's veth,
// its host end) back, which makes the kernel act on the new carrier at
// once; see syncCarrier.
func (k *NetlinkKernel) SetUp(ns, name string) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error {
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		k.syncCarrier(h, ns, l)
		return nil
	})
}

// syncCarrier reads back a link that was just set up, and the host end of
// a container's veth. A veth's carrier comes on when its second end goes
// up, but the kernel acts on it only in its link-watch work: only then
// does the host end's bridge port start forwarding and the container end
// get the qdisc it sends through. That work is a workqueue item waiting
// for the rtnl lock, which a namespace being torn down (the previous
// container's rm) holds for tens of milliseconds: measured here, a new
// container became reachable 1–40 ms after its attach call returned on
// a 10-host lab. Since Linux 6.7, reading one link (RTM_GETLINK, not a
// dump) runs that device's pending link-watch work on the spot; older
// kernels answer the read and leave the work to the queue as before. The
// reads change nothing, so their errors are ignored.
func (k *NetlinkKernel) syncCarrier(h *netlink.Handle, ns string, l netlink.Link) {
	h.LinkByIndex(l.Attrs().Index)
	if ns != "" && l.Type() == "veth" && l.Attrs().ParentIndex > 0 {
		k.host.LinkByIndex(l.Attrs().ParentIndex)
	}
}

// SetMTU sets a link's MTU.
func (k *NetlinkKernel) SetMTU(ns, name string, mtu int) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetMTU(l, mtu) })
}

// SetMAC sets a link's MAC.
func (k *NetlinkKernel) SetMAC(ns, name string, mac net.HardwareAddr) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetHardwareAddr(l, mac) })
}

// SetMaster enslaves a host link to a bridge.
func (k *NetlinkKernel) SetMaster(name, master string) error {
	br, err := k.host.LinkByName(master)
	if err != nil {
		return fmt.Errorf("find bridge %q: %w", master, err)
	}
	return k.onLink("", name, func(h *netlink.Handle, l netlink.Link) error { return h.LinkSetMaster(l, br) })
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// AddAddr adds an address to a link.
func (k *NetlinkKernel) AddAddr(ns, name string, p netip.Prefix) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error {
		err := h.AddrAdd(l, nlAddr(p))
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return err
	})
}

// DelAddr removes an address from a link.
func (k *NetlinkKernel) DelAddr(ns, name string, p netip.Prefix) error {
	return k.onLink(ns, name, func(h *netlink.Handle, l netlink.Link) error {
		err := h.AddrDel(l, nlAddr(p))
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil
		}
		return err
	})
}

// ReplaceDefaultRoute makes ns's default route go via gw on link.
func (k *NetlinkKernel) ReplaceDefaultRoute(ns, link string, gw netip.Addr) error {
	return k.onLink(ns, link, func(h *netlink.Handle, l netlink.Link) error {
		bits := gw.BitLen()
		dst := &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
		return h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: gw.AsSlice(), Table: unix.RT_TABLE_MAIN})
	})
}
