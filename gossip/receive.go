package gossip

// Receiving: decode a message, check that its owner is the member that
// sent it, merge it into the table, and park updates from owners
// memberlist has not announced yet.

import (
	"net/netip"
	"time"
)

// receive handles a user message from memberlist (gossip, direct send or
// reliable send).
func (c *Cluster) receive(buf []byte) {
	m, err := decodeMessage(buf)
	if err != nil {
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", err, "bytes", len(buf))
		return
	}
	switch m.typ {
	case msgUpdate:
		c.apply(&m.groups[0], srcUpdate)
	case msgSync:
		c.apply(&m.groups[0], srcSync)
	case msgLeave:
		c.markLeaving(&m.groups[0])
	case msgWant:
		c.answerWant(m)
	case msgState:
		// The answer to our Want: merged like the push/pull it completes.
		for i := range m.groups {
			c.apply(&m.groups[i], srcState)
		}
	default:
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", "digest message outside push/pull")
	}
}

// verdicts of the ownership check.
const (
	verdictOK = iota
	verdictUnknown
	verdictStale
	verdictVTEP
)

// checkOwnerLocked applies the ownership rules to a group: its owner must be
// a member memberlist told us about, and its VTEP must be that member's
// address. Records owned by this host pass (the table refutes them if
// they are not ours).
func (c *Cluster) checkOwnerLocked(g *group) (int, netip.Addr) {
	if g.owner == c.cfg.Name {
		// Our own records: the table refutes versions that are not ours;
		// one that names another VTEP than ours is forged outright (every
		// other member refuses it by the rule below, so nobody holds it).
		if g.vtep != c.cfg.Addr {
			return verdictVTEP, c.cfg.Addr
		}
		return verdictOK, netip.Addr{}
	}
	m := c.members[g.owner]
	switch {
	case m == nil:
		return verdictUnknown, netip.Addr{}
	case m.reaped:
		return verdictStale, netip.Addr{}
	case g.vtep != m.addr.Addr():
		return verdictVTEP, m.addr.Addr()
	}
	return verdictOK, netip.Addr{}
}

// apply runs one group through the ownership checks and the table, then
// relays, refutes and notifies as the merge says.
func (c *Cluster) apply(g *group, src source) {
	now := c.now()
	c.mu.Lock()
	verdict, want := c.checkOwnerLocked(g)
	switch verdict {
	case verdictUnknown:
		if src != srcState {
			c.parkLocked(g, src, now)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.ctr.rejUnknown.Add(1)
		c.logReject("unknown owner", "owner", g.owner, "vtep", g.vtep, "records", len(g.recs))
		return
	case verdictStale:
		c.mu.Unlock()
		c.ctr.stale.Add(1)
		c.log.Debug("ignored gossip of a reaped member", "owner", g.owner, "records", len(g.recs), "source", src)
		return
	case verdictVTEP:
		c.mu.Unlock()
		c.ctr.rejVTEP.Add(1)
		c.logReject("vtep is not the owner's address", "owner", g.owner, "vtep", g.vtep, "member_addr", want, "records", len(g.recs))
		return
	}
	res := c.tab.merge(g, now)
	c.mu.Unlock()

	if len(res.accepted) > 0 {
		// Per group, at Debug: at Info a busy cluster would flood the log.
		c.log.Debug("accepted gossip", "owner", g.owner, "source", src, "records", len(res.accepted), "changed", res.changed)
	}
	if res.invalid > 0 {
		c.ctr.invalid.Add(uint64(res.invalid))
		c.logReject("invalid record", "owner", g.owner, "records", res.invalid, "err", res.firstInvalid)
	}
	if res.dropped > 0 {
		c.ctr.dropped.Add(uint64(res.dropped))
		c.log.Info("dropped records their owner no longer has", "owner", g.owner, "records", res.dropped)
	}
	if src == srcUpdate && len(res.accepted) > 0 {
		c.relay(g.owner, g.vtep, res.accepted)
	}
	if len(res.own) > 0 {
		c.ctr.refuted.Add(uint64(len(res.own)))
		c.log.Info("reissued own records over newer copies", "from", g.owner, "source", src, "records", len(res.own))
		c.publish(res.own)
	}
	if res.changed {
		c.notify()
	}
}

// markLeaving notes that a member announced its departure, so its coming
// (or past) NotifyLeave shows as "left" rather than "dead".
func (c *Cluster) markLeaving(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[g.owner]
	if m == nil || g.owner == c.cfg.Name || m.addr.Addr() != g.vtep {
		return
	}
	m.leaving = true
	if m.state == MemberDead {
		m.state = MemberLeft
	}
}

func (c *Cluster) parkLocked(g *group, src source, now time.Time) {
	if len(c.pending) >= maxPending {
		c.pending = c.pending[1:]
		c.ctr.rejUnknown.Add(1)
	}
	c.pending = append(c.pending, pendingGroup{g: *g, src: src, expires: now.Add(c.pendingTTL)})
	c.log.Debug("parked gossip of a member not yet known", "owner", g.owner, "records", len(g.recs), "source", src)
}
