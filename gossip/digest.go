package gossip

// Digest push/pull: memberlist's push/pull sends each side's LocalState
// every PushPullInterval whether or not anything differs. At 10,000
// endpoints a whole table is ~125 KiB compressed, ~1.2 MB to inflate,
// decode and compare, twice per period and member, for a table that almost
// always agrees (updates and direct sends already delivered it). So once
// every member announces featureDigest, a push/pull carries a digest
// instead: per owner, its record count and the sum of a hash of each
// stored record (ownerSum). The receiver compares it with its own
// summaries and, for the owners that differ, asks the sender for them
// (Want, a reliable message); the answer is a State message holding only
// those owners, merged like a push/pull. Both sides of a push/pull do this,
// so each pulls what it lacks: a table that agrees costs two digests of a
// few dozen bytes per owner and no decoding at all.
//
// A join push/pull (join=true, which includes the heal exchanges of
// heal.go) still sends the whole table: a member that joins needs all of
// it, and one more round trip there would slow convergence.

import (
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// recordHash hashes what two copies of a stored record must agree on:
// kind, key, version, tombstone, value and VTEP; not the tombstone's
// remaining lifetime or the origin time, which differ between members
// holding the same record. FNV-1a, then a finalising mix so that sums of
// hashes do not cancel in simple ways. Every member computes the same
// value, so it must never change within one featureDigest.
func recordHash(k rkey, e *entry) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	mix := func(b byte) { h = (h ^ uint64(b)) * prime }
	mixU := func(v uint64) {
		for range 8 {
			mix(byte(v))
			v >>= 8
		}
	}
	mix(byte(k.kind))
	mixU(uint64(len(k.key)))
	for i := 0; i < len(k.key); i++ {
		mix(k.key[i])
	}
	mixU(e.version)
	if e.tomb {
		mix(1)
	} else {
		mix(0)
		mixU(uint64(len(e.val)))
		for i := 0; i < len(e.val); i++ {
			mix(e.val[i])
		}
	}
	switch {
	case !e.vtep.IsValid():
		mix(0)
	case e.vtep.Is4():
		mix(4)
		for _, b := range e.vtep.As4() {
			mix(b)
		}
	default:
		mix(16)
		for _, b := range e.vtep.As16() {
			mix(b)
		}
	}
	// splitmix64's finaliser.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// ownerDigest is one owner's summary on the wire.
type ownerDigest struct {
	owner   string
	records uint64
	hash    uint64
}

// digests returns the summary of every owner with stored records, sorted
// by owner.
func (t *table) digests() []ownerDigest {
	out := make([]ownerDigest, 0, len(t.owners))
	for owner := range t.owners {
		if s := t.summary(owner); s.records > 0 {
			out = append(out, ownerDigest{owner: owner, records: uint64(s.records), hash: s.hash})
		}
	}
	sortDigests(out)
	return out
}

// differing returns the owners of ds whose records differ from ours. An
// owner the sender does not list is not asked for: if we hold records of
// it, the sender asks us.
func (t *table) differing(ds []ownerDigest) []string {
	var out []string
	for _, d := range ds {
		s := t.summary(d.owner)
		if uint64(s.records) != d.records || s.hash != d.hash {
			out = append(out, d.owner)
		}
	}
	return out
}

// stateOf returns the push/pull groups of owners (state, restricted to
// them).
func (t *table) stateOf(owners []string, now time.Time) []group {
	var out []group
	for _, owner := range owners {
		out = append(out, t.ownerState(owner, now)...)
	}
	return out
}

// digestOKLocked says whether push/pull may send a digest: at least one
// other member is known and every other member announces featureDigest
// (an older member would refuse the digest as malformed). c.mu held.
func (c *Cluster) digestOKLocked() bool {
	all, others := c.othersAnnounceLocked(featureDigest)
	return all && others > 0
}

// mergeDigest handles a push/pull digest: it asks the sender for the
// owners whose records differ from ours.
func (c *Cluster) mergeDigest(m *message) {
	c.ctr.digests.Add(1)
	c.mu.Lock()
	want := c.tab.differing(m.digests)
	node, alive := c.aliveNodeLocked(m.from)
	c.mu.Unlock()
	if len(want) == 0 {
		return
	}
	if !alive {
		c.log.Debug("push/pull digest from a member not alive here", "from", m.from, "owners", len(want))
		return
	}
	c.ctr.wanted.Add(uint64(len(want)))
	c.log.Debug("push/pull digest differs", "from", m.from, "owners", want)
	msg := encodeWant(c.cfg.Name, want)
	c.sendReliable(node, func() []byte { return msg })
}

// answerWant sends the member that asked the records of the owners it
// named, as a State message.
func (c *Cluster) answerWant(m *message) {
	c.mu.Lock()
	node, alive := c.aliveNodeLocked(m.from)
	c.mu.Unlock()
	if !alive {
		c.log.Debug("want from a member not alive here", "from", m.from)
		return
	}
	c.sendReliable(node, func() []byte {
		now := c.now()
		c.mu.Lock()
		gs := c.tab.stateOf(m.want, now)
		c.mu.Unlock()
		b := encodeState(gs)
		c.stateBytes.Store(int64(len(b)))
		return b
	})
}

// sendReliable builds and sends one message to node over TCP in a
// goroutine of its own, at most maxSyncs at once (shared with startSync),
// so memberlist's handlers never wait on a connection.
func (c *Cluster) sendReliable(node memberlist.Node, build func() []byte) {
	select {
	case c.syncSem <- struct{}{}:
	case <-c.stop:
		return
	default:
		// Every slot busy: the next push/pull asks again.
		c.ctr.fanoutDropped.Add(1)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.syncSem }()
		if err := c.ml.SendReliable(&node, build()); err != nil {
			c.log.Debug("push/pull follow-up", "to", node.Name, "err", err)
		}
	}()
}

func sortDigests(ds []ownerDigest) {
	slices.SortFunc(ds, func(a, b ownerDigest) int { return strings.Compare(a.owner, b.owner) })
}

// aliveNodeLocked returns the node of another member that is alive here
// (under c.mu): digests and wants are answered only to those.
func (c *Cluster) aliveNodeLocked(name string) (memberlist.Node, bool) {
	mb := c.members[name]
	if mb == nil || mb.state != MemberAlive || name == c.cfg.Name {
		return memberlist.Node{}, false
	}
	return mb.node, true
}
