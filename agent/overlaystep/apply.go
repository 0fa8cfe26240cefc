package overlaystep

// Apply: the VXLAN side of each overlay network, the fast path between
// passes, and what local containers must forget when an address moves.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
)

// Apply implements Step.
func (s *Step) Apply(ctx context.Context, d *pass.Desired) error {
	cfg := d.Config
	v := d.Gossip
	ready := s.gossip == nil || (v != nil && v.Ready)
	repair := s.woken.Swap(false)
	var macs map[string]string
	s.env.Store.Read(func(st *pass.State) { macs = maps.Clone(st.Bridge.MACs) }) // with the MACs of this pass's new interfaces
	local := localEndpoints(d, macs)
	var errs []error

	status := map[string]*overlayNetStatus{}
	var links []string
	if s.h != nil {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		// Program the freshest table: a pass whose snapshot is older than
		// what the fast path already wrote must not undo it (the view the
		// fast path read, not a new read of gossip).
		remote := d.Remote
		s.mu.Lock()
		fv := s.fastView
		s.mu.Unlock()
		if fv != nil && fv.Ready && (v == nil || fv.At.After(v.At)) {
			res := s.resolved.resolve(cfg.Host.Name, overlaySet(cfg), fv, local)
			remote = res.Remote
			s.mu.Lock()
			s.notes = res.Notes
			s.mu.Unlock()
		}
		for _, n := range Networks(cfg) {
			dev := Device(cfg, n)
			s.mu.Lock()
			mtu := s.mtu[n.Name]
			s.mu.Unlock()
			ns := &overlayNetStatus{Device: dev.LinkName(), VNI: n.VNI, Port: n.VXLANPort, MTU: mtu}
			status[n.Name] = ns
			links = append(links, dev.LinkName(), dev.Bridge)
			if err := s.applyNetwork(n, dev, ready, repair, remote, local, ns); err != nil {
				ns.Err = strings.ReplaceAll(err.Error(), "\n", "; ")
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
	if ready {
		// What gossip brought before this pass's view is programmed now.
		s.lag.programmed(s.Metrics, time.Now())
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
	s.lastD = d
	s.mu.Unlock()
	return errors.Join(errs...)
}

// overlaySet is the set of the config's overlay network names.
func overlaySet(cfg *config.Config) map[string]bool {
	out := map[string]bool{}
	for _, n := range Networks(cfg) {
		out[n.Name] = true
	}
	return out
}

// fastSync programs a gossip change at once: the FDB and neighbour entries
// of every overlay network, from the new table and the local endpoints of
// the last pass, without the bridge reconcile a whole pass costs. The pass
// the change also triggers follows and checks everything.
func (s *Step) fastSync() {
	if s.h == nil || s.gossip == nil {
		return
	}
	s.mu.Lock()
	last := s.lastD
	s.mu.Unlock()
	if last == nil {
		return
	}
	var macs map[string]string
	s.env.Store.Read(func(st *pass.State) { macs = maps.Clone(st.Bridge.MACs) })
	v := s.gossip.view()
	if !v.Ready {
		return
	}
	cfg := last.Config
	local := localEndpoints(last, macs)
	res := s.resolved.resolve(cfg.Host.Name, overlaySet(cfg), v, local)
	// Names follow the same change at once: a container removed on another
	// host must stop resolving here well within a second, not a pass later.
	if s.OnRemote != nil {
		d := *last
		d.Remote = res.Remote
		s.OnRemote(&d)
	}
	s.mu.Lock()
	s.noteRemoteLocked(res.Remote)
	s.fastView = v
	s.mu.Unlock()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for _, n := range Networks(cfg) {
		dev := Device(cfg, n)
		entries, _ := entriesFor(n.Name, res.Remote, dev.Local)
		st, err := overlay.SyncWith(s.syncHandle(), dev.LinkName(), entries, s.mirror())
		s.recordSync(st, false)
		if err != nil {
			continue // the pass reports it
		}
		if moved := s.remapped(n.Name, entries, local, st.Remapped); len(moved) > 0 {
			for _, l := range local {
				if l.Network == n.Name && l.Netns != "" {
					overlay.InvalidateNeighIn(l.Netns, l.IfName, moved)
				}
			}
		}
	}
	s.lag.programmed(s.Metrics, time.Now())
}

// mirror is the watcher's copy of the devices' entries (nil without a
// kernel): overlay.SyncWith reads the kernel only when it does not know.
func (s *Step) mirror() *overlay.Mirror {
	if s.watcher == nil {
		return nil
	}
	return s.watcher.Mirror()
}

func sortedCopy(l []string) []string {
	c := slices.Clone(l)
	slices.Sort(c)
	return slices.Compact(c)
}

// applyNetwork makes one overlay network's VXLAN side.
func (s *Step) applyNetwork(n *config.Network, dev overlay.Device, ready, repair bool, remote []pass.RemoteEndpoint, local []localEndpoint, ns *overlayNetStatus) error {
	log := s.log.With("network", n.Name, "device", dev.LinkName())
	// A repair is a change in a pass the watcher started, on a network the
	// pass before had found as wanted (so not our own first writes).
	s.mu.Lock()
	repair = repair && s.settled[n.Name]
	s.settled[n.Name] = false
	s.mu.Unlock()
	fixed, err := overlay.NoLinkLocal(s.h, dev.Bridge)
	if err != nil {
		return err
	}
	if fixed && repair {
		log.Info("repaired overlay drift", "what", "ipv6 link-local address on the gateway bridge")
	}
	s.recordDevice("addr", fixed, repair)
	changed, err := overlay.EnsureDevice(s.h, dev)
	s.recordDevice("device", changed, repair)
	if changed && repair {
		log.Info("repaired overlay drift", "what", "vxlan device")
	}
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}

	s.clearFresh(n.Name, dev, local, log)
	if !ready {
		return nil
	}
	entries, bad := entriesFor(n.Name, remote, dev.Local)
	for _, b := range bad {
		s.logOnce("overlay entry refused", b.Error())
	}
	ns.Remote = len(entries)
	st, err := overlay.SyncWith(s.syncHandle(), dev.LinkName(), entries, s.mirror())
	ns.Expected, ns.Programmed, ns.Synced = st.Wanted, st.Unchanged+st.Added+st.Updated, true
	s.recordSync(st, repair)
	if st.Changed() && repair {
		log.Info("repaired overlay drift", "what", "fdb and neighbour entries", "added", st.Added, "updated", st.Updated, "deleted", st.Deleted)
	}
	// Settled: the kernel holds what was wanted. The notifications of this
	// pass's own writes do not start another pass (the watcher's mirror
	// explains them), so a pass the watcher starts from here is a repair.
	if err == nil && !fixed && !changed {
		s.mu.Lock()
		s.settled[n.Name] = true
		s.mu.Unlock()
	}
	if moved := s.remapped(n.Name, entries, local, st.Remapped); len(moved) > 0 {
		// Local containers may cache the old MAC of a reused address.
		for _, l := range local {
			if l.Network != n.Name || l.Netns == "" {
				continue
			}
			if err := overlay.InvalidateNeighIn(l.Netns, l.IfName, moved); err != nil {
				log.Warn("invalidate neighbour entries", "container", l.Container, "err", err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}

// clearFresh clears, for the local MACs seen attached for the first
// time, what the bridge learned behind the VXLAN port: a MAC that is
// local now may still be learned there from when it lived on another
// host.
func (s *Step) clearFresh(network string, dev overlay.Device, local []localEndpoint, log *slog.Logger) {
	var fresh []net.HardwareAddr
	s.mu.Lock()
	for _, l := range local {
		if l.Network == network && l.MAC != nil && !s.attached[network+"/"+l.MAC.String()] {
			s.attached[network+"/"+l.MAC.String()] = true
			fresh = append(fresh, l.MAC)
		}
	}
	s.mu.Unlock()
	if len(fresh) > 0 {
		if _, err := overlay.ClearLearned(s.h, dev.LinkName(), fresh); err != nil {
			log.Warn("clear learned entries", "err", err)
		}
	}
}

// macMemory is how long the MAC an overlay address had is remembered
// after the address went away: about the longest a container's ARP entry
// lives.
const macMemory = 10 * time.Minute

// seenMAC is the MAC an address last had on a network, and when. The
// MAC is kept as bytes: at 10,000 remote endpoints a string per entry and
// pass was most of what remapped allocated.
type seenMAC struct {
	mac  [6]byte
	last int64 // unix nanoseconds (a time.Time is three times the size)
}

// remapped returns the remote addresses of network that local containers
// may hold a useless neighbour entry for: those whose MAC differs from the
// one they had when last seen (here or on another host), also across a gap
// (an address removed on one host and reused on another is a delete then
// an add for Sync, not a remap, but local containers still cache the old
// MAC), and those seen for the first time (a container that asked
// before the entry was programmed holds an INCOMPLETE or FAILED entry and
// would ask again only after its retransmit timer, a second). Sync's own
// Remapped are included.
func (s *Step) remapped(network string, entries []overlay.Entry, local []localEndpoint, syncRemapped []netip.Addr) []netip.Addr {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.seen[network]
	if seen == nil {
		seen = map[netip.Addr]seenMAC{}
		s.seen[network] = seen
	}
	out := slices.Clone(syncRemapped)
	note := func(ip netip.Addr, mac net.HardwareAddr, report bool) {
		var m [6]byte
		copy(m[:], mac)
		if old, ok := seen[ip]; report && (!ok || old.mac != m) && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
		seen[ip] = seenMAC{m, now.UnixNano()}
	}
	for _, e := range entries {
		note(e.IP, e.MAC, true)
	}
	// A local address, new or reused with a new MAC, needs nothing: the
	// bridge step announced it (gratuitous ARP / unsolicited NA, repeated)
	// over the bridge every local container is on, and the kernel updates
	// any entry a container holds for it (a gratuitous ARP overrides,
	// INCOMPLETE, FAILED and a cached old MAC included). Invalidating would
	// cost a netlink dump in every local container per attach: with 100
	// containers on the host, most of an attach that reuses a removed
	// container's address.
	for _, l := range local {
		if l.Network == network && l.MAC != nil {
			note(l.IP, l.MAC, false)
		}
	}
	for ip, sm := range seen {
		if now.Sub(time.Unix(0, sm.last)) > macMemory {
			delete(seen, ip)
		}
	}
	return out
}

// deleteStale removes the VXLAN devices of overlay networks no longer
// configured (or whose device changed name with the VNI).
func (s *Step) deleteStale(cfg *config.Config) error {
	devs, err := overlay.Devices(s.h)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range Networks(cfg) {
		want[Device(cfg, n).LinkName()] = true
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

// maxLogged bounds logOnce's memory: past it, the set starts over (a
// problem may then be logged once more), rather than growing with every
// distinct message a long-lived agent ever saw.
const maxLogged = 1000

// logOnce logs a warning the first time it is seen.
func (s *Step) logOnce(msg, problem string) {
	s.mu.Lock()
	seen := s.logged[problem]
	if s.logged == nil || (!seen && len(s.logged) >= maxLogged) {
		s.logged = map[string]bool{}
	}
	s.logged[problem] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, "problem", problem)
	}
}
