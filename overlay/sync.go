package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

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
	Duration  time.Duration
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
	actual, err := readState(h, vx)
	if err != nil {
		return st, fmt.Errorf("sync %q: %w", link, err)
	}
	want, conflicts := Desired(remote)
	st.Wanted, st.Conflicts = want.Len(), conflicts
	ops, unchanged := plan(actual, remote)
	st.Unchanged = unchanged
	if len(ops) == 0 {
		st.Duration = time.Since(start)
		return st, nil
	}

	var errs []error
	if b, ok := h.(opApplier); ok {
		errs = b.applyOps(vx.Attrs().Index, ops)
	} else {
		errs = make([]error, len(ops))
		for i, o := range ops {
			errs[i] = applyOne(h, vx.Attrs().Index, o)
		}
	}

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
			continue
		}
		switch o.Action {
		case ActionAdd:
			st.Added++
		case ActionUpdate:
			st.Updated++
		case ActionDelete:
			st.Deleted++
		}
		slog.Debug("overlay entry written", "device", link, "op", o.String())
	}
	st.Duration = time.Since(start)
	if st.Changed() {
		slog.Info("synced vxlan entries", "device", link, "added", st.Added, "updated", st.Updated,
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
