package gossip

import (
	"cmp"
	"slices"
	"strings"
)

// Stats are counters of this member's gossip.
type Stats struct {
	// Members counts alive members, this host included.
	Members int `json:"members"`
	// LocalRecords, RemoteRecords and Tombstones count the table.
	LocalRecords  int `json:"local_records"`
	RemoteRecords int `json:"remote_records"`
	Tombstones    int `json:"tombstones"`
	// Conflicts counts shadowed records (Snapshot.Conflicts) as of the
	// latest Snapshot call; Stats itself does not resolve the table, which
	// costs milliseconds at ten thousand records.
	Conflicts int `json:"conflicts"`
	// Rejected counts refused messages: the sum of the three below.
	Rejected uint64 `json:"rejected"`
	// RejectedVTEP: records whose VTEP is not their owner's member address.
	RejectedVTEP uint64 `json:"rejected_vtep"`
	// RejectedUnknownOwner: records of a host that is not a member.
	RejectedUnknownOwner uint64 `json:"rejected_unknown_owner"`
	// RejectedMalformed: messages that did not decode.
	RejectedMalformed uint64 `json:"rejected_malformed"`
	// InvalidRecords: records of a known kind with invalid fields.
	InvalidRecords uint64 `json:"invalid_records"`
	// Refuted counts own records reissued over newer copies (a previous
	// life of this host, or a forgery).
	Refuted uint64 `json:"refuted"`
	// Reaped counts records removed because their host stayed dead.
	Reaped uint64 `json:"reaped"`
	// Dropped counts records removed because their owner's complete set
	// no longer had them.
	Dropped uint64 `json:"dropped"`
	// Stale counts messages ignored because their owner was reaped.
	Stale uint64 `json:"stale"`
	// NameConflicts counts hosts that tried to join under a taken name.
	NameConflicts uint64 `json:"name_conflicts"`
	// BytesSent and BytesReceived count all gossip traffic (UDP and TCP),
	// memberlist's own included; Packets* count UDP packets.
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	// BroadcastsQueued counts broadcasts waiting in the local and relay
	// queues.
	BroadcastsQueued int `json:"broadcasts_queued"`
	// FanoutDropped counts direct-send jobs, and push/pull follow-ups
	// (Want and its answer), dropped on overflow.
	FanoutDropped uint64 `json:"fanout_dropped"`
	// StateBytes is the size of the last whole-table State sent: a join
	// push/pull, or the answer to a Want (only the owners asked for).
	StateBytes int `json:"state_bytes"`
	// DigestBytes is the size of the last push/pull Digest sent: what a
	// push/pull costs while the tables agree (digest.go).
	DigestBytes int `json:"digest_bytes"`
	// Digests counts push/pull digests received; Wanted counts the owners
	// asked for because a digest showed they differ.
	Digests uint64 `json:"digests"`
	Wanted  uint64 `json:"wanted"`
	// Exchanges counts full-state exchanges (join push/pulls) this host
	// started: heals and rejoins of members that died. HealSkipped counts
	// heal requests dropped by the per-host bound (bound.go).
	Exchanges   uint64 `json:"exchanges"`
	HealSkipped uint64 `json:"heal_skipped"`
	// HealDead, HealUnreachable and HealBehind count the heal exchanges
	// started by reason (heal.go): back from dead, answering after missed
	// probes, behind the member's ack digest. Exchanges minus their sum
	// are rejoins.
	HealDead        uint64 `json:"heal_dead"`
	HealUnreachable uint64 `json:"heal_unreachable"`
	HealBehind      uint64 `json:"heal_behind"`
}

// AliveMembers returns the number of alive members, this host included
// (Stats.Members), without Stats' walk of the table.
func (c *Cluster) AliveMembers() int { return int(c.alive.Load()) }

// Stats returns the counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		Members:              int(c.alive.Load()),
		RejectedVTEP:         c.ctr.rejVTEP.Load(),
		RejectedUnknownOwner: c.ctr.rejUnknown.Load(),
		RejectedMalformed:    c.ctr.rejMalformed.Load(),
		InvalidRecords:       c.ctr.invalid.Load(),
		Refuted:              c.ctr.refuted.Load(),
		Reaped:               c.ctr.reaped.Load(),
		Dropped:              c.ctr.dropped.Load(),
		Stale:                c.ctr.stale.Load(),
		NameConflicts:        c.ctr.nameConflicts.Load(),
		BytesSent:            c.tr.bytesOut.Load(),
		BytesReceived:        c.tr.bytesIn.Load(),
		PacketsSent:          c.tr.pktsOut.Load(),
		PacketsReceived:      c.tr.pktsIn.Load(),
		BroadcastsQueued:     c.localQ.NumQueued() + c.relayQ.NumQueued(),
		FanoutDropped:        c.ctr.fanoutDropped.Load(),
		StateBytes:           int(c.stateBytes.Load()),
		DigestBytes:          int(c.digestBytes.Load()),
		Digests:              c.ctr.digests.Load(),
		Wanted:               c.ctr.wanted.Load(),
		Exchanges:            c.ctr.exchanges.Load(),
		HealSkipped:          c.ctr.healSkipped.Load(),
		HealDead:             c.ctr.healDead.Load(),
		HealUnreachable:      c.ctr.healUnreachable.Load(),
		HealBehind:           c.ctr.healBehind.Load(),
	}
	s.Rejected = s.RejectedVTEP + s.RejectedUnknownOwner + s.RejectedMalformed
	c.mu.Lock()
	s.LocalRecords, s.RemoteRecords, s.Tombstones = c.tab.counts()
	if c.tab.snap != nil {
		s.Conflicts = len(c.tab.snap.Conflicts)
	}
	c.mu.Unlock()
	return s
}

// FullStateSize encodes this member's whole table as a push/pull State
// (what a joining member receives) and returns its size in bytes.
func (c *Cluster) FullStateSize() int {
	now := c.now()
	c.mu.Lock()
	gs := c.tab.state(now)
	c.mu.Unlock()
	return len(encodeState(gs))
}

// Record states RecordCounts reports.
const (
	// StateLive: a live record of a live member (or of this host).
	StateLive = "live"
	// StateTombstone: a deletion remembered until its lifetime ends.
	StateTombstone = "tombstone"
	// StateReapPending: a live record of a dead or departed member,
	// removed when the member has been gone for ReapAfter.
	StateReapPending = "reap-pending"
)

// RecordCount is how many records of one kind are in one state.
type RecordCount struct {
	Kind    Kind
	State   string
	Records int
}

// RecordCounts counts the table by kind and state (StateLive,
// StateTombstone, StateReapPending), sorted by kind then state; kinds
// this member knows are listed even when empty.
func (c *Cluster) RecordCounts() []RecordCount {
	type ks struct {
		kind  Kind
		state string
	}
	n := map[ks]int{}
	for _, k := range []Kind{KindEndpoint, KindBlockClaim} {
		for _, s := range []string{StateLive, StateTombstone, StateReapPending} {
			n[ks{k, s}] = 0
		}
	}
	c.mu.Lock()
	for owner, recs := range c.tab.owners {
		gone := false
		if m := c.members[owner]; owner != c.cfg.Name && m != nil && m.state != MemberAlive {
			gone = true
		}
		for k, e := range recs {
			switch {
			case e.tomb:
				n[ks{k.kind, StateTombstone}]++
			case gone:
				n[ks{k.kind, StateReapPending}]++
			default:
				n[ks{k.kind, StateLive}]++
			}
		}
	}
	c.mu.Unlock()
	out := make([]RecordCount, 0, len(n))
	for k, v := range n {
		out = append(out, RecordCount{Kind: k.kind, State: k.state, Records: v})
	}
	slices.SortFunc(out, func(a, b RecordCount) int {
		if a.Kind != b.Kind {
			return cmp.Compare(a.Kind, b.Kind)
		}
		return strings.Compare(a.State, b.State)
	})
	return out
}
