// Package portstep is the agent's step of published ports (`-p`, `-P`):
// its Prepare assigns host ports for every container at once
// (bridge/portmap decides) and puts portmap's chains in
// Desired.Bridge.Ports, so the bridge step syncs them with the rest of
// the firewall in one transaction; its Apply flushes the conntrack entries
// of mappings that went away and the stale UDP entries of new ones, once
// the rules are in force. Host port choices live in State.Ports.
package portstep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Kernel is what the ports step needs of the host namespace.
type Kernel interface {
	// Sockets are the listening sockets (portmap.ListeningSockets).
	Sockets() ([]portmap.Socket, error)
	// LocalAddrs are the host's addresses (portmap.LocalAddrs).
	LocalAddrs() ([]netip.Addr, error)
	// PIDOf names the process holding a socket inode, 0 when unknown.
	PIDOf(inode uint64) int
	// FlushConntrack and FlushUnmapped are portmap's, in the host namespace.
	FlushConntrack(removed []portmap.Mapping) (uint, error)
	FlushUnmapped(added []portmap.Mapping) (uint, error)
}

// nsPorts is the real Kernel of one namespace (netns.None(): the
// current one).
type nsPorts struct{ ns netns.NsHandle }

func (k nsPorts) Sockets() ([]portmap.Socket, error) { return portmap.ListeningSockets(k.ns) }
func (k nsPorts) LocalAddrs() ([]netip.Addr, error)  { return portmap.LocalAddrs(k.ns) }
func (k nsPorts) PIDOf(inode uint64) int             { return portmap.PIDOfInode(inode) }
func (k nsPorts) FlushConntrack(ms []portmap.Mapping) (uint, error) {
	return portmap.FlushConntrack(k.ns, ms)
}
func (k nsPorts) FlushUnmapped(ms []portmap.Mapping) (uint, error) {
	return portmap.FlushUnmapped(k.ns, ms)
}

// View is one container's published ports after a pass.
type View struct {
	Mappings []portmap.Mapping
	Err      error
}

// RuleReader reads back the rules of a chain (ipt.Iptables).
type RuleReader interface {
	Rules(table, chain string) ([]string, error)
}

// Step publishes container ports (see the package doc).
type Step struct {
	env pass.Env
	k   Kernel
	ipt RuleReader
	log *slog.Logger

	mu       sync.Mutex
	prepared *pass.Desired  // the Desired res belongs to
	res      portmap.Result // of the last Prepare
	current  map[string]View
	refused  map[string]string // container → error text last logged
}

// New returns the ports step; it opens a handle on the host namespace
// (hostNetns under /run/netns, "" the current one), released by the
// returned close.
func New(env pass.Env, hostNetns string, ipt RuleReader) (s *Step, close func(), err error) {
	h := netns.None()
	close = func() {}
	if hostNetns != "" {
		if h, err = netnsutil.Open(hostNetns); err != nil {
			return nil, nil, fmt.Errorf("ports: %w", err)
		}
		close = func() { h.Close() }
	}
	return NewWith(env, nsPorts{h}, ipt), close, nil
}

// NewWith returns the ports step on kernel k (tests give a fake).
func NewWith(env pass.Env, k Kernel, ipt RuleReader) *Step {
	return &Step{env: env, k: k, ipt: ipt, log: env.Log, current: map[string]View{}, refused: map[string]string{}}
}

// Name implements Step.
func (s *Step) Name() string { return "ports" }

// Order implements Step: first, so the bridge step syncs the chains.
func (s *Step) Order() int { return pass.OrderPorts }

// portContainers lists every container of d, in order, as portmap sees it.
// A container that cannot be attached is listed without networks, so its
// ports stay reserved for it (Expand fails, Allocate holds its previous
// ports); skip names such containers, whose error is not about ports.
func portContainers(d *pass.Desired) (cs []portmap.Container, skip map[string]bool) {
	skip = map[string]bool{}
	seen := map[string]bool{}
	for _, v := range d.Containers {
		name := v.Spec.Name
		if seen[name] {
			continue // a run-time container shadowed by a config one
		}
		seen[name] = true
		c := portmap.Container{Name: name, Publish: v.Spec.Publish, PublishAll: v.Spec.PublishAll, Expose: v.Spec.Expose}
		if v.Err != nil || v.Joins != "" || v.Netns == "" {
			skip[name] = true
			cs = append(cs, c)
			continue
		}
		for _, ifc := range v.Interfaces {
			att := portmap.Attachment{Network: ifc.Network, IP: ifc.Addr.Addr(), IP6: ifc.Addr6.Addr()}
			if n := d.Config.NetworkByName(ifc.Network); n != nil {
				bn := pass.BridgeNetwork(n)
				att.Driver, att.Internal = n.Driver, n.Internal
				if bn.Driver == bridge.DriverBridge {
					att.Bridge = bn.Device
				}
			}
			c.Networks = append(c.Networks, att)
		}
		cs = append(cs, c)
	}
	return cs, skip
}

// allocate assigns host ports to cs with the host's sockets and addresses.
func (s *Step) allocate(cs []portmap.Container, prev map[string]uint16) (portmap.Result, error) {
	// Every binding keeping the port it holds is decided without the
	// host: a held port is never checked against its sockets again. Only
	// when something changes (a new binding, a port moving, an error) are
	// the host's sockets and addresses read (four /proc tables per pass
	// otherwise, with every attach).
	if res := (portmap.Allocator{Previous: prev}).Allocate(cs); len(res.Errors) == 0 && maps.Equal(res.Assignments, prev) {
		return res, nil
	}
	socks, err := s.k.Sockets()
	if err != nil {
		return portmap.Result{}, err
	}
	local, err := s.k.LocalAddrs()
	if err != nil {
		return portmap.Result{}, err
	}
	al := portmap.Allocator{Sockets: socks, Previous: prev, PIDOf: s.k.PIDOf, LocalAddrs: local}
	return al.Allocate(cs), nil
}

// portChains are the chains of ms: IPv4 mappings for iptables, IPv6 ones
// for ip6tables.
func portChains(ms []portmap.Mapping) bridge.PortChains {
	v4, v6 := portmap.SplitFamilies(ms)
	var pc bridge.PortChains
	pc.NAT, pc.Filter = portmap.Rules(v4)
	pc.NAT6, pc.Filter6 = portmap.Rules(v6)
	return pc
}

// publishes reports whether any container asks for a port.
func publishes(cs []portmap.Container) bool {
	return slices.ContainsFunc(cs, func(c portmap.Container) bool {
		return len(c.Publish) > 0 || (c.PublishAll && len(c.Expose) > 0)
	})
}

// Prepare implements Step.
func (s *Step) Prepare(d *pass.Desired) error {
	cs, skip := portContainers(d)
	prev := maps.Clone(d.State.Ports.Assignments)
	applied := slices.Clone(d.State.Ports.Applied)

	var res portmap.Result
	var err error
	if publishes(cs) || len(prev) > 0 {
		res, err = s.allocate(cs, prev)
	} else {
		res = portmap.Result{Errors: map[string]error{}, Assignments: map[string]uint16{}}
	}
	if err != nil {
		// Without the host's sockets no port can be checked: keep what is
		// in force rather than unpublish everything, and retry.
		s.mu.Lock()
		keep := applied
		if s.prepared != nil {
			keep = s.res.Mappings
		}
		s.mu.Unlock()
		d.Bridge.Ports = portChains(keep)
		s.mu.Lock()
		s.prepared, s.res = d, portmap.Result{Mappings: keep, Errors: map[string]error{}}
		s.mu.Unlock()
		return fmt.Errorf("read the host's sockets and addresses: %w", err)
	}
	for name := range skip {
		delete(res.Errors, name)
	}
	d.Bridge.Ports = portChains(res.Mappings)

	s.mu.Lock()
	s.prepared, s.res = d, res
	s.mu.Unlock()
	s.logRefused(res.Errors)

	s.env.Store.Update(func(st *pass.State) {
		if !maps.Equal(st.Ports.Assignments, res.Assignments) {
			st.Ports.Assignments = res.Assignments
		}
	})
	return nil
}

// logRefused logs each container whose ports are refused once per
// distinct reason, and when it is refused no more.
func (s *Step) logRefused(errs map[string]error) {
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		msg := joinLines(errs[name])
		if s.refused[name] != msg {
			s.refused[name] = msg
			s.log.Warn("ports refused; the container publishes nothing", "container", name, "err", msg)
		}
	}
	for name := range s.refused {
		if _, still := errs[name]; !still {
			delete(s.refused, name)
			s.log.Info("ports no longer refused", "container", name)
		}
	}
}

// Apply implements Step: it runs after the bridge step synced the chains.
func (s *Step) Apply(ctx context.Context, d *pass.Desired) error {
	s.mu.Lock()
	if s.prepared != d {
		s.mu.Unlock()
		return errors.New("apply without prepare")
	}
	res := s.res
	cur := map[string]View{}
	for _, m := range res.Mappings {
		v := cur[m.Container]
		v.Mappings = append(v.Mappings, m)
		cur[m.Container] = v
	}
	for name, err := range res.Errors {
		cur[name] = View{Err: err}
	}
	s.current = cur
	s.mu.Unlock()

	var old []portmap.Mapping
	s.env.Store.Read(func(st *pass.State) { old = slices.Clone(st.Ports.Applied) })
	added, removed := diffMappings(old, res.Mappings)
	if len(added) == 0 && len(removed) == 0 {
		return nil
	}
	// Flush only once the rules are in force: a flush before would let the
	// old rules translate the next packet again, or a stale UDP entry come
	// back without the new rule.
	if ok, err := s.inForce(d); err != nil || !ok {
		if err == nil {
			err = errors.New("chain " + portmap.ChainDNAT + " does not hold the wanted rules yet")
		}
		return fmt.Errorf("published ports not in force, conntrack flush postponed: %w", err)
	}
	for _, m := range removed {
		s.log.Info("unpublished port", "container", m.Container, "port", portLine(m), "to", netip.AddrPortFrom(m.ContainerIP, m.ContainerPort), "reason", removedReason(m, d, res))
	}
	for _, m := range added {
		s.log.Info("published port", "container", m.Container, "port", portLine(m), "to", netip.AddrPortFrom(m.ContainerIP, m.ContainerPort), "reason", addedReason(m, old, d))
	}
	var errs []error
	if n, err := s.k.FlushConntrack(removed); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		s.log.Info("flushed conntrack entries of unpublished ports", "entries", n)
	}
	if n, err := s.k.FlushUnmapped(added); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		s.log.Info("flushed untranslated conntrack entries of newly published ports", "entries", n)
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // Applied stays: the next pass tries again
	}
	s.env.Store.Update(func(st *pass.State) { st.Ports.Applied = slices.Clone(res.Mappings) })
	return nil
}

// inForce reports whether the DNAT chain holds the rules d wants.
func (s *Step) inForce(d *pass.Desired) (bool, error) {
	var want []string
	for _, c := range d.Bridge.Ports.NAT {
		if c.Name == portmap.ChainDNAT {
			for _, r := range c.Rules {
				want = append(want, "-A "+c.Name+" "+r)
			}
		}
	}
	have, err := s.ipt.Rules("nat", portmap.ChainDNAT)
	if err != nil {
		return false, err
	}
	return slices.Equal(want, have), nil
}

// diffMappings returns the mappings only in next (added) and only in prev
// (removed).
func diffMappings(prev, next []portmap.Mapping) (added, removed []portmap.Mapping) {
	for _, m := range next {
		if !slices.Contains(prev, m) {
			added = append(added, m)
		}
	}
	for _, m := range prev {
		if !slices.Contains(next, m) {
			removed = append(removed, m)
		}
	}
	return added, removed
}

// portLine is a mapping as `docker port` prints it: "80/tcp -> 0.0.0.0:8080".
func portLine(m portmap.Mapping) string {
	l, _ := portmap.Format([]portmap.Mapping{m}, "")
	return l[0]
}

// sameHostSide reports whether two mappings publish the same container
// port on the same host address and port.
func sameHostSide(a, b portmap.Mapping) bool {
	return a.Container == b.Container && a.Proto == b.Proto && a.ContainerPort == b.ContainerPort && a.HostIP == b.HostIP && a.HostPort == b.HostPort
}

func removedReason(m portmap.Mapping, d *pass.Desired, res portmap.Result) string {
	v := d.Container(m.Container)
	switch {
	case v == nil:
		return "container removed"
	case v.Err != nil:
		return "container cannot be attached"
	case res.Errors[m.Container] != nil:
		return "ports refused"
	case slices.ContainsFunc(res.Mappings, func(n portmap.Mapping) bool { return sameHostSide(m, n) }):
		return "container address changed"
	}
	return "publish entry removed"
}

func addedReason(m portmap.Mapping, old []portmap.Mapping, d *pass.Desired) string {
	switch {
	case slices.ContainsFunc(old, func(n portmap.Mapping) bool { return sameHostSide(m, n) }):
		return "container address changed"
	case slices.ContainsFunc(old, func(n portmap.Mapping) bool { return n.Container == m.Container }):
		return "publish entry added"
	}
	if v := d.Container(m.Container); v != nil && v.Source == api.SourceAPI {
		return "container added through the API"
	}
	return "container in config"
}

// Cleanup implements Step: the bridge cleanup removes the chains; the
// flows they translated are flushed so none outlives them. Assignments
// stay, so an agent started again hands out the same ports.
func (s *Step) Cleanup(ctx context.Context) error {
	var applied []portmap.Mapping
	s.env.Store.Read(func(st *pass.State) { applied = slices.Clone(st.Ports.Applied) })
	if len(applied) == 0 {
		return nil
	}
	if _, err := s.k.FlushConntrack(applied); err != nil {
		return err
	}
	s.env.Store.Update(func(st *pass.State) { st.Ports.Applied = nil })
	return nil
}

// View returns what the last pass published, by container.
func (s *Step) View() map[string]View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.current)
}

// CheckRun reports why run-time container name (in d, built with it)
// cannot have its ports next to everybody else's, with the HTTP status
// the API answers: 409 when another container or a host process holds a
// port it asks for, 400 when its entries cannot work by themselves, 500
// when the host's sockets cannot be read. prev are the assignments in
// force.
func (s *Step) CheckRun(d *pass.Desired, name string, prev map[string]uint16) (int, error) {
	cs, _ := portContainers(d)
	i := slices.IndexFunc(cs, func(c portmap.Container) bool { return c.Name == name })
	if i < 0 || !publishes(cs[i:i+1]) {
		return 0, nil
	}
	res, err := s.allocate(cs, prev)
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("container %q: publish ports: %w", name, err)
	}
	err = res.Errors[name]
	if err == nil {
		return 0, nil
	}
	// Alone on the host, with its own entries only: if it fails there
	// too, the request is bad; otherwise someone else holds the port.
	local, lerr := s.k.LocalAddrs()
	if lerr != nil {
		local = nil
	}
	alone := portmap.Allocator{LocalAddrs: local}.Allocate(cs[i : i+1])
	code := http.StatusConflict
	if alone.Errors[name] != nil {
		code = http.StatusBadRequest
	}
	return code, fmt.Errorf("container %q: %s", name, joinLines(err))
}

func joinLines(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
