package nstest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The topology is built by package lab/topo (the same builder `vxmesh lab`
// uses); this file only ties it to a test: unique names, t.Cleanup, Fatal
// on error, owner records for ReapStale.

// Addresses of the underlay. Everything stays inside 198.18.0.0/15.
var (
	// UnderlayPrefix is the on-link prefix of every host's underlay link.
	UnderlayPrefix = topo.UnderlayPrefix
	// UnderlayPrefix6 is the IPv6 on-link prefix (Options.IPv6).
	UnderlayPrefix6 = topo.UnderlayPrefix6
	// InternetAddr is the internet host's underlay address.
	InternetAddr = topo.InternetAddr
	// InternetAddr6 is the internet host's IPv6 underlay address.
	InternetAddr6 = topo.InternetAddr6
	// PublicAddr is on the internet host's lo, outside UnderlayPrefix:
	// hosts reach it only through their default route.
	PublicAddr = topo.PublicAddr
	// PublicAddr6 is PublicAddr's IPv6 twin, outside UnderlayPrefix6.
	PublicAddr6 = topo.PublicAddr6
)

const (
	// UnderlayBridge is the bridge inside Topology.Underlay.
	UnderlayBridge = topo.UnderlayBridge
	// HostLink is the underlay interface inside each host namespace.
	HostLink = topo.HostLink
	// InternetName is the name of the internet host.
	InternetName = "internet"
	underlayRole = "underlay"
	maxHosts     = topo.MaxHosts // 198.18.0.1 .. 198.18.255.253
)

// nthAddr is base + n.
var nthAddr = topo.NthAddr

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

	lt *topo.Topology
	mu sync.Mutex
}

// Host is one namespace on the underlay: a topo.Host (Name, NS "vxt-<id>-h1",
// Addr 198.18.0.N, Addr6, Prefix, Link) with test helpers.
type Host struct {
	*topo.Host
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
	reap(tb)
	id := Suffix()
	lt, err := topo.New(topo.Options{
		Prefix:       Prefix + id + "-",
		UnderlayRole: underlayRole,
		InternetRole: InternetName,
		Hosts:        opts.Hosts,
		IPv6:         opts.IPv6,
		Internet:     opts.Internet,
		MTU:          opts.MTU,
		Created:      recordOwner,
		Removed:      forgetOwner,
	})
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	tb.Cleanup(func() {
		if err := lt.Teardown(); err != nil {
			tb.Errorf("nstest: %v", err)
		}
	})
	tp := &Topology{ID: id, Underlay: lt.Underlay, lt: lt}
	for _, h := range lt.Hosts {
		tp.Hosts = append(tp.Hosts, &Host{h})
	}
	if lt.Internet != nil {
		tp.Internet = &Host{lt.Internet}
	}
	return tp
}

// AddHost adds a host with the next free address on the same underlay,
// removed when tb's test ends.
func (tp *Topology) AddHost(tb testing.TB, name string) *Host {
	tb.Helper()
	lh, err := tp.lt.AddHost(name)
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	tb.Cleanup(func() {
		if err := tp.lt.RemoveHost(lh); err != nil {
			tb.Errorf("nstest: %v", err)
		}
	})
	h := &Host{lh}
	tp.mu.Lock()
	tp.Hosts = append(tp.Hosts, h)
	tp.mu.Unlock()
	return h
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

// recordOwner and forgetOwner keep OwnerDir in step with the namespaces.
func forgetOwner(name string) { os.Remove(filepath.Join(OwnerDir, name)) }

// Handle returns a netlink handle inside the host's namespace, closed at
// cleanup.
func (h *Host) Handle(tb testing.TB) *netlink.Handle {
	tb.Helper()
	nh, err := h.Host.Handle()
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
	if err := h.Host.SetUnderlayUp(up); err != nil {
		tb.Fatalf("nstest: %v", err)
	}
}
