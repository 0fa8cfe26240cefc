package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// The cluster invariant that chaos and soak runs check after every heal:
// for one overlay network, every host's gossip table (its API's remote
// endpoints) and its kernel (FDB and neighbour entries on the VXLAN
// device) hold exactly the live endpoints of the other hosts — none
// missing, none stale. "Live" is what the driver of the run knows exists
// (Expected), confirmed by each owner's agent and by the owner's kernel
// (the address and MAC really are on the container's interface).

// Expected maps a container name to the host it lives on: the containers
// that must have an endpoint on the checked network, and no others.
type Expected map[string]string

// InvariantTimeout bounds each API call and kernel read of one check.
const InvariantTimeout = 5 * time.Second

// clients holds one API client per socket (see AgentClient).
var clients sync.Map

// AgentClient returns the API client for the agent on socket, one per
// socket for the life of the process. Every api.Client has its own
// keep-alive connection pool, and the agent's API server keeps an idle
// connection (a goroutine and a file descriptor) until the client closes
// it: a checker polling with a fresh client each time would leave one
// behind per poll and show up as a leak in the very agent it measures.
func AgentClient(socket string) *api.Client {
	if c, ok := clients.Load(socket); ok {
		return c.(*api.Client)
	}
	c, _ := clients.LoadOrStore(socket, api.NewClient(socket))
	return c.(*api.Client)
}

// endpointKey is one endpoint as the invariant compares it.
type endpointKey struct {
	Container string
	IP        string
	MAC       string
	VTEP      string
}

func (k endpointKey) String() string {
	return fmt.Sprintf("%s %s %s@%s", k.Container, k.IP, k.MAC, k.VTEP)
}

// hostView is one host's view: its agent's endpoints on the network and
// the name of the network's VXLAN device.
type hostView struct {
	host   *HostPlan
	local  []api.Endpoint
	remote []api.Endpoint
	vxlan  string
}

// CheckInvariant checks the invariant for network on every host of the
// lab; nil means it holds. The error lists every difference, one a line.
func (p *Plan) CheckInvariant(ctx context.Context, network string, want Expected) error {
	views := make([]hostView, 0, len(p.Hosts))
	var problems []string
	for i := range p.Hosts {
		v, err := p.readView(ctx, &p.Hosts[i], network)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		views = append(views, v)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	live, lp := liveEndpoints(views, want)
	problems = append(problems, lp...)
	for _, v := range views {
		problems = append(problems, tableDiff(v, live)...)
		problems = append(problems, kernelDiff(v, live)...)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// readView asks h's agent for its endpoints and network devices.
func (p *Plan) readView(ctx context.Context, h *HostPlan, network string) (hostView, error) {
	v := hostView{host: h}
	ctx, cancel := context.WithTimeout(ctx, InvariantTimeout)
	defer cancel()
	c := AgentClient(h.Socket)
	nets, err := c.Networks(ctx)
	if err != nil {
		return v, fmt.Errorf("%s: read networks: %w", h.Name, err)
	}
	for _, n := range nets {
		if n.Name == network {
			v.vxlan = n.VXLAN
		}
	}
	if v.vxlan == "" {
		return v, fmt.Errorf("%s: no overlay network %q with a VXLAN device", h.Name, network)
	}
	eps, err := c.Endpoints(ctx, network)
	if err != nil {
		return v, fmt.Errorf("%s: read endpoints: %w", h.Name, err)
	}
	for _, ep := range eps {
		if ep.Network != network {
			continue
		}
		if ep.Local {
			v.local = append(v.local, ep)
		} else {
			v.remote = append(v.remote, ep)
		}
	}
	return v, nil
}

// liveEndpoints returns the live endpoints, keyed by owner host, from the
// owners' own reports, and the problems with them: an expected container
// its owner does not report, one it reports that is not expected, one
// whose kernel interface disagrees.
func liveEndpoints(views []hostView, want Expected) (map[string][]endpointKey, []string) {
	live := map[string][]endpointKey{}
	var problems []string
	seen := map[string]bool{}
	for _, v := range views {
		for _, ep := range v.local {
			seen[ep.Container] = true
			if want[ep.Container] != v.host.Name {
				problems = append(problems, fmt.Sprintf("%s: has local endpoint of %s, which should not be there", v.host.Name, ep.Container))
				continue
			}
			if err := confirmInterface(ep); err != nil {
				problems = append(problems, fmt.Sprintf("%s: local endpoint %s: %v", v.host.Name, ep.Container, err))
				continue
			}
			live[v.host.Name] = append(live[v.host.Name], endpointKey{ep.Container, ep.IP, strings.ToLower(ep.MAC), v.host.Address.String()})
		}
	}
	for name, host := range want {
		if !seen[name] {
			problems = append(problems, fmt.Sprintf("%s: no local endpoint of %s", host, name))
		}
	}
	return live, append(problems, duplicateIPs(live)...)
}

// duplicateIPs reports every address two live endpoints hold: a conflict
// (the same address handed out on both sides of a partition) counts as a
// violation until it is resolved (the loser renumbered or removed), since
// at most one of the two can be reached.
func duplicateIPs(live map[string][]endpointKey) []string {
	holders := map[string][]string{}
	for host, eps := range live {
		for _, k := range eps {
			holders[k.IP] = append(holders[k.IP], k.Container+"@"+host)
		}
	}
	var out []string
	for ip, hs := range holders {
		if len(hs) > 1 {
			sort.Strings(hs)
			out = append(out, fmt.Sprintf("duplicate address %s: %s (conflict not resolved)", ip, strings.Join(hs, " and ")))
		}
	}
	sort.Strings(out)
	return out
}

// LocalIPs returns each container's address on network as its own agent
// reports it (a renumbered container's new one).
func (p *Plan) LocalIPs(ctx context.Context, network string) (map[string]string, error) {
	out := map[string]string{}
	for i := range p.Hosts {
		v, err := p.readView(ctx, &p.Hosts[i], network)
		if err != nil {
			return nil, err
		}
		for _, ep := range v.local {
			out[ep.Container] = ep.IP
		}
	}
	return out, nil
}

// confirmInterface checks that ep's address and MAC are on its interface
// in its namespace.
func confirmInterface(ep api.Endpoint) error {
	if ep.Netns == "" || ep.Interface == "" {
		return errors.New("no namespace or interface reported")
	}
	nh, err := netnsutil.Open(ep.Netns)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", ep.Netns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return fmt.Errorf("netlink in %q: %w", ep.Netns, err)
	}
	defer h.Close()
	l, err := h.LinkByName(ep.Interface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ep.Interface, ep.Netns, err)
	}
	if !strings.EqualFold(l.Attrs().HardwareAddr.String(), ep.MAC) {
		return fmt.Errorf("%s in %s has MAC %s, agent says %s", ep.Interface, ep.Netns, l.Attrs().HardwareAddr, ep.MAC)
	}
	addrs, err := nlsafe.Dump(func() ([]netlink.Addr, error) { return h.AddrList(l, unix.AF_INET) })
	if err != nil {
		return fmt.Errorf("list addresses of %s in %s: %w", ep.Interface, ep.Netns, err)
	}
	for _, a := range addrs {
		if a.IP.String() == ep.IP {
			return nil
		}
	}
	return fmt.Errorf("%s in %s lacks %s", ep.Interface, ep.Netns, ep.IP)
}

// remoteWant is what host v must see: every live endpoint not its own.
func remoteWant(v hostView, live map[string][]endpointKey) []endpointKey {
	var out []endpointKey
	for host, eps := range live {
		if host != v.host.Name {
			out = append(out, eps...)
		}
	}
	return out
}

// tableDiff compares v's gossip table (its API's remote endpoints) with
// the live endpoints of the other hosts.
func tableDiff(v hostView, live map[string][]endpointKey) []string {
	var have []string
	for _, ep := range v.remote {
		have = append(have, endpointKey{ep.Container, ep.IP, strings.ToLower(ep.MAC), ep.VTEP}.String())
	}
	var want []string
	for _, k := range remoteWant(v, live) {
		want = append(want, k.String())
	}
	return setDiff(v.host.Name+": gossip table", want, have)
}

// kernelDiff compares v's FDB and neighbour entries on the VXLAN device
// with the live endpoints of the other hosts.
func kernelDiff(v hostView, live map[string][]endpointKey) []string {
	fdb, flood, neigh, err := readVXLAN(v.host.Netns, v.vxlan)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", v.host.Name, err)}
	}
	var wantFDB, wantNeigh, wantFlood []string
	floods := map[string]bool{}
	for _, k := range remoteWant(v, live) {
		wantFDB = append(wantFDB, k.MAC+" dst "+k.VTEP)
		wantNeigh = append(wantNeigh, k.IP+" lladdr "+k.MAC)
		if !floods[k.VTEP] {
			floods[k.VTEP] = true
			wantFlood = append(wantFlood, "00:00:00:00:00:00 dst "+k.VTEP)
		}
	}
	out := setDiff(v.host.Name+": fdb on "+v.vxlan, wantFDB, fdb)
	out = append(out, setDiff(v.host.Name+": flood list on "+v.vxlan, wantFlood, flood)...)
	return append(out, setDiff(v.host.Name+": neighbours on "+v.vxlan, wantNeigh, neigh)...)
}

// readVXLAN reads dev's unicast FDB entries with a remote destination
// ("MAC dst VTEP"), its flood entries and its permanent IPv4 neighbour
// entries ("IP lladdr MAC") in the named namespace.
func readVXLAN(ns, dev string) (fdb, flood, neigh []string, err error) {
	nh, err := netnsutil.Open(ns)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open netns %q: %w", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("netlink in %q: %w", ns, err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("find %s: %w", dev, err)
	}
	fdbs, err := nlsafe.Dump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, unix.AF_BRIDGE) })
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list fdb of %s: %w", dev, err)
	}
	for _, n := range fdbs {
		if n.Flags&netlink.NTF_SELF == 0 || n.IP == nil {
			continue
		}
		e := n.HardwareAddr.String() + " dst " + n.IP.String()
		if slices.Equal(n.HardwareAddr, net.HardwareAddr{0, 0, 0, 0, 0, 0}) {
			flood = append(flood, e)
		} else {
			fdb = append(fdb, e)
		}
	}
	ns4, err := nlsafe.Dump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, unix.AF_INET) })
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list neighbours of %s: %w", dev, err)
	}
	for _, n := range ns4 {
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		neigh = append(neigh, n.IP.String()+" lladdr "+n.HardwareAddr.String())
	}
	return fdb, flood, neigh, nil
}

// setDiff says what of want is missing from have and what of have is not
// wanted (stale), one line each, prefixed with what.
func setDiff(what string, want, have []string) []string {
	w := map[string]int{}
	for _, s := range want {
		w[s]++
	}
	h := map[string]int{}
	for _, s := range have {
		h[s]++
	}
	var out []string
	for s, n := range w {
		if h[s] < n {
			out = append(out, fmt.Sprintf("%s: missing %s", what, s))
		}
	}
	for s, n := range h {
		if w[s] < n {
			if n > 1 {
				out = append(out, fmt.Sprintf("%s: stale or duplicate %s (%d times)", what, s, n))
			} else {
				out = append(out, fmt.Sprintf("%s: stale %s", what, s))
			}
		}
	}
	sort.Strings(out)
	return out
}

// ConvergeInvariant polls CheckInvariant until it holds or timeout passes and
// returns how long that took, or the last difference.
func (p *Plan) ConvergeInvariant(ctx context.Context, network string, want Expected, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := p.CheckInvariant(ctx, network, want)
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(start), fmt.Errorf("not converged after %s:\n%w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
