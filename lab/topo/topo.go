// Package topo builds hosts as network namespaces on a private underlay:
// an underlay bridge in a namespace of its own, one veth per host with an
// address in 198.18.0.0/16, optionally an "internet" host that is every
// host's default route. `vxmesh lab` (package lab) and the kernel test
// harness (internal/nstest) both build on it. It depends on nothing of
// vxmesh but internal/netnsutil, so any package's tests may use it.
//
// Nothing is made in the root namespace: every link, address and route is
// inside a namespace the topology created, and Teardown removes them all.
// Only netlink; no `ip` commands.
package topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Addresses of the underlay. Everything stays inside 198.18.0.0/15, the
// range reserved for benchmarking networks (RFC 2544), so nothing a lab or
// a test does can collide with a real network.
var (
	// UnderlayPrefix is the on-link prefix of every host's underlay link.
	UnderlayPrefix = netip.MustParsePrefix("198.18.0.0/16")
	// UnderlayPrefix6 is the IPv6 on-link prefix (Options.IPv6).
	UnderlayPrefix6 = netip.MustParsePrefix("fd00:198:18::/64")
	// InternetAddr is the internet host's underlay address.
	InternetAddr = netip.MustParseAddr("198.18.255.254")
	// InternetAddr6 is the internet host's IPv6 underlay address.
	InternetAddr6 = netip.MustParseAddr("fd00:198:18::ffff")
	// PublicAddr is on the internet host's lo, outside UnderlayPrefix:
	// hosts reach it only through their default route. `vxmesh lab`'s fake
	// upstream DNS server listens on it.
	PublicAddr = netip.MustParseAddr("198.19.0.1")
	// PublicAddr6 is PublicAddr's IPv6 twin, outside UnderlayPrefix6.
	PublicAddr6 = netip.MustParseAddr("fd00:198:19::1")
)

const (
	// UnderlayBridge is the bridge inside Topology.Underlay.
	UnderlayBridge = "br0"
	// HostLink is the underlay interface inside each host namespace.
	HostLink = "ul0"
	// MaxHosts is how many hosts fit on the underlay:
	// 198.18.0.1 .. 198.18.255.253.
	MaxHosts = 65533
	// DefaultUnderlayRole and DefaultInternetRole name the underlay and
	// internet namespaces when Options leaves them empty.
	DefaultUnderlayRole = "ul"
	DefaultInternetRole = "inet"
	// LinkUpTimeout bounds the wait for a link's carrier; the kernel's link
	// watcher may take a second or more on a busy machine.
	LinkUpTimeout = 10 * time.Second
)

// Options shape a Topology.
type Options struct {
	// Prefix starts every namespace name: with "vxl-lab-" the underlay is
	// "vxl-lab-ul" and host h1 "vxl-lab-h1". Required.
	Prefix string
	// UnderlayRole and InternetRole end the names of the underlay and
	// internet namespaces (DefaultUnderlayRole, DefaultInternetRole). The
	// internet host's Name is its role.
	UnderlayRole, InternetRole string
	// Hosts is the number of hosts h1..hN built at once (0 is allowed;
	// AddHost adds more).
	Hosts int
	// IPv6 also gives each host fd00:198:18::N/64 on its underlay link.
	IPv6 bool
	// Internet adds the internet host at InternetAddr (and InternetAddr6
	// with IPv6) with PublicAddr (PublicAddr6) on its lo, and a default
	// route of every host via it.
	Internet bool
	// MTU of the underlay links; default 1500.
	MTU int
	// Created, when set, is called with each namespace right after it is
	// made, before anything else happens in it (the test harness records
	// its owner there). An error undoes the namespace.
	Created func(ns string) error
	// Removed, when set, is called with each namespace after it is
	// deleted.
	Removed func(ns string)
}

// Topology is a set of hosts (network namespaces) on one underlay bridge
// that lives in a namespace of its own. Nothing of it is in the root
// namespace: every link, address and route is made inside a namespace the
// topology created, and Teardown removes all of them.
type Topology struct {
	Underlay string  // netns holding the underlay bridge
	Hosts    []*Host // h1..hN, then hosts from AddHost, in order
	Internet *Host   // nil unless Options.Internet

	opts  Options
	mu    sync.Mutex
	ports int             // underlay bridge ports made so far, for port names
	made  []string        // namespaces created, in order
	gone  map[string]bool // namespaces removed by RemoveHost
}

// Host is one namespace on the underlay.
type Host struct {
	Name   string       // "h1"
	NS     string       // Prefix + "h1"
	Addr   netip.Addr   // 198.18.0.N (N = index+1)
	Addr6  netip.Addr   // fd00:198:18::N with IPv6
	Prefix netip.Prefix // UnderlayPrefix
	Link   string       // underlay interface inside the host ns: HostLink
	Port   string       // its veth peer on the underlay bridge

	tp *Topology
}

// New builds the underlay namespace with its bridge, opts.Hosts
// hosts h1..hN and, when asked, the internet host. On error it removes
// everything it made.
func New(opts Options) (tp *Topology, err error) {
	if opts.Prefix == "" {
		return nil, errors.New("build topology: no namespace prefix")
	}
	if opts.UnderlayRole == "" {
		opts.UnderlayRole = DefaultUnderlayRole
	}
	if opts.InternetRole == "" {
		opts.InternetRole = DefaultInternetRole
	}
	if opts.Hosts < 0 || opts.Hosts > MaxHosts {
		return nil, fmt.Errorf("build topology: %d hosts: want 0..%d", opts.Hosts, MaxHosts)
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.MTU < 68 || opts.MTU > 65535 {
		return nil, fmt.Errorf("build topology: MTU %d: want 68..65535", opts.MTU)
	}
	for _, role := range []string{opts.UnderlayRole, opts.InternetRole} {
		if !netnsutil.ValidName(opts.Prefix + role) {
			return nil, fmt.Errorf("build topology: %q is not a valid namespace name", opts.Prefix+role)
		}
	}
	tp = &Topology{Underlay: opts.Prefix + opts.UnderlayRole, opts: opts, gone: map[string]bool{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, tp.Teardown())
			tp = nil
		}
	}()
	if err := tp.createNetns(tp.Underlay); err != nil {
		return tp, err
	}
	h, err := Handle(tp.Underlay)
	if err != nil {
		return tp, err
	}
	defer h.Close()
	// Without multicast snooping, neighbour solicitations always flood: an MLD
	// report lost while a port came up cannot make IPv6 neighbours vanish.
	snoop := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: UnderlayBridge, MTU: opts.MTU}, MulticastSnooping: &snoop}
	if err := h.LinkAdd(br); err != nil {
		return tp, fmt.Errorf("add bridge %q in %q: %w", UnderlayBridge, tp.Underlay, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return tp, fmt.Errorf("set bridge %q up in %q: %w", UnderlayBridge, tp.Underlay, err)
	}
	for i := range opts.Hosts {
		if _, err := tp.AddHost(fmt.Sprintf("h%d", i+1)); err != nil {
			return tp, err
		}
	}
	if opts.Internet {
		if err := tp.addInternet(); err != nil {
			return tp, err
		}
	}
	return tp, nil
}

// addInternet builds the internet host: an underlay address, the public
// addresses on its lo.
func (tp *Topology) addInternet() error {
	in := &Host{Name: tp.opts.InternetRole, NS: tp.nsName(tp.opts.InternetRole), Addr: InternetAddr, Prefix: UnderlayPrefix, Link: HostLink, tp: tp}
	if tp.opts.IPv6 {
		in.Addr6 = InternetAddr6
	}
	if err := tp.attach(in); err != nil {
		return err
	}
	tp.mu.Lock()
	tp.Internet = in
	tp.mu.Unlock()
	ih, err := in.Handle()
	if err != nil {
		return err
	}
	defer ih.Close()
	lo, err := ih.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %q: %w", in.NS, err)
	}
	pub := []netip.Prefix{netip.PrefixFrom(PublicAddr, 32)}
	if tp.opts.IPv6 {
		pub = append(pub, netip.PrefixFrom(PublicAddr6, 128))
	}
	for _, p := range pub {
		if err := ih.AddrReplace(lo, nlAddr(p)); err != nil {
			return fmt.Errorf("add %s to lo in %q: %w", p, in.NS, err)
		}
	}
	if tp.opts.IPv6 {
		if err := waitV6Ready(ih, in.NS, "lo", PublicAddr6); err != nil {
			return err
		}
	}
	return nil
}

func (tp *Topology) nsName(host string) string { return tp.opts.Prefix + host }

// Namespaces returns the namespaces the topology made and has not
// removed, in the order they were made (the underlay first).
func (tp *Topology) Namespaces() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []string
	for _, ns := range tp.made {
		if !tp.gone[ns] {
			out = append(out, ns)
		}
	}
	return out
}

// createNetns creates the named namespace with lo up and records it for
// Teardown.
func (tp *Topology) createNetns(name string) error {
	if err := CreateNetns(name); err != nil {
		return err
	}
	tp.mu.Lock()
	tp.made = append(tp.made, name)
	tp.mu.Unlock()
	if tp.opts.Created != nil {
		if err := tp.opts.Created(name); err != nil {
			return err
		}
	}
	return nil
}

// CreateNetns creates the named namespace and sets its lo up; on error
// nothing is left.
func CreateNetns(name string) error {
	if err := netnsutil.Create(name); err != nil {
		return err
	}
	err := func() error {
		h, err := Handle(name)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo in %q: %w", name, err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up in %q: %w", name, err)
		}
		return nil
	}()
	if err != nil {
		return errors.Join(err, netnsutil.Delete(name))
	}
	return nil
}

// Teardown deletes every namespace the topology made (hosts first, the
// underlay last), taking their links along. It may run twice.
func (tp *Topology) Teardown() error {
	tp.mu.Lock()
	made := append([]string(nil), tp.made...)
	tp.mu.Unlock()
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := tp.deleteNetns(made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (tp *Topology) deleteNetns(ns string) error {
	if err := netnsutil.Delete(ns); err != nil {
		return err
	}
	tp.mu.Lock()
	tp.gone[ns] = true
	tp.mu.Unlock()
	if tp.opts.Removed != nil {
		tp.opts.Removed(ns)
	}
	return nil
}

// AddHost adds a host with the next free address on the underlay. On error
// its namespace is removed again.
func (tp *Topology) AddHost(name string) (*Host, error) {
	if name == "" || name == tp.opts.UnderlayRole || name == tp.opts.InternetRole || tp.Host(name) != nil {
		return nil, fmt.Errorf("add host %q: name empty, reserved or taken", name)
	}
	if !netnsutil.ValidName(tp.nsName(name)) {
		return nil, fmt.Errorf("add host %q: %q is not a valid namespace name", name, tp.nsName(name))
	}
	tp.mu.Lock()
	n := len(tp.Hosts) + 1
	if n > MaxHosts {
		tp.mu.Unlock()
		return nil, fmt.Errorf("add host %q: underlay full (%d hosts)", name, MaxHosts)
	}
	h := &Host{
		Name:   name,
		NS:     tp.nsName(name),
		Addr:   NthAddr(UnderlayPrefix.Addr(), n),
		Prefix: UnderlayPrefix,
		Link:   HostLink,
		tp:     tp,
	}
	if tp.opts.IPv6 {
		h.Addr6 = NthAddr(UnderlayPrefix6.Addr(), n)
	}
	// Claim the address before building, so concurrent AddHost calls differ.
	tp.Hosts = append(tp.Hosts, h)
	tp.mu.Unlock()
	if err := tp.attach(h); err != nil {
		return nil, errors.Join(err, tp.deleteNetns(h.NS))
	}
	return h, nil
}

// RemoveHost deletes the host's namespace (and with it its underlay
// link). It may run twice. The host keeps its place (and address) in
// Hosts.
func (tp *Topology) RemoveHost(h *Host) error { return tp.deleteNetns(h.NS) }

// NthAddr is base + n.
func NthAddr(base netip.Addr, n int) netip.Addr {
	b := base.AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		sum := int(b[i]) + n
		b[i] = byte(sum)
		n = sum >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// attach creates h's namespace, plugs it into the underlay bridge and
// configures its addresses and routes.
func (tp *Topology) attach(h *Host) error {
	if err := tp.createNetns(h.NS); err != nil {
		return err
	}
	tp.mu.Lock()
	tp.ports++
	port := fmt.Sprintf("p%d", tp.ports)
	tp.mu.Unlock()

	ns, err := netnsutil.Open(h.NS)
	if err != nil {
		return err
	}
	defer ns.Close()
	ul, err := Handle(tp.Underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	br, err := ul.LinkByName(UnderlayBridge)
	if err != nil {
		return fmt.Errorf("find bridge %q in %q: %w", UnderlayBridge, tp.Underlay, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: tp.opts.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      HostLink,
		PeerNamespace: netlink.NsFd(ns),
	}
	// The veth dies with either namespace, taking its peer along.
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %q -> %s/%s: %w", port, h.NS, HostLink, err)
	}
	if err := ul.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %q up in %q: %w", port, tp.Underlay, err)
	}
	h.Port = port
	return h.SetUnderlayUp(true)
}

// SetUnderlayUp sets the host's underlay link down (a partition) or up
// and, when up, (re)applies its addresses and default routes: a link going
// down drops IPv6 addresses and gateway routes, so a heal puts them back.
// It returns once the link carries traffic.
func (h *Host) SetUnderlayUp(up bool) error {
	nh, err := h.Handle()
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(h.Link)
	if err != nil {
		return fmt.Errorf("find %q in %q: %w", h.Link, h.NS, err)
	}
	if !up {
		if err := nh.LinkSetDown(link); err != nil {
			return fmt.Errorf("set %q down in %q: %w", h.Link, h.NS, err)
		}
		return nil
	}
	if err := nh.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %q up in %q: %w", h.Link, h.NS, err)
	}
	// Until the kernel's link watcher sees the carrier, a veth has no qdisc
	// and the bridge port does not forward: early packets would vanish.
	if err := waitOperUp(nh, h.NS, h.Link); err != nil {
		return err
	}
	ul, err := Handle(h.tp.Underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	if err := waitOperUp(ul, h.tp.Underlay, h.Port); err != nil {
		return err
	}
	addrs := []netip.Prefix{netip.PrefixFrom(h.Addr, h.Prefix.Bits())}
	if h.Addr6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(h.Addr6, UnderlayPrefix6.Bits()))
	}
	for _, p := range addrs {
		if err := nh.AddrReplace(link, nlAddr(p)); err != nil {
			return fmt.Errorf("add %s to %q in %q: %w", p, h.Link, h.NS, err)
		}
	}
	if h.Addr6.IsValid() {
		if err := waitV6Ready(nh, h.NS, h.Link, h.Addr6); err != nil {
			return err
		}
	}
	if h.tp.opts.Internet && h.Name != h.tp.opts.InternetRole {
		gws := []netip.Addr{InternetAddr}
		if h.tp.opts.IPv6 {
			gws = append(gws, InternetAddr6)
		}
		for _, gw := range gws {
			dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
			if gw.Is6() {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice()}
			if err := nh.RouteReplace(r); err != nil {
				return fmt.Errorf("add default route via %s in %q: %w", gw, h.NS, err)
			}
		}
	}
	return nil
}

// waitV6Ready waits until IPv6 address addr on link in ns is usable. The
// kernel finishes adding an IPv6 address from a work queue, even without
// duplicate address detection: until it has inserted the local route (and,
// on a link with neighbours, joined the address's solicited-node multicast
// group) packets to the address are dropped or answered with errors.
func waitV6Ready(nh *netlink.Handle, ns, link string, addr netip.Addr) error {
	a := addr.As16()
	group := fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", a[13], a[14], a[15])
	needGroup := link != "lo"
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(128, 128)}}
	deadline := time.Now().Add(LinkUpTimeout)
	for {
		routes, err := nh.RouteListFiltered(netlink.FAMILY_V6, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
		if err != nil {
			return fmt.Errorf("list local routes in %q: %w", ns, err)
		}
		joined := !needGroup
		if needGroup {
			err := netnsutil.Do(ns, func() error {
				b, err := os.ReadFile("/proc/thread-self/net/igmp6")
				if err != nil {
					return err
				}
				for _, line := range strings.Split(string(b), "\n") {
					if f := strings.Fields(line); len(f) >= 3 && f[1] == link && f[2] == group {
						joined = true
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read IPv6 multicast groups in %q: %w", ns, err)
			}
		}
		if len(routes) > 0 && joined {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("IPv6 address %s on %q in %q not usable after %s (local route: %v, solicited-node group joined: %v)",
				addr, link, ns, LinkUpTimeout, len(routes) > 0, joined)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nlAddr is p as a netlink address, without duplicate address detection so
// IPv6 works at once.
func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Host returns the host called name (including the internet host), or
// nil.
func (tp *Topology) Host(name string) *Host {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, h := range tp.Hosts {
		if h.Name == name {
			return h
		}
	}
	if tp.Internet != nil && tp.Internet.Name == name {
		return tp.Internet
	}
	return nil
}

// Handle opens a netlink handle inside the host's namespace; the caller
// closes it.
func (h *Host) Handle() (*netlink.Handle, error) { return Handle(h.NS) }

// Do runs fn inside the host's namespace on a locked thread.
func (h *Host) Do(fn func() error) error { return netnsutil.Do(h.NS, fn) }

// Handle opens a netlink handle in the named namespace; the caller closes
// it.
func Handle(name string) (*netlink.Handle, error) {
	ns, err := netnsutil.Open(name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %q: %w", name, err)
	}
	return nh, nil
}

// waitOperUp polls until link name in ns reports operational state up.
func waitOperUp(nh *netlink.Handle, ns, name string) error {
	deadline := time.Now().Add(LinkUpTimeout)
	for {
		l, err := nh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %q in %q: %w", name, ns, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %q in %q not up after %s: operstate %s", name, ns, LinkUpTimeout, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
