// Package dnsstep wires the embedded DNS server (agent/dns) into the
// agent's loop as a step (see docs/dns.md, "In the agent").
package dnsstep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// DefaultGoneFor is how long the name of a container that went away (here
// or on another host) keeps answering NXDOMAIN instead of being forwarded
// upstream.
const DefaultGoneFor = 30 * time.Second

// Server is the part of the embedded DNS server (*dns.Server) the DNS
// step drives; tests replace it.
type Server interface {
	Attach(netns string, view dns.View) error
	AttachAddr(key string, addr netip.Addr, allow netip.Prefix, view dns.View) error
	Detach(netns string) error
	Attached() []string
	Stats() dns.Stats
	Close() error
}

// Step wires the embedded DNS server into the loop (see docs/dns.md,
// "In the agent"):
//
//   - Prepare detaches every namespace that no container with DNS wants
//     any more, before the bridge step deletes it: an open socket keeps a
//     namespace (and with it its interfaces) alive after its name is gone.
//     It attaches existing namespaces without a listener at once (the
//     restart case), before the bridge step re-reads the kernel.
//   - Apply computes each container's view from the local containers and
//     the other hosts' overlay endpoints (Desired.Remote, filled by the
//     overlay step's Prepare) and attaches or updates it.
//   - Cleanup detaches everything (--cleanup-on-exit; it runs before the
//     bridge cleanup deletes the namespaces).
//
// A container gets DNS when it has a namespace of its own and at least one
// network: mode none has none (as in Docker), mode container:X shares X's.
type Step struct {
	srv     Server
	log     *slog.Logger
	goneFor time.Duration
	now     func() time.Time

	mu      sync.Mutex
	gone    map[string]time.Time // name -> when it went away
	lastEps []dns.Endpoint       // the endpoints the last trackGone saw

	// memoMu serialises attach (a pass and a gossip refresh may overlap)
	// and guards the memo of what each listener was given (memo.go).
	memoMu     sync.Mutex
	memos      map[string]memo
	lastShared shared
	sharedGen  uint64
	gwMemos    map[string]gwMemo // gateway listener key -> its view's input
}

// New returns the DNS step driving srv.
func New(srv Server, log *slog.Logger) *Step {
	return &Step{srv: srv, log: log, goneFor: DefaultGoneFor, now: time.Now, gone: map[string]time.Time{}, memos: map[string]memo{}}
}

// Name names the step in logs.
func (s *Step) Name() string { return "dns" }

// Order implements pass.Step: last, so Prepare sees Desired.Remote and
// Cleanup runs before the bridge cleanup deletes the namespaces.
func (s *Step) Order() int { return pass.OrderDNS }

// dnsWanted returns the containers that get the embedded DNS server, by
// namespace.
func dnsWanted(d *pass.Desired) map[string]*pass.ContainerView {
	out := map[string]*pass.ContainerView{}
	for _, v := range d.Containers {
		if wantsDNS(v) {
			out[v.Netns] = v
		}
	}
	return out
}

// wantsDNS reports whether v is attached in a namespace of its own with at
// least one network (a host-placed one is Docker's: it runs its own
// resolver).
func wantsDNS(v *pass.ContainerView) bool {
	return hasNames(v) && !resolvesItself(v) && !v.HostPlaced()
}

// hasNames reports whether v's names are answered to others: a container
// in a namespace of its own with at least one network, also one whose
// runtime resolves for it.
func hasNames(v *pass.ContainerView) bool {
	return v.Err == nil && v.Joins == "" && v.Netns != "" && len(v.Interfaces) > 0
}

// resolvesItself reports whether v's runtime runs its own resolver
// (Docker's 127.0.0.11, dns_mode none): no listener of ours in its
// namespace, which is the runtime's and may be visible only to it.
func resolvesItself(v *pass.ContainerView) bool {
	return v.IsAttached() && !slices.ContainsFunc(v.Attached, func(r api.AttachRequest) bool { return r.DNSMode != api.DNSNone })
}

// Prepare detaches the namespaces that lose DNS in this pass, before the
// bridge step may delete them. It also attaches the containers whose
// namespace exists but has no listener yet: after an agent restart that is
// every container, and answering before the bridge step has re-read the
// kernel shortens the restart gap (see docs/dns.md). Errors there are left
// to Apply, which runs once the bridge step made the namespaces.
func (s *Step) Prepare(d *pass.Desired) error {
	want := dnsWanted(d)
	err := s.detachUnwanted(want, "container removed or without networks")
	attached := map[string]bool{}
	for _, ns := range s.srv.Attached() {
		attached[ns] = true
	}
	filter := func(v *pass.ContainerView) bool { return !attached[v.Netns] && netnsutil.Exists(v.Netns) }
	if !slices.ContainsFunc(d.Containers, func(v *pass.ContainerView) bool { return want[v.Netns] == v && filter(v) }) {
		return err // nothing to attach early: spare the endpoint list
	}
	eps := dnsEndpoints(d)
	if early := s.attach(d, want, filter, eps, s.trackGone(eps)); early != nil {
		s.log.Debug("dns not attached before the bridge step; retried after it", "err", early)
	}
	return err
}

func (s *Step) detachUnwanted(want map[string]*pass.ContainerView, why string) error {
	var errs []error
	for _, ns := range s.srv.Attached() {
		if want[ns] != nil || isGatewayKey(ns) {
			continue
		}
		if err := s.srv.Detach(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("detached dns", "netns", ns, "reason", why)
	}
	return errors.Join(errs...)
}

// Apply attaches every container that wants DNS with its current view.
func (s *Step) Apply(ctx context.Context, d *pass.Desired) error {
	want := dnsWanted(d)
	eps := dnsEndpoints(d)
	gone := s.trackGone(eps)
	err := errors.Join(s.detachUnwanted(want, "container removed or without networks"), s.attach(d, want, nil, eps, gone))
	s.gatewaysFrom(d, eps, gone)
	return err
}

// attach attaches (or updates the view of) the wanted containers that
// pass filter (nil: all), with the endpoints of d (dnsEndpoints) and the
// names gone (trackGone). A namespace that does not exist is skipped: the
// bridge step has not made it (yet), and says why.
func (s *Step) attach(d *pass.Desired, want map[string]*pass.ContainerView, filter func(*pass.ContainerView) bool, eps []dns.Endpoint, gone []string) error {
	var errs []error
	subnets := make([]netip.Prefix, 0, len(d.Config.Networks))
	for _, n := range d.Config.Networks {
		for _, p := range []netip.Prefix{n.Subnet, n.Subnet6} {
			if p.IsValid() {
				subnets = append(subnets, p.Masked())
			}
		}
	}
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	s.noteShared(shared{eps, gone, subnets})
	views := dns.NewViews(eps, gone, subnets)
	attached := map[string]bool{}
	for _, ns := range s.srv.Attached() {
		attached[ns] = true
	}
	for ns := range s.memos {
		if !attached[ns] {
			delete(s.memos, ns)
		}
	}
	for _, v := range d.Containers {
		if want[v.Netns] != v || (filter != nil && !filter(v)) {
			continue
		}
		in := viewInput(v, eps, gone, subnets)
		m, same := s.unchanged(v.Netns, in, attached)
		if same {
			continue
		}
		delete(s.memos, v.Netns)
		err := s.srv.Attach(v.Netns, views.View(in))
		if err == nil {
			s.memos[v.Netns] = m
		}
		if errors.Is(err, netnsutil.ErrNotExist) {
			s.log.Debug("no namespace to attach dns to yet", "container", v.Spec.Name, "netns", v.Netns)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("container %q: %w", v.Spec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Refresh swaps the views of the containers already attached, from d (the
// last pass's containers with a newer gossip table). It never attaches or
// detaches: that is the pass's work, which follows.
func (s *Step) Refresh(d *pass.Desired) {
	attached := map[string]bool{}
	for _, ns := range s.srv.Attached() {
		attached[ns] = true
	}
	eps := dnsEndpoints(d)
	gone := s.trackGone(eps)
	if err := s.attach(d, dnsWanted(d), func(v *pass.ContainerView) bool { return attached[v.Netns] }, eps, gone); err != nil {
		s.log.Debug("dns views not refreshed from gossip; the next pass retries", "err", err)
	}
	s.gatewaysFrom(d, eps, gone)
}

// Cleanup detaches every namespace.
func (s *Step) Cleanup(ctx context.Context) error {
	return errors.Join(s.syncGateways(nil, nil, nil, nil), s.detachUnwanted(nil, "cleanup on exit"))
}

// viewInput is what ComputeView needs for container v.
func viewInput(v *pass.ContainerView, eps []dns.Endpoint, gone []string, subnets []netip.Prefix) dns.ViewInput {
	c := &v.Spec
	in := dns.ViewInput{
		Networks:  slices.Clone(c.Networks),
		Hostname:  c.HostnameOrName(),
		Endpoints: eps,
		Gone:      gone,
		Subnets:   subnets,
		Search:    slices.Clone(c.DNSSearch),
	}
	for _, ifc := range v.Interfaces {
		in.SelfAddrs = append(in.SelfAddrs, pass.IfAddrs(ifc)...)
	}
	for _, h := range c.ExtraHosts {
		in.ExtraHosts = append(in.ExtraHosts, dns.HostEntry{Name: h.Name, Addr: h.IP})
	}
	for _, a := range c.DNS {
		in.Upstreams = append(in.Upstreams, netip.AddrPortFrom(a, 53))
	}
	return in
}

// dnsEndpoints lists every endpoint a container of this host may see: the
// local containers on every network, and the other hosts' containers on
// overlay networks (a bridge or macvlan network of the same name on
// another host is another network).
func dnsEndpoints(d *pass.Desired) []dns.Endpoint {
	var out []dns.Endpoint
	for _, v := range d.Containers {
		if !hasNames(v) {
			continue
		}
		for _, ifc := range v.Interfaces {
			out = append(out, dns.Endpoint{Container: v.Spec.Name, Network: ifc.Network, Aliases: v.Spec.Aliases, Addrs: pass.IfAddrs(ifc)})
		}
	}
	for _, r := range d.Remote {
		n := d.Config.NetworkByName(r.Network)
		if n == nil || n.Driver != config.DriverOverlay || !r.IP.IsValid() {
			continue
		}
		ep := dns.Endpoint{Container: r.Container, Network: r.Network, Addrs: []netip.Addr{r.IP}}
		for _, name := range r.Names {
			if name != r.Container {
				ep.Aliases = append(ep.Aliases, name)
			}
		}
		out = append(out, ep)
	}
	return out
}

// trackGone remembers the names of containers that disappeared (locally or
// from gossip) and returns those that went away less than goneFor ago.
// A name that comes back is no longer gone.
func (s *Step) trackGone(eps []dns.Endpoint) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if endpointsEqual(eps, s.lastEps) {
		// The same names as last time (every resync pass at 10,000
		// endpoints): only the gone ones expire.
		return s.expireGone(now, nil)
	}
	names := make(map[string]bool, 2*len(eps))
	epNames(eps, func(n string) { names[n] = true })
	// The names of the last endpoints are made again from them rather
	// than kept: a set of 20,000 names at 10,000 endpoints, for the rare
	// pass in which the endpoints change.
	epNames(s.lastEps, func(n string) {
		if !names[n] {
			s.gone[n] = now
		}
	})
	s.lastEps = eps
	return s.expireGone(now, names)
}

// epNames calls fn with every name of eps: each container name and alias,
// alone and qualified with the network.
func epNames(eps []dns.Endpoint, fn func(string)) {
	for _, ep := range eps {
		fn(ep.Container)
		fn(ep.Container + "." + ep.Network)
		for _, a := range ep.Aliases {
			fn(a)
			fn(a + "." + ep.Network)
		}
	}
}

// expireGone forgets the gone names that came back (in names) or went
// long enough ago, and returns the others, sorted (under s.mu).
func (s *Step) expireGone(now time.Time, names map[string]bool) []string {
	var out []string
	for n, at := range s.gone {
		if names[n] || now.Sub(at) >= s.goneFor {
			delete(s.gone, n)
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// endpointsEqual compares two endpoint lists in order (faster than
// reflect.DeepEqual on 10,000 of them).
func endpointsEqual(a, b []dns.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y dns.Endpoint) bool {
		return x.Container == y.Container && x.Network == y.Network && slices.Equal(x.Aliases, y.Aliases) && slices.Equal(x.Addrs, y.Addrs)
	})
}

// Stats returns the server's counters for the API.
func (s *Step) Stats() api.DNSStats {
	st := s.srv.Stats()
	return api.DNSStats{
		Attached: len(s.srv.Attached()), Queries: st.Queries, Local: st.Local, NXDomain: st.NXDomain,
		Forwarded: st.Forwarded, Failed: st.Failed, Rejected: st.Rejected, Dropped: st.Dropped, TCPRetries: st.TCPRetries,
	}
}

// Collector exports the server's counters to Prometheus, when it has them.
func (s *Step) Collector() prometheus.Collector {
	if c, ok := s.srv.(interface{ Collector() prometheus.Collector }); ok {
		return c.Collector()
	}
	return nil
}

// Attached lists the namespaces the server listens in.
func (s *Step) Attached() []string { return s.srv.Attached() }

// Close closes the server: its listeners die with the agent.
func (s *Step) Close() error { return s.srv.Close() }
