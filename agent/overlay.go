package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
)

// The overlay step: VXLAN across hosts, programmed from gossip.
//
// Prepare (before anything is applied) turns every overlay network's bridge
// into a shared gateway (the same MAC, overlay.GatewayMAC, on every host)
// with the MTU the VXLAN device can carry (overlay.MTUFor: the underlay's
// minus 50 or 70 bytes) on the bridge and every container veth; keeps this
// host's block claims (cluster IPAM, overlay_ipam.go); and fills
// Desired.Remote with the other hosts' endpoints (overlay_remote.go).
//
// Apply (after the bridge step made the vxb- bridges and veths) makes each
// network's VXLAN device (EnsureDevice), programs its FDB and neighbour
// entries (Sync), clears what local containers and the bridge may cache
// about moved addresses and MACs, deletes the devices of removed networks,
// and finally declares this host's records to gossip (SetLocal): only what
// exists is announced. Nothing is synced or published before gossip is
// ready (GossipView.Ready), so a restarted agent does not replace the
// entries in the kernel with a table it has not received yet.
//
// A netlink watcher on the devices triggers a pass when they change; a pass
// it started that changes something is logged as a repair.

// overlayStep is the Step of overlay networks.
type overlayStep struct {
	a      *Agent
	log    *slog.Logger
	h      *overlay.Handle // nil: no kernel (tests on a stub kernel)
	ns     netns.NsHandle  // the host namespace, for the watcher
	gossip *gossipSource   // nil: no cluster (no host address)
	settle time.Duration

	watcher *overlay.Watcher
	woken   atomic.Bool // the watcher fired since the last Apply

	// applyMu serializes kernel writes of Apply and of the fast path
	// (fastSync), which programs a gossip change without waiting for a
	// whole pass.
	applyMu sync.Mutex

	fullMu sync.Mutex
	full   map[string]bool // networks whose blocks are all full

	mu         sync.Mutex
	loaded     bool
	claims     map[string][]OverlayClaim
	last       map[string]netip.Addr
	ipam       *ipamInput
	settleT    *time.Timer
	mtu        map[string]int
	status     map[string]*overlayNetStatus
	conflicts  []string
	logged     map[string]bool // conflicts and bad entries already logged
	attached   map[string]bool // "network/mac" of local endpoints seen attached
	notes      map[epKey]string
	lastRemote []RemoteEndpoint
	stateDirty bool                              // claims changed outside Prepare: save
	seen       map[string]map[netip.Addr]seenMAC // network -> address -> MAC (remapped)
	settled    map[string]bool                   // network -> the last pass changed nothing
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

func newOverlayStep(a *Agent, h *overlay.Handle, ns netns.NsHandle, g *gossipSource, settle time.Duration) *overlayStep {
	if settle <= 0 {
		settle = DefaultIPAMSettle
	}
	s := &overlayStep{
		a: a, log: a.log, h: h, ns: ns, gossip: g, settle: settle,
		full:   map[string]bool{},
		claims: map[string][]OverlayClaim{}, last: map[string]netip.Addr{},
		mtu: map[string]int{}, status: map[string]*overlayNetStatus{},
		logged: map[string]bool{}, attached: map[string]bool{}, notes: map[epKey]string{},
		seen: map[string]map[netip.Addr]seenMAC{}, settled: map[string]bool{},
	}
	if h != nil {
		s.watcher = overlay.NewWatcher(ns)
		s.watcher.Log = a.log.With("component", "overlay")
	}
	return s
}

// Name implements Step.
func (s *overlayStep) Name() string { return "overlay" }

// run runs the watcher until ctx is done.
func (s *overlayStep) run(ctx context.Context) {
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
			s.a.Trigger()
		}
	}
}

// loadLocked reads the persisted claims once (under s.mu).
func (s *overlayStep) loadLocked(st *State) {
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

// overlayNets are the config's overlay networks.
func overlayNets(cfg *config.Config) []*config.Network {
	var out []*config.Network
	for i := range cfg.Networks {
		if cfg.Networks[i].Driver == config.DriverOverlay {
			out = append(out, &cfg.Networks[i])
		}
	}
	return out
}

// device is the VXLAN device of overlay network n on this host.
func device(cfg *config.Config, n *config.Network) overlay.Device {
	return overlay.Device{
		Name: n.Name, VNI: n.VNI, Local: cfg.Host.Address, Port: n.VXLANPort,
		MTU: n.MTU, Bridge: bridgeNetwork(n).Device,
	}
}

func viewOf(d *Desired) *GossipView {
	v, _ := d.Sources[GossipSourceName].(*GossipView)
	return v
}

// localEndpoints lists this host's endpoints on overlay networks, with the
// MACs of the interfaces that exist (macs: the bridge record's).
func localEndpoints(d *Desired, macs map[string]string) []localEndpoint {
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
			l := localEndpoint{
				Network: ifc.Network, Container: v.Spec.Name, Netns: v.Netns, IfName: ifc.IfName,
				IP: ifc.Addr.Addr(), Names: append([]string{v.Spec.Name}, v.Spec.Aliases...),
			}
			if m, err := parseMAC(macs[bridge.MACKey(v.Netns, ifc.Network)]); err == nil {
				l.MAC = m
			}
			out = append(out, l)
		}
	}
	return out
}

// Prepare implements Step.
func (s *overlayStep) Prepare(d *Desired) error {
	cfg := d.Config
	v := viewOf(d)
	in := ipamFromView(v)
	if v == nil && s.gossip != nil {
		in.ready = false
	}
	st := s.a.stateCopy()
	now := time.Now()
	var errs []error

	s.fullMu.Lock()
	full := s.full
	s.full = map[string]bool{}
	s.fullMu.Unlock()

	s.mu.Lock()
	s.loadLocked(st)
	s.ipam = in
	nets := map[string]bool{}
	changed := false
	var conflicts []string
	for _, n := range overlayNets(cfg) {
		nets[n.Name] = true
		// The shared gateway and the MTU the VXLAN device can carry.
		mtu := OverlayMTU
		if n.MTU != 0 {
			mtu = n.MTU
		} else if s.h != nil {
			m, err := overlay.MTUFor(s.h, device(cfg, n))
			if err != nil {
				errs = append(errs, fmt.Errorf("network %q: mtu: %w", n.Name, err))
			} else {
				mtu = m
			}
		}
		s.mtu[n.Name] = mtu
		setOverlayBridge(d, n.Name, mtu, overlay.GatewayMAC(n.Name))

		if in.ready {
			ch, cf, err := s.planClaims(cfg.Host.Name, n, v, in, full[n.Name], now)
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
			changed = true
		}
	}
	// Settle: mark claims usable, and come back when the next one is.
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
		s.settleT = time.AfterFunc(time.Until(next)+10*time.Millisecond, s.a.Trigger)
	}
	// Round robin: the last address handed out in this build.
	for n := range nets {
		for _, cv := range d.Containers {
			ip, ok := d.Allocations[n][cv.Spec.Name]
			if ok && st.Allocations[n][cv.Spec.Name] != ip && s.last[n] != ip {
				s.last[n] = ip
				changed = true
			}
		}
	}
	// New interfaces get a MAC of the overlay's kind (never a gateway MAC).
	for i := range d.Bridge.Containers {
		for j := range d.Bridge.Containers[i].Interfaces {
			ifc := &d.Bridge.Containers[i].Interfaces[j]
			if nets[ifc.Network] && ifc.MAC == nil {
				ifc.MAC = overlay.NewMAC()
			}
		}
	}

	// Who holds each address; what to program.
	res := resolveRemote(cfg.Host.Name, nets, v, localEndpoints(d, st.Bridge.MACs))
	d.Remote = res.Remote
	for _, c := range res.Conflicts {
		conflicts = append(conflicts, c.String())
	}
	for _, c := range conflicts {
		if !s.logged[c] {
			s.logged[c] = true
			s.log.Warn("overlay conflict", "problem", c)
		}
	}
	s.conflicts = conflicts
	s.notes = res.Notes
	s.noteRemoteLocked(res.Remote)
	var save *OverlayState
	if changed || s.stateDirty {
		save = s.stateLocked()
		s.stateDirty = false
	}
	s.mu.Unlock()

	if save != nil {
		s.a.mu.Lock()
		s.a.state.Overlay = save
		err := s.a.state.save(s.a.cfg.StateDir)
		s.a.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// markPublished notes when each claim was first announced and, if that
// is news, triggers a pass to settle it from there.
func (s *overlayStep) markPublished() {
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
		s.stateDirty = true
	}
	s.mu.Unlock()
	if news {
		s.a.Trigger()
	}
}

// stateLocked copies the claims for the state file (under s.mu).
func (s *overlayStep) stateLocked() *OverlayState {
	o := &OverlayState{Claims: map[string][]OverlayClaim{}, Last: map[string]netip.Addr{}}
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
func setOverlayBridge(d *Desired, network string, mtu int, mac net.HardwareAddr) {
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

// Apply implements Step.
func (s *overlayStep) Apply(ctx context.Context, d *Desired) error {
	cfg := d.Config
	v := viewOf(d)
	ready := s.gossip == nil || (v != nil && v.Ready)
	repair := s.woken.Swap(false)
	macs := s.a.stateCopy().Bridge.MACs
	local := localEndpoints(d, macs)
	var errs []error

	status := map[string]*overlayNetStatus{}
	var links []string
	if s.h != nil {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		// Program the freshest table: a pass that began before a gossip
		// change must not undo what the fast path already wrote.
		remote := d.Remote
		if s.gossip != nil {
			if fv := s.gossip.view(); fv.Ready {
				res := resolveRemote(cfg.Host.Name, overlaySet(cfg), fv, local)
				remote = res.Remote
				s.mu.Lock()
				s.notes = res.Notes
				s.mu.Unlock()
			}
		}
		for _, n := range overlayNets(cfg) {
			dev := device(cfg, n)
			s.mu.Lock()
			mtu := s.mtu[n.Name]
			s.mu.Unlock()
			ns := &overlayNetStatus{Device: dev.LinkName(), VNI: n.VNI, Port: n.VXLANPort, MTU: mtu}
			status[n.Name] = ns
			links = append(links, dev.LinkName(), dev.Bridge)
			if err := s.applyNetwork(n, dev, ready, repair, remote, local, ns); err != nil {
				ns.Err = joinLines(err)
				errs = append(errs, err)
			}
		}
		if err := s.deleteStale(cfg); err != nil {
			errs = append(errs, err)
		}
		if s.watcher != nil && !slices.Equal(s.watcher.Links(), sortedCopy(links)) {
			s.watcher.SetLinks(links...)
		}
	}

	// Announce exactly what exists: endpoints whose interface was made,
	// and the block claims.
	if s.gossip != nil && ready {
		var recs []gossip.Record
		for _, l := range local {
			if l.MAC == nil {
				continue
			}
			recs = append(recs, gossip.Endpoint{Network: l.Network, Container: l.Container, IP: l.IP, MAC: l.MAC, Names: l.Names})
		}
		s.mu.Lock()
		recs = append(recs, s.claimRecords()...)
		s.mu.Unlock()
		if err := s.gossip.c().SetLocal(recs); err != nil {
			errs = append(errs, fmt.Errorf("publish records: %w", err))
		} else {
			s.markPublished()
		}
	}
	s.mu.Lock()
	if s.h != nil {
		s.status = status
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// overlaySet is the set of the config's overlay network names.
func overlaySet(cfg *config.Config) map[string]bool {
	out := map[string]bool{}
	for _, n := range overlayNets(cfg) {
		out[n.Name] = true
	}
	return out
}

// fastSync programs a gossip change at once: the FDB and neighbour entries
// of every overlay network, from the new table and the local endpoints of
// the last pass, without the bridge reconcile a whole pass costs. The pass
// the change also triggers follows and checks everything.
func (s *overlayStep) fastSync() {
	if s.h == nil || s.gossip == nil {
		return
	}
	s.a.mu.Lock()
	last := s.a.last
	var macs map[string]string
	if s.a.state != nil {
		macs = maps.Clone(s.a.state.Bridge.MACs)
	}
	s.a.mu.Unlock()
	if last == nil {
		return
	}
	v := s.gossip.view()
	if !v.Ready {
		return
	}
	cfg := last.Config
	local := localEndpoints(last, macs)
	res := resolveRemote(cfg.Host.Name, overlaySet(cfg), v, local)
	// Names follow the same change at once: a container removed on another
	// host must stop resolving here well within a second, not a pass later.
	if dnsStep := s.a.dns; dnsStep != nil {
		d := *last
		d.Remote = res.Remote
		dnsStep.refresh(&d)
	}
	s.mu.Lock()
	s.noteRemoteLocked(res.Remote)
	s.mu.Unlock()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for _, n := range overlayNets(cfg) {
		dev := device(cfg, n)
		entries, _ := entriesFor(n.Name, res.Remote, dev.Local)
		st, err := overlay.Sync(s.h, dev.LinkName(), entries)
		if err != nil {
			continue // the pass reports it
		}
		if moved := s.remapped(n.Name, entries, local, st.Remapped); len(moved) > 0 {
			for _, l := range local {
				if l.Network == n.Name {
					invalidateIn(l.Netns, l.IfName, moved)
				}
			}
		}
	}
}

func sortedCopy(l []string) []string {
	c := slices.Clone(l)
	slices.Sort(c)
	return slices.Compact(c)
}

// applyNetwork makes one overlay network's VXLAN side.
func (s *overlayStep) applyNetwork(n *config.Network, dev overlay.Device, ready, repair bool, remote []RemoteEndpoint, local []localEndpoint, ns *overlayNetStatus) error {
	log := s.log.With("network", n.Name, "device", dev.LinkName())
	// A repair is a change in a pass the watcher started, on a network the
	// pass before had found as wanted (so not our own first writes).
	s.mu.Lock()
	repair = repair && s.settled[n.Name]
	s.settled[n.Name] = false
	s.mu.Unlock()
	fixed, err := s.noLinkLocal(dev.Bridge)
	if err != nil {
		return err
	}
	if fixed && repair {
		log.Info("repaired overlay drift", "what", "ipv6 link-local address on the gateway bridge")
	}
	changed, err := overlay.EnsureDevice(s.h, dev)
	if changed && repair {
		log.Info("repaired overlay drift", "what", "vxlan device")
	}
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}

	// A MAC that is local now may still be learned behind the VXLAN port
	// from when it lived on another host.
	var fresh []net.HardwareAddr
	s.mu.Lock()
	for _, l := range local {
		if l.Network == n.Name && l.MAC != nil && !s.attached[n.Name+"/"+l.MAC.String()] {
			s.attached[n.Name+"/"+l.MAC.String()] = true
			fresh = append(fresh, l.MAC)
		}
	}
	s.mu.Unlock()
	if len(fresh) > 0 {
		if _, err := overlay.ClearLearned(s.h, dev.LinkName(), fresh); err != nil {
			log.Warn("clear learned entries", "err", err)
		}
	}

	if !ready {
		return nil
	}
	entries, bad := entriesFor(n.Name, remote, dev.Local)
	for _, b := range bad {
		s.logOnce("overlay entry refused", b.Error())
	}
	ns.Remote = len(entries)
	st, err := overlay.Sync(s.h, dev.LinkName(), entries)
	ns.Expected, ns.Programmed, ns.Synced = st.Wanted, st.Unchanged+st.Added+st.Updated, true
	if st.Changed() && repair {
		log.Info("repaired overlay drift", "what", "fdb and neighbour entries", "added", st.Added, "updated", st.Updated, "deleted", st.Deleted)
	}
	if err == nil && !fixed && !changed && !st.Changed() {
		s.mu.Lock()
		s.settled[n.Name] = true
		s.mu.Unlock()
	}
	if moved := s.remapped(n.Name, entries, local, st.Remapped); len(moved) > 0 {
		// Local containers may cache the old MAC of a reused address.
		for _, l := range local {
			if l.Network != n.Name {
				continue
			}
			if err := invalidateIn(l.Netns, l.IfName, moved); err != nil {
				log.Warn("invalidate neighbour entries", "container", l.Container, "err", err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}

// macMemory is how long the MAC an overlay address had is remembered
// after the address went away: about the longest a container's ARP entry
// lives.
const macMemory = 10 * time.Minute

// seenMAC is the MAC an address last had on a network, and when.
type seenMAC struct {
	mac  string
	last time.Time
}

// remapped returns the addresses of network that local containers may
// hold a useless neighbour entry for: those whose MAC differs from the one
// they had when last seen (here or on another host), also across a gap (an
// address removed on one host and reused on another is a delete then an
// add for Sync, not a remap, but local containers still cache the old
// MAC), and those seen for the first time (a container that asked before
// the entry was programmed holds an INCOMPLETE or FAILED entry and would
// ask again only after its retransmit timer, a second). Sync's own
// Remapped are included.
func (s *overlayStep) remapped(network string, entries []overlay.Entry, local []localEndpoint, syncRemapped []netip.Addr) []netip.Addr {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.seen[network]
	if seen == nil {
		seen = map[netip.Addr]seenMAC{}
		s.seen[network] = seen
	}
	out := slices.Clone(syncRemapped)
	note := func(ip netip.Addr, mac net.HardwareAddr) {
		m := mac.String()
		if old, ok := seen[ip]; (!ok || old.mac != m) && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
		seen[ip] = seenMAC{m, now}
	}
	for _, e := range entries {
		note(e.IP, e.MAC)
	}
	for _, l := range local {
		if l.Network == network && l.MAC != nil {
			note(l.IP, l.MAC)
		}
	}
	for ip, sm := range seen {
		if now.Sub(sm.last) > macMemory {
			delete(seen, ip)
		}
	}
	return out
}

// invalidateIn runs overlay.InvalidateNeigh inside a container namespace.
func invalidateIn(ns, ifname string, ips []netip.Addr) error {
	h, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nh.Close()
	return overlay.InvalidateNeigh(nh, ifname, ips)
}

// noLinkLocal keeps the gateway bridge free of an IPv6 link-local address:
// every host's bridge has the same MAC, so they would all have the same
// fe80:: address, and its neighbour discovery and MLD frames, flooded over
// the VXLAN port, would arrive at the other bridges with their own MAC as
// source. It switches address generation off and deletes what was
// generated; it reports whether it changed anything. A missing bridge is
// the bridge step's business.
func (s *overlayStep) noLinkLocal(name string) (bool, error) {
	l, err := s.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("find bridge %q: %w", name, err)
	}
	addrs, err := s.h.AddrList(l, unix.AF_INET6)
	if err != nil {
		return false, fmt.Errorf("list addresses of %q: %w", name, err)
	}
	var ll []netlink.Addr
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			ll = append(ll, a)
		}
	}
	if len(ll) == 0 {
		return false, nil
	}
	if err := s.h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return false, fmt.Errorf("turn off ipv6 address generation on %q: %w", name, err)
	}
	for _, a := range ll {
		if err := s.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return true, fmt.Errorf("delete %s from %q: %w", a.IPNet, name, err)
		}
	}
	s.log.Info("removed ipv6 link-local address from overlay bridge", "bridge", name, "reason", "same gateway MAC on every host")
	return true, nil
}

// deleteStale removes the VXLAN devices of overlay networks no longer
// configured (or whose device changed name with the VNI).
func (s *overlayStep) deleteStale(cfg *config.Config) error {
	devs, err := overlay.Devices(s.h)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range overlayNets(cfg) {
		want[device(cfg, n).LinkName()] = true
	}
	var errs []error
	for _, d := range devs {
		if !want[d.LinkName()] {
			if err := overlay.DeleteDevice(s.h, d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// logOnce logs a warning the first time it is seen.
func (s *overlayStep) logOnce(msg, problem string) {
	s.mu.Lock()
	seen := s.logged[problem]
	s.logged[problem] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, "problem", problem)
	}
}

// Cleanup implements Step: it withdraws this host's records and deletes
// its VXLAN devices.
func (s *overlayStep) Cleanup(ctx context.Context) error {
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

// initOverlay makes the overlay step and, when k is the real kernel (not a
// test stub), its netlink handle in the host namespace and the gossip
// member (unless Options.NoCluster).
func (a *Agent) initOverlay(k bridge.Kernel) error {
	_, real := k.(*bridge.NetlinkKernel)
	if real && !a.opts.NoCluster && a.cfg.Host.Address.IsValid() && a.cfg.Host.Name != "" {
		g, err := newGossipSource(a.cfg, a.opts.HostNetns, a.opts.GossipTuning, a.opts.JoinWait, a.log, a.Trigger)
		if err != nil {
			return err
		}
		a.gossip = g
		a.opts.Sources = append(slices.Clone(a.opts.Sources), g)
		a.closers = append(a.closers, g.shutdown)
	}
	var h *overlay.Handle
	ns := netns.None()
	if real {
		if a.opts.HostNetns != "" {
			var err error
			if ns, err = netnsutil.Open(a.opts.HostNetns); err != nil {
				return err
			}
			a.closers = append(a.closers, func() { ns.Close() })
		}
		var err error
		if h, err = overlay.NewHandle(ns); err != nil {
			return err
		}
		h.Log = a.log.With("component", "overlay")
		a.closers = append(a.closers, h.Close)
	}
	a.ovl = newOverlayStep(a, h, ns, a.gossip, a.opts.IPAMSettle)
	if a.gossip != nil {
		a.gossip.onChange = a.ovl.fastSync
	}
	return nil
}

// runOverlay starts gossip and the overlay watcher; the returned function
// stops them (gossip leaves the cluster then) and waits.
func (a *Agent) runOverlay(ctx context.Context) (stop func(), err error) {
	if a.gossip != nil {
		if err := a.gossip.start(); err != nil {
			return nil, err
		}
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if a.gossip != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.gossip.run(gctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.ovl.run(gctx) }()
	return func() { cancel(); wg.Wait() }, nil
}

// poolOf is buildDesired's pool hook: cluster IPAM for overlay networks.
func (a *Agent) poolOf(n *config.Network, st *State) addrPool {
	if a.ovl == nil || n.Driver != config.DriverOverlay {
		return nil
	}
	return a.ovl.pool(n, st)
}

// noteRemoteLocked logs, once each, the remote endpoints that appeared,
// changed or went since the last resolution, so the log says which
// container an FDB/neighbour change is for. s.mu is held.
func (s *overlayStep) noteRemoteLocked(now []RemoteEndpoint) {
	type key struct {
		network string
		ip      netip.Addr
	}
	old := make(map[key]RemoteEndpoint, len(s.lastRemote))
	for _, r := range s.lastRemote {
		old[key{r.Network, r.IP}] = r
	}
	for _, r := range now {
		k := key{r.Network, r.IP}
		prev, ok := old[k]
		delete(old, k)
		attrs := []any{"network", r.Network, "container", r.Container, "host", r.Host, "ip", r.IP, "mac", r.MAC.String(), "vtep", r.VTEP}
		switch {
		case !ok:
			s.log.Info("remote endpoint added", append(attrs, "reason", "announced by "+r.Host)...)
		case prev.Container != r.Container || prev.Host != r.Host || prev.VTEP != r.VTEP || prev.MAC.String() != r.MAC.String():
			s.log.Info("remote endpoint changed", append(attrs, "was", fmt.Sprintf("%s on %s (%s via %s)", prev.Container, prev.Host, prev.MAC, prev.VTEP), "reason", "announced by "+r.Host)...)
		}
	}
	for _, r := range old {
		s.log.Info("remote endpoint removed", "network", r.Network, "container", r.Container, "host", r.Host, "ip", r.IP, "reason", "withdrawn by its host, or its host was reaped")
	}
	s.lastRemote = now
}
