package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// PortState is what state.json keeps about published ports.
type PortState struct {
	// Assignments are the host ports of the bindings (portmap.Binding.Key
	// → port), replayed as Allocator.Previous so random ports stay the same
	// across restarts and reloads.
	Assignments map[string]uint16 `json:"assignments,omitempty"`
	// Applied are the mappings whose rules the last pass put in force, so
	// the next pass, in this agent or a restarted one, knows which mappings
	// went away (their conntrack entries are flushed) and which are new.
	Applied []portmap.Mapping `json:"applied,omitempty"`
}

// portKernel is what the ports step needs of the host namespace.
type portKernel interface {
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

// nsPorts is the real portKernel of one namespace (netns.None(): the
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

// portView is one container's published ports after a pass.
type portView struct {
	mappings []portmap.Mapping
	err      error
}

// portStep publishes container ports (`-p`, `-P`): its Prepare assigns
// host ports for every container at once and puts portmap's chains in
// Desired.Bridge.Ports, so the bridge step syncs them with the rest of the
// firewall in one transaction; its Apply flushes the conntrack entries of
// mappings that went away and the stale UDP entries of new ones, once the
// rules are in force.
type portStep struct {
	a   *Agent
	k   portKernel
	log *slog.Logger

	mu       sync.Mutex
	prepared *Desired       // the Desired res belongs to
	res      portmap.Result // of the last Prepare
	current  map[string]portView
	refused  map[string]string // container → error text last logged
}

// newPortStep returns the ports step of a; it opens a handle on the host
// namespace, released by a.Close.
func newPortStep(a *Agent) (*portStep, error) {
	h := netns.None()
	if a.opts.HostNetns != "" {
		var err error
		if h, err = netnsutil.Open(a.opts.HostNetns); err != nil {
			return nil, fmt.Errorf("ports: %w", err)
		}
		a.closers = append(a.closers, func() { h.Close() })
	}
	return &portStep{a: a, k: nsPorts{h}, log: a.log, current: map[string]portView{}, refused: map[string]string{}}, nil
}

// Name implements Step.
func (s *portStep) Name() string { return "ports" }

// portContainers lists every container of d, in order, as portmap sees it.
// A container that cannot be attached is listed without networks, so its
// ports stay reserved for it (Expand fails, Allocate holds its previous
// ports); skip names such containers, whose error is not about ports.
func portContainers(d *Desired) (cs []portmap.Container, skip map[string]bool) {
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
			att := portmap.Attachment{Network: ifc.Network, IP: ifc.Addr.Addr()}
			if n := d.Config.NetworkByName(ifc.Network); n != nil {
				bn := bridgeNetwork(n)
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
func (s *portStep) allocate(cs []portmap.Container, prev map[string]uint16) (portmap.Result, error) {
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

// publishes reports whether any container asks for a port.
func publishes(cs []portmap.Container) bool {
	return slices.ContainsFunc(cs, func(c portmap.Container) bool {
		return len(c.Publish) > 0 || (c.PublishAll && len(c.Expose) > 0)
	})
}

// Prepare implements Step.
func (s *portStep) Prepare(d *Desired) error {
	cs, skip := portContainers(d)
	s.a.mu.Lock()
	prev := maps.Clone(s.a.state.Ports.Assignments)
	applied := slices.Clone(s.a.state.Ports.Applied)
	s.a.mu.Unlock()

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
		nat, filter := portmap.Rules(keep)
		d.Bridge.Ports = bridge.PortChains{NAT: nat, Filter: filter}
		s.mu.Lock()
		s.prepared, s.res = d, portmap.Result{Mappings: keep, Errors: map[string]error{}}
		s.mu.Unlock()
		return fmt.Errorf("read the host's sockets and addresses: %w", err)
	}
	for name := range skip {
		delete(res.Errors, name)
	}
	nat, filter := portmap.Rules(res.Mappings)
	d.Bridge.Ports = bridge.PortChains{NAT: nat, Filter: filter}

	s.mu.Lock()
	s.prepared, s.res = d, res
	s.mu.Unlock()
	s.logRefused(res.Errors)

	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	if maps.Equal(s.a.state.Ports.Assignments, res.Assignments) {
		return nil
	}
	s.a.state.Ports.Assignments = res.Assignments
	return s.a.state.save(s.a.cfg.StateDir)
}

// logRefused logs each container whose ports are refused once per
// distinct reason, and when it is refused no more.
func (s *portStep) logRefused(errs map[string]error) {
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
func (s *portStep) Apply(ctx context.Context, d *Desired) error {
	s.mu.Lock()
	if s.prepared != d {
		s.mu.Unlock()
		return errors.New("apply without prepare")
	}
	res := s.res
	cur := map[string]portView{}
	for _, m := range res.Mappings {
		v := cur[m.Container]
		v.mappings = append(v.mappings, m)
		cur[m.Container] = v
	}
	for name, err := range res.Errors {
		cur[name] = portView{err: err}
	}
	s.current = cur
	s.mu.Unlock()

	s.a.mu.Lock()
	old := slices.Clone(s.a.state.Ports.Applied)
	s.a.mu.Unlock()
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
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	s.a.state.Ports.Applied = slices.Clone(res.Mappings)
	return s.a.state.save(s.a.cfg.StateDir)
}

// inForce reports whether the DNAT chain holds the rules d wants.
func (s *portStep) inForce(d *Desired) (bool, error) {
	var want []string
	for _, c := range d.Bridge.Ports.NAT {
		if c.Name == portmap.ChainDNAT {
			for _, r := range c.Rules {
				want = append(want, "-A "+c.Name+" "+r)
			}
		}
	}
	have, err := s.a.br.IPT.Rules("nat", portmap.ChainDNAT)
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

func removedReason(m portmap.Mapping, d *Desired, res portmap.Result) string {
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

func addedReason(m portmap.Mapping, old []portmap.Mapping, d *Desired) string {
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
func (s *portStep) Cleanup(ctx context.Context) error {
	s.a.mu.Lock()
	applied := slices.Clone(s.a.state.Ports.Applied)
	s.a.mu.Unlock()
	if len(applied) == 0 {
		return nil
	}
	if _, err := s.k.FlushConntrack(applied); err != nil {
		return err
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	s.a.state.Ports.Applied = nil
	return s.a.state.save(s.a.cfg.StateDir)
}

// view returns what the last pass published, by container.
func (s *portStep) view() map[string]portView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.current)
}

// checkRun reports, as an *httpError, why run-time container name (in d,
// built with it) cannot have its ports next to everybody else's: 409 when
// another container or a host process holds a port it asks for, 400 when
// its entries cannot work by themselves. Called under a.mu, with the
// assignments in force.
func (s *portStep) checkRun(d *Desired, name string, prev map[string]uint16) error {
	cs, _ := portContainers(d)
	i := slices.IndexFunc(cs, func(c portmap.Container) bool { return c.Name == name })
	if i < 0 || !publishes(cs[i:i+1]) {
		return nil
	}
	res, err := s.allocate(cs, prev)
	if err != nil {
		return herr(http.StatusInternalServerError, "container %q: publish ports: %v", name, err)
	}
	err = res.Errors[name]
	if err == nil {
		return nil
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
	return herr(code, "container %q: %s", name, joinLines(err))
}

// apiPorts converts mappings for the API.
func apiPorts(ms []portmap.Mapping) []api.PortMapping {
	out := make([]api.PortMapping, 0, len(ms))
	for _, m := range ms {
		p := api.PortMapping{Proto: m.Proto, HostPort: m.HostPort, ContainerIP: m.ContainerIP.String(), ContainerPort: m.ContainerPort}
		if m.HostIP.IsValid() {
			p.HostIP = m.HostIP.String()
		}
		out = append(out, p)
	}
	return out
}

// hPorts serves GET /v1/containers/{name}/ports.
func (a *Agent) hPorts(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	name := r.PathValue("name")
	if s.d.Container(name) == nil {
		writeErr(w, http.StatusNotFound, "container %q not found", name)
		return
	}
	pv := s.ports[name]
	out := api.Ports{Container: name, Ports: apiPorts(pv.mappings)}
	if pv.err != nil {
		out.Error = joinLines(pv.err)
	}
	writeJSON(w, http.StatusOK, out)
}
