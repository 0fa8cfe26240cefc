// Package overlaystep is the agent's overlay step: VXLAN across hosts,
// programmed from gossip, with this host's gossip member and its half of
// the cluster IPAM.
//
// Prepare (before anything is applied) turns every overlay network's bridge
// into a shared gateway (the same MAC, overlay.GatewayMAC, on every host)
// with the MTU the VXLAN device can carry (overlay.MTUFor: the underlay's
// minus 50 or 70 bytes) on the bridge and every container veth; keeps this
// host's block claims (cluster IPAM, ipam.go); and fills Desired.Remote
// with the other hosts' endpoints (remote.go), all from the pass's one
// gossip view (pass.Snapshot.Gossip).
//
// Apply (after the bridge step made the vxb- bridges and veths) makes each
// network's VXLAN device (EnsureDevice), programs its FDB and neighbour
// entries (Sync), clears what local containers and the bridge may cache
// about moved addresses and MACs, deletes the devices of removed networks,
// and finally declares this host's records to gossip (SetLocal): only what
// exists is announced. Nothing is synced or published before gossip is
// ready (pass.GossipView.Ready), so a restarted agent does not replace
// the entries in the kernel with a table it has not received yet.
//
// The fast path (fastSync) is the one exception to "one gossip view per
// pass": a gossip change is programmed at once, from the new table and
// the last pass's local endpoints, and a pass follows.
//
// A netlink watcher on the devices triggers a pass when they change; a pass
// it started that changes something is logged as a repair.
package overlaystep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/overlay"
)

// Step is the step of overlay networks.
type Step struct {
	env    pass.Env
	log    *slog.Logger
	h      *overlay.Handle // nil: no kernel (tests on a stub kernel)
	ns     netns.NsHandle  // the host namespace, for the watcher
	gossip *gossipSource   // nil: no cluster (no host address)
	settle time.Duration

	closers []func()

	watcher *overlay.Watcher
	woken   atomic.Bool // the watcher fired since the last Apply

	// OnRemote, when set, gets the last pass's value with the remote
	// endpoints of a newer gossip table (the fast path): the DNS step
	// refreshes its views with it.
	OnRemote func(d *pass.Desired)
	// Metrics, when set (before Start), gets the step's kernel writes,
	// drift repairs and convergence lags.
	Metrics Recorder
	lag     lagTracker
	// Fault, when set (crash tests, agent.FaultEnv), is called at
	// FaultMidFDBSync.
	Fault func(point string)

	// applyMu serializes kernel writes of Apply and of the fast path
	// (fastSync), which programs a gossip change without waiting for a
	// whole pass.
	applyMu sync.Mutex

	fullMu sync.Mutex
	full   map[string]bool // networks whose blocks are all full

	mu          sync.Mutex
	loaded      bool
	claims      map[string][]pass.OverlayClaim
	last        map[string]netip.Addr
	settleT     *time.Timer
	mtu         map[string]int
	status      map[string]*overlayNetStatus
	logged      map[string]bool // refused entries already logged (logOnce)
	conflictLog map[string]bool // conflicts standing at the last pass, logged
	attached    map[string]bool // "network/mac" of local endpoints seen attached
	notes       map[epKey]string
	resolved    resolveCache // the last resolution, reused while its inputs stand
	lastRemote  []pass.RemoteEndpoint
	lastD       *pass.Desired                     // the last Apply's value, for the fast path
	fastView    *pass.GossipView                  // the newest view the fast path programmed
	seen        map[string]map[netip.Addr]seenMAC // network -> address -> MAC (remapped)
	settled     map[string]bool                   // network -> the last pass changed nothing

	// yieldLog holds, per family key, the address yields logged and still
	// standing (ipam.go).
	yieldLog map[string]map[string]bool
}

// overlayNetStatus is what the last pass did on one overlay network.
type overlayNetStatus struct {
	Device     string
	VNI        uint32
	Port       int
	MTU        int
	Remote     int // remote endpoints wanted
	Expected   int // kernel entries wanted
	Programmed int // kernel entries in place after the last sync
	Synced     bool
	Err        string
}

func newStep(env pass.Env, h *overlay.Handle, ns netns.NsHandle, g *gossipSource, settle time.Duration) *Step {
	if settle <= 0 {
		settle = DefaultIPAMSettle
	}
	s := &Step{
		env: env, log: env.Log, h: h, ns: ns, gossip: g, settle: settle,
		full:   map[string]bool{},
		claims: map[string][]pass.OverlayClaim{}, last: map[string]netip.Addr{},
		mtu: map[string]int{}, status: map[string]*overlayNetStatus{},
		logged: map[string]bool{}, attached: map[string]bool{}, notes: map[epKey]string{},
		seen: map[string]map[netip.Addr]seenMAC{}, settled: map[string]bool{},
	}
	if h != nil {
		s.watcher = overlay.NewWatcher(ns)
		s.watcher.Log = env.Log.With("component", "overlay")
	}
	return s
}

// Name implements Step.
func (s *Step) Name() string { return "overlay" }

// Order implements pass.Step: after the ports, before every consumer of
// Desired.Remote.
func (s *Step) Order() int { return pass.OrderOverlay }

// run runs the watcher until ctx is done.
func (s *Step) run(ctx context.Context) {
	if s.watcher == nil {
		return
	}
	go s.watcher.Run(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.watcher.C():
			s.woken.Store(true)
			s.env.Trigger()
		}
	}
}

// loadLocked reads the persisted claims once (under s.mu).
func (s *Step) loadLocked(st *pass.State) {
	if s.loaded || st == nil {
		return
	}
	s.loaded = true
	if st.Overlay == nil {
		return
	}
	for n, cs := range st.Overlay.Claims {
		s.claims[n] = slices.Clone(cs)
	}
	for n, a := range st.Overlay.Last {
		s.last[n] = a
	}
}

// Networks are the config's overlay networks.
func Networks(cfg *config.Config) []*config.Network {
	var out []*config.Network
	for i := range cfg.Networks {
		if cfg.Networks[i].Driver == config.DriverOverlay {
			out = append(out, &cfg.Networks[i])
		}
	}
	return out
}

// Device is the VXLAN device of overlay network n on this host.
func Device(cfg *config.Config, n *config.Network) overlay.Device {
	return overlay.Device{
		Name: n.Name, VNI: n.VNI, Local: cfg.Host.Address, Port: n.VXLANPort,
		MTU: n.MTU, Bridge: pass.BridgeNetwork(n).Device,
	}
}

// localEndpoints lists this host's endpoints on overlay networks, with the
// MACs of the interfaces that exist (macs: the bridge record's).
func localEndpoints(d *pass.Desired, macs map[string]string) []localEndpoint {
	var out []localEndpoint
	for _, v := range d.Containers {
		if v.Err != nil || v.Netns == "" || v.Joins != "" {
			continue
		}
		for _, ifc := range v.Interfaces {
			n := d.Config.NetworkByName(ifc.Network)
			if n == nil || n.Driver != config.DriverOverlay {
				continue
			}
			// One record per address (both families), same MAC: gossip keys
			// endpoints by (network, IP).
			for _, ip := range pass.IfAddrs(ifc) {
				l := localEndpoint{
					Network: ifc.Network, Container: v.Spec.Name, Netns: v.Netns, IfName: ifc.IfName,
					IP: ip, Names: append([]string{v.Spec.Name}, v.Spec.Aliases...),
				}
				if m, err := pass.ParseMAC(macs[bridge.MACKey(v.Netns, ifc.Network)]); err == nil {
					l.MAC = m
				}
				if v.HostPlaced() {
					l.Netns = "" // the runtime's sandbox: not ours to enter
				}
				out = append(out, l)
			}
		}
	}
	return out
}

// Prepare implements Step.
func (s *Step) Prepare(d *pass.Desired) error {
	in := ipamFromView(d.Gossip)
	if d.Gossip == nil && s.gossip != nil {
		in.ready = false
	}
	now := time.Now()
	s.fullMu.Lock()
	full := s.full
	s.full = map[string]bool{}
	s.fullMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadLocked(d.State)
	nets := map[string]bool{}
	var errs []error
	var conflicts []string
	changed := false
	for _, n := range Networks(d.Config) {
		nets[n.Name] = true
		if err := s.gatewayLocked(d, n); err != nil {
			errs = append(errs, err)
		}
		if !in.ready {
			continue
		}
		changed = s.dropFamiliesLocked(n) || changed
		for _, fv := range pass.Families(n) {
			ch, cf, err := s.planClaims(d.Config.Host.Name, fv.Net, d.Gossip, in, full[fv.Key], now)
			changed = changed || ch
			conflicts = append(conflicts, cf...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	for n := range s.claims {
		if !nets[n] {
			delete(s.claims, n)
			delete(s.last, n)
			delete(s.last, pass.Key6(n))
			changed = true
		}
	}
	changed = s.settleLocked(in, now) || changed
	changed = s.roundRobinLocked(d, nets) || changed
	newMACs(d, nets)
	s.resolveLocked(d, nets, conflicts)
	if changed {
		s.saveLocked()
	}
	return errors.Join(errs...)
}

// gatewayLocked gives overlay network n's bridge the shared gateway MAC
// and the MTU the VXLAN device can carry (under s.mu).
func (s *Step) gatewayLocked(d *pass.Desired, n *config.Network) error {
	mtu := pass.OverlayMTU
	var err error
	if n.MTU != 0 {
		mtu = n.MTU
	} else if s.h != nil {
		m, merr := overlay.MTUFor(s.h, Device(d.Config, n))
		if merr != nil {
			err = fmt.Errorf("network %q: mtu: %w", n.Name, merr)
		} else {
			mtu = m
		}
	}
	s.mtu[n.Name] = mtu
	setOverlayBridge(d, n.Name, mtu, overlay.GatewayMAC(n.Name))
	return err
}

// settleLocked marks claims usable, and comes back (a pass) when the next
// one is; it reports whether a claim changed (under s.mu).
func (s *Step) settleLocked(in *ipamInput, now time.Time) bool {
	changed := false
	var next time.Time
	for n, cs := range s.claims {
		for i := range cs {
			ok, at := in.settledAt(n, cs[i], s.settle, now)
			if ok && !cs[i].Settled && !cs[i].Fixed {
				cs[i].Settled = true
				changed = true
				s.log.Info("address block settled", "network", n, "block", cs[i].Prefix)
			}
			if !ok && !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
	}
	if !next.IsZero() {
		if s.settleT != nil {
			s.settleT.Stop()
		}
		s.settleT = time.AfterFunc(time.Until(next)+10*time.Millisecond, s.env.Trigger)
	}
	return changed
}

// roundRobinLocked reports whether the last address handed out on an
// overlay network (kept by the pools' Allocate, for a pass's build and an
// API call's alike) differs from the state's, which must then be saved
// (under s.mu).
func (s *Step) roundRobinLocked(d *pass.Desired, nets map[string]bool) bool {
	var saved map[string]netip.Addr
	if d.State != nil && d.State.Overlay != nil {
		saved = d.State.Overlay.Last
	}
	for net := range nets {
		for _, n := range []string{net, pass.Key6(net)} {
			if a, ok := s.last[n]; ok && saved[n] != a {
				return true
			}
		}
	}
	return false
}

// newMACs gives new interfaces on overlay networks a MAC of the overlay's
// kind (never a gateway MAC).
func newMACs(d *pass.Desired, nets map[string]bool) {
	for i := range d.Bridge.Containers {
		for j := range d.Bridge.Containers[i].Interfaces {
			ifc := &d.Bridge.Containers[i].Interfaces[j]
			if nets[ifc.Network] && ifc.MAC == nil {
				ifc.MAC = overlay.NewMAC()
			}
		}
	}
}

// resolveLocked decides who holds each address and fills d.Remote; the
// conflicts (with those of the claims) go in d.Conflicts, logged once
// each: status serves the last pass's value (under s.mu).
func (s *Step) resolveLocked(d *pass.Desired, nets map[string]bool, conflicts []string) {
	res := s.resolved.resolve(d.Config.Host.Name, nets, d.Gossip, localEndpoints(d, d.State.Bridge.MACs))
	d.Remote = res.Remote
	for _, c := range res.Conflicts {
		conflicts = append(conflicts, c.String())
	}
	// Each conflict is logged once while it stands; the set is replaced,
	// so it holds only the current ones (one that ends and comes back is
	// logged again) and does not grow with every conflict ever seen.
	standing := make(map[string]bool, len(conflicts))
	for _, c := range conflicts {
		if !s.conflictLog[c] {
			s.log.Warn("overlay conflict", "problem", c)
		}
		standing[c] = true
	}
	s.conflictLog = standing
	d.Conflicts = append(d.Conflicts, conflicts...)
	s.notes = res.Notes
	s.noteRemoteLocked(res.Remote)
}

// markPublished notes when each claim was first announced and, if that
// is news, triggers a pass to settle it from there.
func (s *Step) markPublished() {
	now := time.Now()
	s.mu.Lock()
	news := false
	for _, cs := range s.claims {
		for i := range cs {
			if cs[i].Published.IsZero() {
				cs[i].Published = now
				news = true
			}
		}
	}
	if news {
		s.saveLocked()
	}
	s.mu.Unlock()
	if news {
		s.env.Trigger()
	}
}

// saveLocked puts a copy of the claims in the state (under s.mu); the
// pass writes it.
func (s *Step) saveLocked() {
	o := s.stateLocked()
	s.env.Store.Update(func(st *pass.State) { st.Overlay = o })
}

// stateLocked copies the claims for the state file (under s.mu).
func (s *Step) stateLocked() *pass.OverlayState {
	o := &pass.OverlayState{Claims: map[string][]pass.OverlayClaim{}, Last: map[string]netip.Addr{}}
	for n, cs := range s.claims {
		if len(cs) > 0 {
			o.Claims[n] = slices.Clone(cs)
		}
	}
	for n, a := range s.last {
		o.Last[n] = a
	}
	return o
}

// setOverlayBridge gives an overlay network's bridge the shared gateway MAC
// and the MTU, and every interface on the network the MTU.
func setOverlayBridge(d *pass.Desired, network string, mtu int, mac net.HardwareAddr) {
	for i := range d.Bridge.Networks {
		if d.Bridge.Networks[i].Name == network {
			d.Bridge.Networks[i].MTU = mtu
			d.Bridge.Networks[i].MAC = mac
		}
	}
	for i := range d.Bridge.Containers {
		for j := range d.Bridge.Containers[i].Interfaces {
			if ifc := &d.Bridge.Containers[i].Interfaces[j]; ifc.Network == network {
				ifc.MTU = mtu
			}
		}
	}
	for _, v := range d.Containers {
		for j := range v.Interfaces {
			if v.Interfaces[j].Network == network {
				v.Interfaces[j].MTU = mtu
			}
		}
	}
}

// Cleanup implements Step: it withdraws this host's records and deletes
// its VXLAN devices.
func (s *Step) Cleanup(ctx context.Context) error {
	var errs []error
	if s.gossip != nil && s.gossip.c() != nil {
		if err := s.gossip.c().SetLocal(nil); err != nil {
			errs = append(errs, err)
		}
	}
	if s.h != nil {
		devs, err := overlay.Devices(s.h)
		if err != nil {
			errs = append(errs, err)
		}
		for _, d := range devs {
			if err := overlay.DeleteDevice(s.h, d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// noteRemoteLocked logs, once each, the remote endpoints that appeared,
// changed or went since the last resolution, so the log says which
// container an FDB/neighbour change is for. s.mu is held.
func (s *Step) noteRemoteLocked(now []pass.RemoteEndpoint) {
	if len(now) > 0 && len(now) == len(s.lastRemote) && &now[0] == &s.lastRemote[0] {
		return // the same resolution (resolveCache): nothing to compare
	}
	type key struct {
		network string
		ip      netip.Addr
	}
	old := make(map[key]pass.RemoteEndpoint, len(s.lastRemote))
	for _, r := range s.lastRemote {
		old[key{r.Network, r.IP}] = r
	}
	for _, r := range now {
		k := key{r.Network, r.IP}
		prev, ok := old[k]
		delete(old, k)
		// The attributes are built only for a line to log: at 10,000 remote
		// endpoints every pass compares them all.
		attrs := func() []any {
			return []any{"network", r.Network, "container", r.Container, "host", r.Host, "ip", r.IP, "mac", r.MAC.String(), "vtep", r.VTEP}
		}
		switch {
		case !ok:
			s.log.Info("remote endpoint added", append(attrs(), "reason", "announced by "+r.Host)...)
		case prev.Container != r.Container || prev.Host != r.Host || prev.VTEP != r.VTEP || !bytes.Equal(prev.MAC, r.MAC):
			s.log.Info("remote endpoint changed", append(attrs(), "was", fmt.Sprintf("%s on %s (%s via %s)", prev.Container, prev.Host, prev.MAC, prev.VTEP), "reason", "announced by "+r.Host)...)
		}
	}
	for _, r := range old {
		s.log.Info("remote endpoint removed", "network", r.Network, "container", r.Container, "host", r.Host, "ip", r.IP, "reason", "withdrawn by its host, or its host was reaped")
	}
	s.lastRemote = now
}
