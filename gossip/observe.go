package gossip

import "time"

// RecordKey identifies a record within its owner: two records with the
// same owner and key are versions of each other. ID is an opaque,
// comparable encoding of the record's identity fields.
type RecordKey struct {
	Kind Kind
	ID   string
}

// KeyOf returns r's key.
func KeyOf(r Record) RecordKey { return RecordKey{Kind: r.Kind(), ID: string(r.appendKey(nil))} }

// Change is one change of this member's live view, as Observe reports it.
type Change struct {
	// Owner is the record's host.
	Owner string
	// Key is the record's identity.
	Key RecordKey
	// Live: the record (a new version of it) became live; false: it left
	// the live view.
	Live bool
	// Origin is when the owner wrote this version, by the owner's clock;
	// zero when not known (a removal, or a member of a version before
	// origin times is in the cluster, so none are sent).
	Origin time.Time
}

// Observe sets fn to be called each time a record of any owner becomes
// live in this member's table or leaves its live view. It is how a caller
// times convergence (gossipbench and the agent's convergence-lag metric
// measure with it). fn runs under the table's lock on gossip's receive
// path: it must be quick and must not call back into the Cluster. nil
// removes it.
func (c *Cluster) Observe(fn func(Change)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fn == nil {
		c.tab.observe = nil
		return
	}
	c.tab.observe = func(owner string, k rkey, origin int64, live bool) {
		ch := Change{Owner: owner, Key: RecordKey{Kind: k.kind, ID: k.key}, Live: live}
		if origin > 0 {
			ch.Origin = time.UnixMilli(origin)
		}
		fn(ch)
	}
}
