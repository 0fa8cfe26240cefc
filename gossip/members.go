package gossip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberState is a member's state as this node sees it.
type MemberState uint8

// Member states.
const (
	// MemberAlive answers probes.
	MemberAlive MemberState = iota
	// MemberSuspect missed probes and has a moment to refute.
	MemberSuspect
	// MemberDead was declared failed; its records stay until ReapAt.
	MemberDead
	// MemberLeft left on purpose (agent stopped); its records stay until
	// ReapAt, as for a dead member, so a restart drops no traffic.
	MemberLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s MemberState) String() string {
	switch s {
	case MemberAlive:
		return "alive"
	case MemberSuspect:
		return "suspect"
	case MemberDead:
		return "dead"
	case MemberLeft:
		return "left"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}

// MarshalText writes the state's name (JSON).
func (s MemberState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Member is one cluster member as this node sees it.
type Member struct {
	// Name is the host name.
	Name string `json:"name"`
	// Addr is the memberlist address: the host's underlay address (its VTEP).
	Addr netip.AddrPort `json:"address"`
	// State is alive, suspect, dead or left.
	State MemberState `json:"state"`
	// Records counts the host's live records in the table.
	Records int `json:"records"`
	// Since is when the member entered its state.
	Since time.Time `json:"since"`
	// LastSeen is when the member was last known alive (now, if it is).
	LastSeen time.Time `json:"last_seen"`
	// ReapAt is when a dead or departed member's records are removed.
	ReapAt time.Time `json:"reap_at,omitzero"`
	// Self marks this host.
	Self bool `json:"self,omitempty"`
	// KeyFingerprints are the fingerprints of the member's gossip keys,
	// the encrypting one first, as it announces them; nil when it does not
	// (no encryption, or a version before node meta).
	KeyFingerprints []string `json:"key_fingerprints,omitempty"`
	// ClockOffset is the member's clock minus this host's, measured by
	// gossip's probes; valid when ClockKnown.
	ClockOffset time.Duration `json:"clock_offset,omitempty"`
	ClockKnown  bool          `json:"clock_known,omitempty"`
}

// member is the directory entry behind Member, fed by memberlist events.
type member struct {
	node     memberlist.Node // copy, for direct sends
	addr     netip.AddrPort
	state    MemberState // alive, dead or left (suspect comes from memberlist)
	since    time.Time
	lastSeen time.Time
	reaped   bool // records removed; records arriving for it are ignored
	leaving  bool // it announced a Leave: down means left, not dead
	meta     nodeMeta
	// clockOffset is its clock minus ours, from the last probe's ack.
	clockOffset time.Duration
	clockKnown  bool
}

func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

func copyNode(n *memberlist.Node) memberlist.Node {
	c := *n
	c.Addr = append([]byte(nil), n.Addr...)
	c.Meta = append([]byte(nil), n.Meta...)
	return c
}

// Members returns every member this host knows, itself included, sorted by
// name. Dead and departed members stay listed until their records are
// reaped and forgotten.
//
// An alive member is reported suspect when it missed a probe since its
// last answer (heal.go: memberlist does not publish its own suspicion).
func (c *Cluster) Members() []Member {
	now := c.now()
	alive := int(c.alive.Load())
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, 0, len(c.members))
	for name, m := range c.members {
		mb := Member{
			Name:     name,
			Addr:     m.addr,
			State:    m.state,
			Records:  c.tab.liveCount(name),
			Since:    m.since,
			LastSeen: m.lastSeen,
			Self:     name == c.cfg.Name,

			KeyFingerprints: slices.Clone(m.meta.keys),
			ClockOffset:     m.clockOffset,
			ClockKnown:      m.clockKnown,
		}
		if mb.Self {
			mb.KeyFingerprints, mb.ClockOffset, mb.ClockKnown = c.ownMeta().keys, 0, true
		}
		switch {
		case m.state == MemberAlive:
			mb.LastSeen = now
			if !mb.Self && c.heal.overdue(name, now, alive, c.tun.ProbeInterval) {
				mb.State = MemberSuspect
			}
		case name != c.cfg.Name:
			mb.ReapAt = m.since.Add(c.cfg.ReapAfter)
		}
		out = append(out, mb)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) memberUp(n *memberlist.Node) {
	now := c.now()
	c.mu.Lock()
	m := c.members[n.Name]
	wasAlive := m != nil && m.state == MemberAlive
	known := m != nil
	if m == nil {
		m = &member{}
		c.members[n.Name] = m
	}
	m.node = copyNode(n)
	m.addr = nodeAddr(n)
	m.lastSeen = now
	meta, metaErr := decodeMeta(n.Meta)
	m.meta = meta
	c.tab.sendOrigin = c.originOKLocked()
	c.tab.ackDigest.Store(c.ackDigestOKLocked())
	if !wasAlive {
		m.state, m.since, m.reaped, m.leaving = MemberAlive, now, false, false
		c.alive.Add(1)
	}
	hasPending := slices.ContainsFunc(c.pending, func(p pendingGroup) bool { return p.g.owner == n.Name })
	heal := known && !wasAlive && n.Name != c.cfg.Name && c.pickedLocked(n.Name)
	addr := m.addr
	c.mu.Unlock()
	if metaErr != nil {
		c.log.Warn("member meta", "member", n.Name, "err", metaErr)
	}
	if !wasAlive && n.Name != c.cfg.Name {
		c.log.Info("member up", "member", n.Name, "addr", addr, "keys", meta.keys)
		c.enqueue(job{syncTo: n.Name})
		c.heal.up(n.Name, now)
		if heal {
			// Back from dead or left: heal.go; only the members picked
			// for it (bound.go).
			c.healWith(n.Name, addr, "dead")
		}
	}
	if hasPending {
		c.poke()
	}
}

func (c *Cluster) memberDown(n *memberlist.Node) {
	now := c.now()
	st := MemberDead
	if n.State == memberlist.StateLeft {
		st = MemberLeft
	}
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		m = &member{node: copyNode(n), addr: nodeAddr(n), since: now}
		c.members[n.Name] = m
	}
	if m.state == MemberAlive {
		c.alive.Add(-1)
		m.since, m.lastSeen = now, now
	}
	if m.leaving {
		st = MemberLeft
	}
	m.state = st
	c.mu.Unlock()
	c.heal.forget(n.Name)
	if n.Name != c.cfg.Name {
		c.log.Info("member down", "member", n.Name, "state", st, "reap_after", c.cfg.ReapAfter)
	}
	c.poke()
}

// maintain reaps the records of members dead for ReapAfter, forgets them a
// tombstone lifetime later, collects tombstones and retries parked updates.
func (c *Cluster) maintain() {
	now := c.now()
	var replay []pendingGroup
	type reapedMember struct {
		name    string
		records int
	}
	var reapedNames []reapedMember
	reaped, expired := 0, 0
	c.mu.Lock()
	for name, m := range c.members {
		if name == c.cfg.Name || m.state == MemberAlive {
			continue
		}
		switch {
		case !m.reaped && !now.Before(m.since.Add(c.cfg.ReapAfter)):
			n := c.tab.reap(name)
			reaped += n
			m.reaped = true
			reapedNames = append(reapedNames, reapedMember{name, n})
		case m.reaped && now.After(m.since.Add(c.cfg.ReapAfter+c.cfg.TombstoneTTL)):
			delete(c.members, name)
			c.heal.forget(name)
			c.tab.sendOrigin = c.originOKLocked()
			c.tab.ackDigest.Store(c.ackDigestOKLocked())
		}
	}
	c.tab.gc(now)
	keep := c.pending[:0]
	for _, p := range c.pending {
		switch {
		case c.members[p.g.owner] != nil:
			replay = append(replay, p)
		case now.After(p.expires):
			expired++
		default:
			keep = append(keep, p)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	c.mu.Unlock()

	for _, r := range reapedNames {
		c.log.Info("reaped records of departed member", "member", r.name, "records", r.records, "after", c.cfg.ReapAfter)
	}
	if reaped > 0 {
		c.ctr.reaped.Add(uint64(reaped))
		c.notify()
	}
	if expired > 0 {
		c.ctr.rejUnknown.Add(uint64(expired))
		c.logReject("unknown owner", "groups", expired)
	}
	for i := range replay {
		c.apply(&replay[i].g, replay[i].src)
	}
}
