package nstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Addresses of the underlay. Everything stays inside 198.18.0.0/15.
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
	// hosts reach it only through their default route.
	PublicAddr = netip.MustParseAddr("198.19.0.1")
	// PublicAddr6 is PublicAddr's IPv6 twin, outside UnderlayPrefix6.
	PublicAddr6 = netip.MustParseAddr("fd00:198:19::1")
)

const (
	// UnderlayBridge is the bridge inside Topology.Underlay.
	UnderlayBridge = "br0"
	// HostLink is the underlay interface inside each host namespace.
	HostLink = "ul0"
	// InternetName is the name of the internet host.
	InternetName = "internet"
	underlayRole = "underlay"
	maxHosts     = 65533 // 198.18.0.1 .. 198.18.255.253
)

// Options shape a topology. The zero value is two IPv4 hosts.
type Options struct {
	Hosts    int  // hosts h1..hN (default 2)
	IPv6     bool // also fd00:198:18::N/64 on each host's underlay link
	Internet bool // add host "internet" at 198.18.255.254 (fd00:198:18::ffff with IPv6), default route of every host via it
	MTU      int  // underlay MTU, default 1500
}

// Topology is a set of hosts on one underlay bridge.
type Topology struct {
	ID       string  // the random suffix
	Underlay string  // netns holding the underlay bridge
	Hosts    []*Host // h1..hN, then hosts from AddHost, in order
	Internet *Host   // nil unless Options.Internet

	opts  Options
	mu    sync.Mutex
	ports int // underlay bridge ports made so far, for port names
}

// Host is one namespace on the underlay.
type Host struct {
	Name   string       // "h1"
	NS     string       // "vxt-<id>-h1"
	Addr   netip.Addr   // 198.18.0.N (N = index+1)
	Addr6  netip.Addr   // fd00:198:18::N when IPv6
	Prefix netip.Prefix // 198.18.0.0/16
	Link   string       // underlay interface inside the host ns: "ul0"

	tp   *Topology
	port string // its veth peer on the underlay bridge
}

// New builds the underlay namespace with its bridge and opts.Hosts hosts
// h1..hN (and the internet host when asked), all removed at cleanup. It
// skips the test when not root.
func New(tb testing.TB, opts Options) *Topology {
	tb.Helper()
	RequireRoot(tb)
	if opts.Hosts == 0 {
		opts.Hosts = 2
	}
	if opts.Hosts < 0 || opts.Hosts > maxHosts {
		tb.Fatalf("nstest: %d hosts: want 1..%d", opts.Hosts, maxHosts)
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.MTU < 68 || opts.MTU > 65535 {
		tb.Fatalf("nstest: MTU %d: want 68..65535", opts.MTU)
	}
	id := Suffix()
	tp := &Topology{ID: id, Underlay: Prefix + id + "-" + underlayRole, opts: opts}
	createNetns(tb, tp.Underlay)
	h := handleAt(tb, tp.Underlay)
	defer h.Close()
	// Without multicast snooping, neighbour solicitations always flood: an MLD
	// report lost while a port came up cannot make IPv6 neighbours vanish.
	snoop := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: UnderlayBridge, MTU: opts.MTU}, MulticastSnooping: &snoop}
	if err := h.LinkAdd(br); err != nil {
		tb.Fatalf("nstest: add bridge %q in %q: %v", UnderlayBridge, tp.Underlay, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		tb.Fatalf("nstest: set bridge %q up: %v", UnderlayBridge, err)
	}
	for i := range opts.Hosts {
		tp.AddHost(tb, fmt.Sprintf("h%d", i+1))
	}
	if opts.Internet {
		in := &Host{Name: InternetName, NS: tp.nsName(InternetName), Addr: InternetAddr, Prefix: UnderlayPrefix, Link: HostLink, tp: tp}
		if opts.IPv6 {
			in.Addr6 = InternetAddr6
		}
		tp.attach(tb, in)
		tp.Internet = in
		ih := handleAt(tb, in.NS)
		defer ih.Close()
		lo, err := ih.LinkByName("lo")
		if err != nil {
			tb.Fatalf("nstest: find lo in %q: %v", in.NS, err)
		}
		pub := []netip.Prefix{netip.PrefixFrom(PublicAddr, 32)}
		if opts.IPv6 {
			pub = append(pub, netip.PrefixFrom(PublicAddr6, 128))
		}
		for _, p := range pub {
			if err := ih.AddrReplace(lo, nlAddr(p)); err != nil {
				tb.Fatalf("nstest: add %s to lo in %q: %v", p, in.NS, err)
			}
		}
		if opts.IPv6 {
			if err := waitV6Ready(ih, in.NS, "lo", PublicAddr6); err != nil {
				tb.Fatalf("nstest: %v", err)
			}
		}
	}
	return tp
}

func (tp *Topology) nsName(host string) string { return Prefix + tp.ID + "-" + host }

// AddHost adds a host with the next free address on the same underlay.
func (tp *Topology) AddHost(tb testing.TB, name string) *Host {
	tb.Helper()
	if name == "" || name == underlayRole || name == InternetName || tp.Host(name) != nil {
		tb.Fatalf("nstest: add host %q: name empty, reserved or taken", name)
	}
	if !netnsutil.ValidName(tp.nsName(name)) {
		tb.Fatalf("nstest: add host %q: not a valid namespace name", name)
	}
	tp.mu.Lock()
	n := len(tp.Hosts) + 1
	if n > maxHosts {
		tp.mu.Unlock()
		tb.Fatalf("nstest: add host %q: underlay full (%d hosts)", name, maxHosts)
	}
	h := &Host{
		Name:   name,
		NS:     tp.nsName(name),
		Addr:   nthAddr(UnderlayPrefix.Addr(), n),
		Prefix: UnderlayPrefix,
		Link:   HostLink,
		tp:     tp,
	}
	if tp.opts.IPv6 {
		h.Addr6 = nthAddr(UnderlayPrefix6.Addr(), n)
	}
	// Claim the address before building, so concurrent AddHost calls differ.
	tp.Hosts = append(tp.Hosts, h)
	tp.mu.Unlock()
	tp.attach(tb, h)
	return h
}

// nthAddr is base + n.
func nthAddr(base netip.Addr, n int) netip.Addr {
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
func (tp *Topology) attach(tb testing.TB, h *Host) {
	tb.Helper()
	createNetns(tb, h.NS)
	tp.mu.Lock()
	tp.ports++
	port := fmt.Sprintf("p%d", tp.ports)
	tp.mu.Unlock()

	ns, err := netnsutil.Open(h.NS)
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	defer ns.Close()
	ul := handleAt(tb, tp.Underlay)
	defer ul.Close()
	br, err := ul.LinkByName(UnderlayBridge)
	if err != nil {
		tb.Fatalf("nstest: find bridge %q in %q: %v", UnderlayBridge, tp.Underlay, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: tp.opts.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      HostLink,
		PeerNamespace: netlink.NsFd(ns),
	}
	// The veth dies with the underlay namespace, taking its peer along.
	if err := ul.LinkAdd(veth); err != nil {
		tb.Fatalf("nstest: add veth %q -> %s/%s: %v", port, h.NS, HostLink, err)
	}
	if err := ul.LinkSetUp(veth); err != nil {
		tb.Fatalf("nstest: set %q up in %q: %v", port, tp.Underlay, err)
	}
	h.port = port
	if err := h.configure(true); err != nil {
		tb.Fatalf("nstest: %v", err)
	}
}

// configure sets the underlay link up or down and, when up, (re)applies its
// addresses and default routes: a link going down drops IPv6 addresses and
// gateway routes, so a heal must put them back.
func (h *Host) configure(up bool) error {
	nh, err := h.handle()
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
	ul, err := handleIn(h.tp.Underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	if err := waitOperUp(ul, h.tp.Underlay, h.port); err != nil {
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
	if h.tp.opts.Internet && h.Name != InternetName {
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
	deadline := time.Now().Add(linkUpTimeout)
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
				addr, link, ns, linkUpTimeout, len(routes) > 0, joined)
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

// Host returns the host called name (including "internet"), or nil.
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

func (h *Host) handle() (*netlink.Handle, error) { return handleIn(h.NS) }

// handleIn opens a netlink handle in the named namespace.
func handleIn(name string) (*netlink.Handle, error) {
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

// linkUpTimeout bounds the wait for a link's carrier; the kernel's link
// watcher may take a second or more on a busy machine.
const linkUpTimeout = 10 * time.Second

// waitOperUp polls until link name in ns reports operational state up.
func waitOperUp(nh *netlink.Handle, ns, name string) error {
	deadline := time.Now().Add(linkUpTimeout)
	for {
		l, err := nh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %q in %q: %w", name, ns, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %q in %q not up after %s: operstate %s", name, ns, linkUpTimeout, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Handle returns a netlink handle inside the host's namespace, closed at
// cleanup.
func (h *Host) Handle(tb testing.TB) *netlink.Handle {
	tb.Helper()
	nh, err := h.handle()
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	tb.Cleanup(nh.Close)
	return nh
}

// NsHandle returns a handle on the host's namespace, closed at cleanup.
func (h *Host) NsHandle(tb testing.TB) netns.NsHandle {
	tb.Helper()
	ns, err := netnsutil.Open(h.NS)
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}

// Do runs fn inside the host's namespace on a locked thread.
func (h *Host) Do(fn func() error) error { return netnsutil.Do(h.NS, fn) }

// Run runs a command inside the host's network namespace only (nsenter
// --net, not `ip netns exec`, which also gives the command a private mount
// namespace) and returns its combined output.
func (h *Host) Run(args ...string) (string, error) { return RunIn(h.NS, args...) }

// RunIn is Host.Run for any named namespace; "" runs in the current one.
func RunIn(ns string, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("run: no command")
	}
	var cmd *exec.Cmd
	if ns == "" {
		cmd = exec.Command(args[0], args[1:]...)
	} else {
		cmd = exec.Command("nsenter", append([]string{"--net=" + netnsutil.Path(ns), "--"}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %q in netns %q: %w: %s", args, ns, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := h.Run(args...)
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	return out
}

// Ping sends one ICMP echo to addr (ping -6 for IPv6) and waits up to a
// second for the reply.
func (h *Host) Ping(addr netip.Addr) error {
	args := []string{"ping", "-n", "-q", "-c1", "-W1"}
	if addr.Is6() && !addr.Is4In6() {
		args = append(args, "-6")
	}
	_, err := h.Run(append(args, addr.String())...)
	return err
}

// SetUnderlayUp sets the host's underlay link down (a partition) or up (a
// heal; addresses and default routes are restored).
func (h *Host) SetUnderlayUp(tb testing.TB, up bool) {
	tb.Helper()
	if err := h.configure(up); err != nil {
		tb.Fatalf("nstest: %v", err)
	}
}
