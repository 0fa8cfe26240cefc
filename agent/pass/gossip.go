package pass

import (
	"time"

	"github.com/vxmesh/vxmesh/gossip"
)

// GossipView is the gossip table, the members and the counters as read
// once at the top of a pass (Snapshot.Gossip).
type GossipView struct {
	// At is when the view was read.
	At time.Time
	// Snapshot is the live table with gossip's own conflict resolution.
	Snapshot gossip.Snapshot
	// Members are the cluster members, this host included.
	Members []gossip.Member
	// Stats are the gossip counters (rejected messages among them).
	Stats gossip.Stats
	// Ready is false until this host has heard the cluster: another member
	// has been alive for a moment (its table came with the join), or the
	// host has no join peers, or the join wait has passed since start.
	// Until then the overlay step programs and publishes nothing, so a
	// restarted agent never replaces the kernel's entries with a table
	// that is still empty.
	Ready bool
	// ReadyAt is when Ready became true.
	ReadyAt time.Time
}

// Alive reports whether the named host is a live member (or this host).
func (v *GossipView) Alive(host string) bool {
	if v == nil {
		return false
	}
	if host == v.Snapshot.Self {
		return true
	}
	for _, m := range v.Members {
		if m.Name == host {
			return m.State == gossip.MemberAlive || m.State == gossip.MemberSuspect
		}
	}
	return false
}
