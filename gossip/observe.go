package gossip

// RecordKey identifies a record within its owner: two records with the
// same owner and key are versions of each other. ID is an opaque,
// comparable encoding of the record's identity fields.
type RecordKey struct {
	Kind Kind
	ID   string
}

// KeyOf returns r's key.
func KeyOf(r Record) RecordKey { return RecordKey{Kind: r.Kind(), ID: string(r.appendKey(nil))} }

// Observe sets fn to be called each time a record of any owner becomes
// live in this member's table (live) or leaves its live view (!live). It
// is how a caller times convergence (gossipbench measures with it). fn
// runs under the table's lock on gossip's receive path: it must be quick
// and must not call back into the Cluster. nil removes it.
func (c *Cluster) Observe(fn func(owner string, k RecordKey, live bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fn == nil {
		c.tab.observe = nil
		return
	}
	c.tab.observe = func(owner string, k rkey, _ uint64, live bool) {
		fn(owner, RecordKey{Kind: k.kind, ID: k.key}, live)
	}
}
