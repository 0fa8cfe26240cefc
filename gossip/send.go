package gossip

// Sending: the broadcast queues, direct fan-out to small clusters and the
// complete-set Sync to members that just came up.

import (
	"iter"
	"net/netip"

	"github.com/hashicorp/memberlist"
)

type broadcast struct {
	name string
	msg  []byte
}

// Invalidates implements memberlist.Broadcast; Name does the work: a newer
// broadcast of a record replaces the queued one.
func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Name() string                          { return b.name }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}

func broadcastName(owner string, w *wireRecord) string {
	return owner + "\x00" + string(rune(w.kind)) + w.key
}

func queueRecords(q *memberlist.TransmitLimitedQueue, owner string, vtep netip.Addr, recs []wireRecord, limit int) {
	for i := range recs {
		g := group{owner: owner, vtep: vtep, recs: recs[i : i+1]}
		q.QueueBroadcast(&broadcast{name: broadcastName(owner, &recs[i]), msg: encodeUpdate(msgUpdate, &g)})
	}
	if q.NumQueued() > limit {
		q.Prune(limit)
	}
}

// publish spreads this host's new record versions: queued for gossip and,
// in a small cluster, sent straight to every member.
func (c *Cluster) publish(recs []wireRecord) {
	queueRecords(c.localQ, c.cfg.Name, c.cfg.Addr, recs, maxLocalQueue)
	if c.tun.DirectFanout <= 0 {
		return
	}
	g := group{owner: c.cfg.Name, vtep: c.cfg.Addr, recs: recs}
	var msgs [][]byte
	for _, part := range splitGroup(&g, directLimit) {
		msgs = append(msgs, encodeUpdate(msgUpdate, &part))
	}
	c.enqueue(job{msgs: msgs})
}

// relay queues records learned from a relayed update for gossip.
func (c *Cluster) relay(owner string, vtep netip.Addr, recs []wireRecord) {
	queueRecords(c.relayQ, owner, vtep, recs, maxRelayQueue)
}

func (c *Cluster) fanoutLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case j := <-c.jobs:
			if j.syncTo != "" {
				c.startSync(j.syncTo)
				continue
			}
			c.sendAll(j.msgs)
		}
	}
}

func (c *Cluster) sendAll(msgs [][]byte) {
	c.mu.Lock()
	var targets []memberlist.Node
	for name, m := range c.members {
		if name != c.cfg.Name && m.state == MemberAlive {
			targets = append(targets, m.node)
		}
	}
	c.mu.Unlock()
	if len(targets)+1 > c.tun.DirectFanout {
		return
	}
	for i := range targets {
		for _, msg := range msgs {
			if err := c.ml.SendBestEffort(&targets[i], msg); err != nil {
				c.log.Debug("direct send", "to", targets[i].Name, "err", err)
			}
		}
	}
}

// syncEveryone is the cluster size up to which every member sends its
// own records to a member that comes up; above it only the rejoinPickers
// members picked for that member do (syncsTo).
const syncEveryone = 64

// syncsTo reports whether this host sends its own records to member to,
// which just came up. In a small cluster every member does. In a large
// one that would be N-1 TCP connections to the new member and N(N-1) to
// form a cluster (at 370 in-process members, 2,525 dials in flight, most
// of them carrying records the member already had): the member's join
// push/pull already carried the whole table of the member it joined, the
// members picked for a member back from dead heal with it (heal.go), and
// whatever is still missing is caught by the probe-ack digest and the
// periodic push/pull digest. So above syncEveryone alive members only the
// rejoinPickers members picked for it send (bound.go's pick). c.mu held.
func (c *Cluster) syncsToLocked(to string) bool {
	return syncsTo(to, c.cfg.Name, int(c.alive.Load()), c.aliveNamesLocked())
}

// syncsTo is syncsToLocked's decision over values: self, in a cluster of
// alive members named by names, sends its own records to target.
func syncsTo(target, self string, alive int, names iter.Seq[string]) bool {
	return alive <= syncEveryone || picked(target, self, names, rejoinPickers)
}

// startSync sends our complete live set to a member that just came up (a
// new host, a restarted one, or one back from a partition), over TCP. It
// is what makes a join or a heal converge without waiting for push/pull,
// and its asOf removes whatever that member still holds of ours that we
// deleted meanwhile. Above syncEveryone members only the members picked
// for it send (syncsToLocked).
func (c *Cluster) startSync(to string) {
	c.mu.Lock()
	send := c.syncsToLocked(to)
	c.mu.Unlock()
	if !send {
		return
	}
	select {
	case c.syncSem <- struct{}{}:
	case <-c.stop:
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.syncSem }()
		c.mu.Lock()
		m := c.members[to]
		var node memberlist.Node
		alive := m != nil && m.state == MemberAlive
		if alive {
			node = m.node
		}
		g, ok := c.tab.ownSync(c.now())
		c.mu.Unlock()
		if !alive || !ok {
			return
		}
		if err := c.ml.SendReliable(&node, encodeUpdate(msgSync, &g)); err != nil {
			c.log.Debug("sync own records", "to", to, "err", err)
		}
	}()
}
