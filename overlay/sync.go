package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Stats reports what one Sync pass did. Counts are kernel entries (FDB and
// neighbour entries alike).
type Stats struct {
	Added     int // entries that were missing and were written
	Updated   int // entries that were rewritten (e.g. a MAC that moved to another VTEP)
	Deleted   int // entries removed because no remote endpoint wants them
	Unchanged int // entries already right
	Failed    int // writes the kernel refused (see the returned error)
	// Wanted is how many entries remote asks for; after a pass without
	// errors, that many are programmed.
	Wanted int
	// Conflicts counts remote entries that lost to a later entry for the
	// same IP or MAC (see Desired).
	Conflicts int
	// Remapped lists the IPs whose neighbour entry now points at another
	// MAC (an address reused by a new endpoint). Local containers on the
	// network may still cache the old MAC in their own ARP table: the agent
	// clears those with InvalidateNeigh so the first packet uses the new one.
	Remapped []netip.Addr
	// FDBWrites and NeighWrites split the successful writes (Added +
	// Updated + Deleted) by table, for the agent's metrics.
	FDBWrites, NeighWrites int
	Duration               time.Duration
}

// Changed reports whether the pass wrote anything.
func (s Stats) Changed() bool { return s.Added+s.Updated+s.Deleted > 0 }

func (s Stats) String() string {
	return fmt.Sprintf("added %d, updated %d, deleted %d, unchanged %d, failed %d (wanted %d, conflicts %d) in %s",
		s.Added, s.Updated, s.Deleted, s.Unchanged, s.Failed, s.Wanted, s.Conflicts, s.Duration.Round(time.Microsecond))
}

// opApplier is implemented by *Handle: it applies many ops pipelined on one
// netlink socket and returns one error (or nil) per op.
type opApplier interface {
	applyOps(linkIndex int, ops []Op) []error
}

// Sync makes the VXLAN device named link hold exactly the FDB and neighbour
// entries that reach remote (the endpoints of the device's network on other
// hosts), plus one flood-list destination per distinct remote VTEP.
//
// It reads the device's permanent entries once, computes the difference
// (Plan) and applies it: missing and changed entries are written with
// replace semantics (flood destinations are appended), entries no longer
// wanted are deleted, and anything else on the device is left alone.
// Invalid input is refused before anything is written. A write that fails
// does not stop the others; the errors are returned joined, and the next
// pass retries. With a *Handle, writes are pipelined (see Handle).
func Sync(h Netlink, link string, remote []Entry) (Stats, error) {
	return SyncWith(h, link, remote, nil)
}

// SyncWith is Sync with the watcher's Mirror m of the kernel state (nil:
// none): while m knows what the device holds, the pass plans against that
// instead of dumping the device's tables, and does nothing at all when
// remote is the input of the last Sync that wrote everything. Calls for
// one link must not overlap.
func SyncWith(h Netlink, link string, remote []Entry, m *Mirror) (Stats, error) {
	start := time.Now()
	var st Stats
	vx, err := vxlanLink(h, link)
	if err != nil {
		return st, fmt.Errorf("sync %q: %w", link, err)
	}
	local, _ := netip.AddrFromSlice(vx.SrcAddr)
	if err := ValidateEntries(remote, local.Unmap()); err != nil {
		return st, fmt.Errorf("sync %q: %w", link, err)
	}
	idx := vx.Attrs().Index
	var (
		actual State
		known  bool
		tok    readToken
		sum    uint64
	)
	if m != nil {
		var done bool
		sum = m.sumOf(remote)
		done, st, actual, known, tok = m.lookup(idx, sum)
		if done {
			st.Duration = time.Since(start)
			return st, nil
		}
	}
	if !known {
		if actual, err = readState(h, vx); err != nil {
			return st, fmt.Errorf("sync %q: %w", link, err)
		}
	}
	want, conflicts := desired(remote)
	st.Wanted, st.Conflicts = want.Len(), conflicts
	ops, unchanged := plan(actual, want)
	st.Unchanged = unchanged
	if m != nil {
		// Before the writes: their notifications must find the copy
		// already holding what they make.
		m.expect(idx, want, sum, st, !known, tok)
	}
	if len(ops) == 0 {
		st.Duration = time.Since(start)
		return st, nil
	}

	var errs []error
	if b, ok := h.(opApplier); ok {
		errs = b.applyOps(idx, ops)
	} else {
		errs = make([]error, len(ops))
		for i, o := range ops {
			errs[i] = applyOne(h, idx, o)
		}
	}

	log := logOf(h)
	var failed []error
	for i, o := range ops {
		err := errs[i]
		if err != nil && o.Action == ActionDelete && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)) {
			// Already gone: a delete that finds nothing did its job.
			err = nil
		}
		if err != nil {
			st.Failed++
			failed = append(failed, fmt.Errorf("%s on %q: %w", o, link, err))
			if m != nil {
				m.spoil(idx)
			}
			continue
		}
		switch o.Action {
		case ActionAdd:
			st.Added++
		case ActionUpdate:
			st.Updated++
			if o.Table == TableNeigh {
				st.Remapped = append(st.Remapped, o.IP)
			}
		case ActionDelete:
			st.Deleted++
		}
		if o.Table == TableNeigh {
			st.NeighWrites++
		} else {
			st.FDBWrites++
		}
		log.Debug("overlay entry written", "device", link, "op", o.String())
	}
	st.Duration = time.Since(start)
	if st.Changed() {
		log.Info("synced vxlan entries", "device", link, "added", st.Added, "updated", st.Updated,
			"deleted", st.Deleted, "unchanged", st.Unchanged, "failed", st.Failed, "duration", st.Duration,
			"first", firstOps(ops, 4), "reason", "remote endpoints differ from kernel")
	}
	if len(failed) > 0 {
		if len(failed) > 10 {
			failed = append(failed[:10], fmt.Errorf("and %d more failed writes", len(failed)-10))
		}
		return st, fmt.Errorf("sync %q: %w", link, errors.Join(failed...))
	}
	return st, nil
}

func firstOps(ops []Op, n int) []string {
	var out []string
	for i, o := range ops {
		if i == n {
			out = append(out, fmt.Sprintf("... %d more", len(ops)-n))
			break
		}
		out = append(out, o.String())
	}
	return out
}

// applyOne performs one op with one request.
func applyOne(h Netlink, link int, o Op) error {
	n := neighFor(link, o)
	switch {
	case o.Action == ActionDelete:
		return h.NeighDel(n)
	case o.Flood():
		// The kernel refuses to replace non-unicast FDB entries: append.
		return h.NeighAppend(n)
	default:
		return h.NeighSet(n)
	}
}

// InvalidateNeigh deletes the dynamic neighbour entries for ips on link,
// meant for a local container's interface on an overlay network (h bound
// to the container's namespace) after Sync reported them in
// Stats.Remapped. The container's next packet to such an address triggers
// an ARP request that the VXLAN device's proxy answers at once with the new
// MAC; without this, the container keeps sending to the old MAC until its
// ARP entry expires (tens of seconds). Permanent entries and entries for
// other addresses are left alone; a missing entry is not an error.
func InvalidateNeigh(h Netlink, link string, ips []netip.Addr) error {
	if len(ips) == 0 {
		return nil
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("invalidate neighbours on %q: %w", link, err)
	}
	want := map[netip.Addr]bool{}
	for _, ip := range ips {
		want[ip.Unmap()] = true
	}
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		list, err := dumpNeigh(h, fam)
		if err != nil {
			return fmt.Errorf("invalidate neighbours on %q: list: %w", link, err)
		}
		for _, n := range list {
			ip, ok := netip.AddrFromSlice(n.IP)
			if n.LinkIndex != l.Attrs().Index || !ok || !want[ip.Unmap()] || n.State&netlink.NUD_PERMANENT != 0 {
				continue
			}
			if err := h.NeighDel(&netlink.Neigh{LinkIndex: n.LinkIndex, Family: fam, IP: n.IP}); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete neighbour %s on %q: %w", ip, link, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ClearLearned deletes the entries the bridge learned for macs behind the
// VXLAN device link (dynamic entries of the bridge on that port) and
// returns how many it deleted.
//
// Call it when a local endpoint with one of these MACs is attached to the
// overlay bridge, i.e. when a MAC moves here from another host: the bridge
// may still hold the MAC as learned behind the VXLAN port from the time it
// lived remotely, and drops frames arriving on that port for it (it never
// sends a frame back out of the port it came in on) until the new endpoint
// sends something itself or the entry ages out (300 s). Nothing else is
// touched.
func ClearLearned(h Netlink, link string, macs []net.HardwareAddr) (int, error) {
	if len(macs) == 0 {
		return 0, nil
	}
	vx, err := vxlanLink(h, link)
	if err != nil {
		return 0, fmt.Errorf("clear learned entries: %w", err)
	}
	want := map[string]bool{}
	for _, m := range macs {
		want[string(m)] = true
	}
	list, err := dumpNeigh(h, unix.AF_BRIDGE)
	if err != nil {
		return 0, fmt.Errorf("clear learned entries on %q: list fdb: %w", link, err)
	}
	n := 0
	var errs []error
	for _, e := range list {
		// The bridge's entries carry NDA_MASTER (not the NTF_MASTER flag) and
		// no NTF_SELF; learned ones are neither permanent (local) nor NOARP
		// (static).
		if e.LinkIndex != vx.Attrs().Index || e.Flags&netlink.NTF_SELF != 0 || e.MasterIndex == 0 ||
			e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 || !want[string(e.HardwareAddr)] {
			continue
		}
		del := &netlink.Neigh{LinkIndex: e.LinkIndex, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER,
			HardwareAddr: e.HardwareAddr, Vlan: e.Vlan}
		if err := h.NeighDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete learned entry %s on %q: %w", e.HardwareAddr, link, err))
			continue
		}
		logOf(h).Info("cleared learned bridge entry", "device", link, "mac", e.HardwareAddr.String(), "reason", "mac is now local")
		n++
	}
	return n, errors.Join(errs...)
}
