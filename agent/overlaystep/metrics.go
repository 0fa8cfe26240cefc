package overlaystep

import (
	"sync"
	"time"

	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
)

// Recorder takes the overlay step's measurements; agent/metrics.Registry
// implements it. Kinds are agent/metrics' write kinds ("fdb", "neigh",
// "device", ...) and gossip kind names.
type Recorder interface {
	// KernelWrites counts n writes of kind.
	KernelWrites(kind string, n int)
	// DriftRepaired counts a repair of an outside change of kind.
	DriftRepaired(kind string)
	// Converged records a record of kind programmed here lag after its
	// owner wrote it.
	Converged(kind string, lag time.Duration)
}

// maxLagPending bounds the records waiting to be timed: past it (a burst
// of tens of thousands between two programmings) the rest go untimed.
const maxLagPending = 1 << 16

// lagTracker keeps the origin times of other hosts' records that became
// live in the gossip table, until the next successful programming times
// them (the convergence-lag histogram: owner's write → programmed here).
type lagTracker struct {
	mu      sync.Mutex
	pending []pendingLag
}

type pendingLag struct {
	kind   gossip.Kind
	origin time.Time
}

// observe is gossip's observer: quick, under gossip's table lock.
// Records written before since (this member's start) are not timed: the
// table a joining or restarted host receives is old news, not a measure
// of convergence.
func (t *lagTracker) observe(self string, since time.Time) func(gossip.Change) {
	return func(ch gossip.Change) {
		if !ch.Live || ch.Owner == self || ch.Origin.IsZero() || ch.Origin.Before(since) {
			return
		}
		t.mu.Lock()
		if len(t.pending) < maxLagPending {
			t.pending = append(t.pending, pendingLag{ch.Key.Kind, ch.Origin})
		}
		t.mu.Unlock()
	}
}

// programmed times every waiting record as programmed at now.
func (t *lagTracker) programmed(r Recorder, now time.Time) {
	t.mu.Lock()
	p := t.pending
	t.pending = nil
	t.mu.Unlock()
	if r == nil {
		return
	}
	for _, l := range p {
		r.Converged(l.kind.String(), now.Sub(l.origin))
	}
}

// recordSync counts one overlay.Sync's writes, and its changes as drift
// repairs when the watcher woke this pass.
func (s *Step) recordSync(st overlay.Stats, repair bool) {
	r := s.Metrics
	if r == nil {
		return
	}
	r.KernelWrites("fdb", st.FDBWrites)
	r.KernelWrites("neigh", st.NeighWrites)
	if repair {
		if st.FDBWrites > 0 {
			r.DriftRepaired("fdb")
		}
		if st.NeighWrites > 0 {
			r.DriftRepaired("neigh")
		}
	}
}

// recordDevice counts a write to the VXLAN device or the gateway bridge's
// addresses, and a repair when the watcher woke this pass.
func (s *Step) recordDevice(kind string, changed, repair bool) {
	if s.Metrics == nil || !changed {
		return
	}
	s.Metrics.KernelWrites(kind, 1)
	if repair {
		s.Metrics.DriftRepaired(kind)
	}
}

// Cluster is this host's gossip member (nil without a cluster or before
// Start): the metrics read its counters at scrape time.
func (s *Step) Cluster() *gossip.Cluster {
	if s.gossip == nil {
		return nil
	}
	return s.gossip.c()
}
