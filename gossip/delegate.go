package gossip

// memberlist's Delegate and EventDelegate, as conversions of Cluster so
// their methods stay off its API.

import (
	"fmt"

	"github.com/hashicorp/memberlist"
)

// delegate is Cluster seen as a memberlist.Delegate, so those methods stay
// off Cluster's API.
type delegate Cluster

func (d *delegate) c() *Cluster { return (*Cluster)(d) }

// NodeMeta implements memberlist.Delegate: features and key fingerprints
// (meta.go), fingerprints left out if they do not fit limit.
func (d *delegate) NodeMeta(limit int) []byte {
	m := d.c().ownMeta()
	b := encodeMeta(m)
	for len(b) > limit && len(m.keys) > 0 {
		m.keys = m.keys[:len(m.keys)-1]
		b = encodeMeta(m)
	}
	return b
}

// NotifyMsg implements memberlist.Delegate. It decodes into copies, so
// memberlist may reuse buf.
func (d *delegate) NotifyMsg(buf []byte) { d.c().receive(buf) }

// GetBroadcasts implements memberlist.Delegate: own updates first, relays
// in the space left, so relays never starve local changes.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	c := d.c()
	out := c.localQ.GetBroadcasts(overhead, limit)
	used := 0
	for _, b := range out {
		used += overhead + len(b)
	}
	if rest := limit - used; rest > overhead {
		out = append(out, c.relayQ.GetBroadcasts(overhead, rest)...)
	}
	return out
}

// LocalState implements memberlist.Delegate: a digest of the table when
// every member takes one and this is not a join, else the whole table
// (digest.go).
func (d *delegate) LocalState(join bool) []byte {
	c := d.c()
	now := c.now()
	c.mu.Lock()
	if !join && c.digestOKLocked() {
		ds := c.tab.digests()
		c.mu.Unlock()
		b := encodeDigest(c.cfg.Name, ds)
		c.digestBytes.Store(int64(len(b)))
		return b
	}
	c.mu.Unlock()
	b := c.wholeState(now)
	c.stateBytes.Store(int64(len(b)))
	return b
}

// MergeRemoteState implements memberlist.Delegate: a digest asks the
// sender for the owners that differ; a whole table takes the same merge
// path as updates, without relaying.
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	c := d.c()
	if len(buf) == 0 {
		return
	}
	m, err := decodeMessage(buf)
	if err == nil && m.typ != msgState && m.typ != msgDigest {
		err = fmt.Errorf("message type %d in push/pull", m.typ)
	}
	if err != nil {
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", err, "bytes", len(buf))
		return
	}
	if m.typ == msgDigest {
		c.mergeDigest(m)
		return
	}
	for i := range m.groups {
		c.apply(&m.groups[i], srcState)
	}
}

// events is Cluster seen as memberlist's EventDelegate and ConflictDelegate.
// memberlist calls these with its node lock held: they only touch our own
// state, never call back into memberlist.
type events Cluster

func (e *events) c() *Cluster { return (*Cluster)(e) }

// NotifyJoin implements memberlist.EventDelegate.
func (e *events) NotifyJoin(n *memberlist.Node) { e.c().memberUp(n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c().memberUp(n) }

// NotifyLeave implements memberlist.EventDelegate.
func (e *events) NotifyLeave(n *memberlist.Node) { e.c().memberDown(n) }

// NotifyConflict implements memberlist.ConflictDelegate.
func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	c := e.c()
	c.ctr.nameConflicts.Add(1)
	c.logReject("name conflict", "member", existing.Name, "addr", nodeAddr(existing), "other_addr", nodeAddr(other))
}
