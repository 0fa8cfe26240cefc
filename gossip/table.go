package gossip

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// rkey identifies a record within its owner.
type rkey struct {
	kind Kind
	key  string
}

// entry is one stored version of a record.
type entry struct {
	version uint64
	tomb    bool
	expires time.Time // tombstones: when they are collected
	vtep    netip.Addr
	val     string
	rec     Record // decoded live record; nil for tombstones and unknown kinds
	origin  int64  // live records: Unix ms the owner wrote it; 0 unknown
}

// order is what decides between two versions of one record: the higher
// version, then a tombstone over a live record, then the greater value and
// VTEP bytes. Every node applies the same rule, so ties end the same way
// everywhere.
type order struct {
	version uint64
	tomb    bool
	val     string
	vtep    netip.Addr
}

func (e *entry) order() order { return order{e.version, e.tomb, e.val, e.vtep} }

func (w *wireRecord) order(vtep netip.Addr) order { return order{w.version, w.tomb, w.val, vtep} }

// beats reports whether a wins over b.
func (a order) beats(b order) bool {
	if a.version != b.version {
		return a.version > b.version
	}
	if a.tomb != b.tomb {
		return a.tomb
	}
	if a.val != b.val {
		return a.val > b.val
	}
	return a.vtep.Compare(b.vtep) > 0
}

// table is the replicated record table without any networking: records per
// owner, the local Lamport clock, tombstones, and the merge rules. It is
// not safe for concurrent use; Cluster locks around it.
type table struct {
	self    string
	vtep    netip.Addr
	tombTTL time.Duration

	// clock is a Lamport clock whose initial value is the start time in
	// microseconds, so a restarted node's versions exceed those of its
	// previous life without persisting anything; witnessing every version
	// seen (including our own records coming back) covers clock steps.
	clock uint64

	owners map[string]map[rkey]*entry
	// sums caches each owner's summary (push/pull digests, Members'
	// record counts); touch drops an owner's entry when its records change.
	sums map[string]ownerSum

	// declared is set by the first setLocal. Before it, this host claims
	// nothing about its own records: it sends no asOf and refutes nothing,
	// so a restarting agent that has not declared its records yet does not
	// delete the ones the cluster still routes to. Copies of its previous
	// life's records that arrive meanwhile are kept like any other owner's
	// (relay copies, left out of the snapshot), so a member that joins
	// this host before it declares still receives them (docs/overlay.md,
	// "Gossip readiness and agent restarts"); the first setLocal
	// supersedes them.
	declared bool

	// nextGC is the earliest expiry of a stored tombstone (zero: none),
	// so gc scans the table only when one is due rather than on every
	// maintenance tick (10,000 records took 3 ms a tick).
	nextGC time.Time

	gen     uint64 // bumped when the live view changes
	mod     uint64 // bumped when any stored record changes (touch)
	snap    *Snapshot
	snapGen uint64

	// observe, when set, is called after a live record is stored (live) or
	// a record leaves the live view (!live), with the live record's origin
	// time (Unix ms, 0 unknown). Cluster.Observe sets it.
	observe func(owner string, k rkey, origin int64, live bool)

	// sendOrigin says outgoing records carry their origin time: every
	// member decodes it (Cluster keeps it current).
	sendOrigin bool

	// seen is, per other owner, the highest version of that owner's
	// records (or complete-set asOf) this host has received; ownSeen is
	// the version of this host's latest own change. A member's probe ack
	// carries its ownSeen, so a prober whose seen is lower knows it missed
	// a change (heal.go, "Digest"). Tombstone collection does not lower
	// them; reaping an owner forgets it. ownSeen and ackDigest (every
	// other member accepts the digest in acks, kept current like
	// sendOrigin) are atomics: memberlist asks for an ack payload on its
	// packet handler, which must never wait for the cluster's mutex.
	seen      map[string]uint64
	ownSeen   atomic.Uint64
	ackDigest atomic.Bool
}

func newTable(self string, vtep netip.Addr, tombTTL time.Duration, now time.Time) *table {
	return &table{
		self:    self,
		vtep:    vtep,
		tombTTL: tombTTL,
		clock:   max(uint64(now.UnixMicro()), 1),
		owners:  map[string]map[rkey]*entry{},
		seen:    map[string]uint64{},
		sums:    map[string]ownerSum{},
	}
}

// saw records that owner's records up to version v were received.
func (t *table) saw(owner string, v uint64) {
	if owner != t.self && v > t.seen[owner] {
		t.seen[owner] = v
	}
}

// behind reports whether this host has not received owner's records up
// to version v (an owner's digest, see seen).
func (t *table) behind(owner string, v uint64) bool {
	return owner != t.self && t.seen[owner] < v
}

// ownerSum summarises one owner's stored records. Two members whose sums of
// an owner are equal hold the same records of it (up to a 64-bit hash
// collision), so push/pull only sends the owners whose sums differ
// (digest.go).
type ownerSum struct {
	records int    // stored records, tombstones included
	live    int    // live records
	hash    uint64 // sum of recordHash over the stored records
}

// touch notes that owner's records changed.
func (t *table) touch(owner string) {
	delete(t.sums, owner)
	t.mod++
}

// noteTomb notes a stored tombstone for gc.
func (t *table) noteTomb(e *entry) {
	if e.tomb && (t.nextGC.IsZero() || e.expires.Before(t.nextGC)) {
		t.nextGC = e.expires
	}
}

// summary returns owner's summary, computed once per change.
func (t *table) summary(owner string) ownerSum {
	if s, ok := t.sums[owner]; ok {
		return s
	}
	if _, ok := t.owners[owner]; !ok {
		// Not cached: a digest may name any owner, and remembering every
		// name a member sent would let it grow this map without bound.
		return ownerSum{}
	}
	var s ownerSum
	for k, e := range t.owners[owner] {
		s.records++
		if !e.tomb {
			s.live++
		}
		s.hash += recordHash(k, e)
	}
	t.sums[owner] = s
	return s
}

func (t *table) tick() uint64 {
	t.clock++
	return t.clock
}

func (t *table) witness(v uint64) {
	if v > t.clock {
		t.clock = v
	}
}

func (t *table) ownerMap(owner string) map[rkey]*entry {
	m := t.owners[owner]
	if m == nil {
		m = map[rkey]*entry{}
		t.owners[owner] = m
	}
	return m
}

func (t *table) wireOf(k rkey, e *entry, now time.Time) wireRecord {
	w := wireRecord{kind: k.kind, tomb: e.tomb, version: e.version, key: k.key, val: e.val}
	if t.sendOrigin && !e.tomb {
		w.origin = e.origin
	}
	if e.tomb {
		w.ttl = max(e.expires.Sub(now), time.Millisecond)
	}
	return w
}

func (t *table) changed(owner string, k rkey, origin int64, live bool) {
	t.gen++
	if t.observe != nil {
		t.observe(owner, k, origin, live)
	}
}

// setLocal makes recs the complete set of this host's records: new and
// changed records get new versions, records no longer declared become
// tombstones, unchanged ones are left alone. The first call issues every
// record anew: what the table holds of this host then are relay copies of
// its previous life, which the new versions supersede everywhere (and
// those no longer declared become tombstones). It returns the wire records
// to publish. On a validation error nothing changes.
func (t *table) setLocal(recs []Record, now time.Time) ([]wireRecord, error) {
	type want struct {
		rec Record
		val string
	}
	wanted := make(map[rkey]want, len(recs))
	for i, r := range recs {
		if r == nil {
			return nil, fmt.Errorf("record %d: nil", i)
		}
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		if o := r.Owner(); o != "" && o != t.self {
			return nil, fmt.Errorf("record %d: owner %q is not this host %q", i, o, t.self)
		}
		if e, ok := r.(Endpoint); ok && e.VTEP.IsValid() && e.VTEP != t.vtep {
			return nil, fmt.Errorf("record %d: VTEP %s is not this host's address %s", i, e.VTEP, t.vtep)
		}
		s := r.stamped(t.self, t.vtep)
		k := rkey{s.Kind(), string(s.appendKey(nil))}
		if _, dup := wanted[k]; dup {
			return nil, fmt.Errorf("record %d: duplicate %s %s", i, k.kind, describeKey(s))
		}
		wanted[k] = want{s, string(s.appendValue(nil))}
	}

	first := !t.declared
	t.declared = true
	own := t.ownerMap(t.self)
	var out []wireRecord
	keys := slices.SortedFunc(maps.Keys(wanted), compareKeys)
	for _, k := range keys {
		w := wanted[k]
		if e := own[k]; !first && e != nil && !e.tomb && e.val == w.val && e.vtep == t.vtep {
			continue
		}
		e := &entry{version: t.tick(), vtep: t.vtep, val: w.val, rec: w.rec, origin: now.UnixMilli()}
		own[k] = e
		t.touch(t.self)
		out = append(out, t.wireOf(k, e, now))
		t.changed(t.self, k, e.origin, true)
	}
	for _, k := range slices.SortedFunc(maps.Keys(own), compareKeys) {
		e := own[k]
		if e.tomb {
			continue
		}
		if _, ok := wanted[k]; ok {
			continue
		}
		ne := &entry{version: t.tick(), tomb: true, expires: now.Add(t.tombTTL), vtep: t.vtep}
		own[k] = ne
		t.touch(t.self)
		t.noteTomb(ne)
		out = append(out, t.wireOf(k, ne, now))
		if e.rec != nil { // not a relay copy, which was never visible
			t.changed(t.self, k, 0, false)
		}
	}
	if len(out) > 0 {
		t.ownSeen.Store(t.clock)
	}
	return out, nil
}

func compareKeys(a, b rkey) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	return cmp.Compare(a.key, b.key)
}

// describeKey prints a record's identity for messages.
func describeKey(r Record) string {
	switch r := r.(type) {
	case Endpoint:
		return fmt.Sprintf("%s on %q", r.IP, r.Network)
	case BlockClaim:
		return fmt.Sprintf("%s on %q", r.Prefix, r.Network)
	}
	return "?"
}

// mergeResult says what a merge did.
type mergeResult struct {
	// accepted are records stored because they were newer than ours: they
	// are relayed when the message was a relayed update.
	accepted []wireRecord
	// own are this host's records issued anew to refute a newer copy of
	// them (a previous life of this host, or a forgery): publish them.
	own []wireRecord
	// changed says the live view changed.
	changed bool
	// dropped counts records removed because a complete set (asOf) of
	// their owner did not contain them.
	dropped int
	// invalid counts records of a known kind that did not decode.
	invalid int
	// firstInvalid describes the first of them.
	firstInvalid error
}

// merge applies a group that has passed the ownership checks: every record
// replaces ours when it wins by order; a group with asOf removes the
// owner's older records it does not list. Records owned by this host are
// never taken from others once it has declared: a newer copy is refuted
// instead. Before that they are relay copies (see table.declared).
func (t *table) merge(g *group, now time.Time) mergeResult {
	var res mergeResult
	var listed map[rkey]bool
	if g.asOf > 0 {
		listed = make(map[rkey]bool, len(g.recs))
	}
	for i := range g.recs {
		w := &g.recs[i]
		k := rkey{w.kind, w.key}
		t.saw(g.owner, w.version)
		if listed != nil {
			listed[k] = true
		}
		// Most records in a push/pull are ones we already have: compare
		// before paying for a decode.
		recs := t.ownerMap(g.owner)
		old := recs[k]
		if old != nil && !w.order(g.vtep).beats(old.order()) {
			t.witness(w.version)
			continue
		}
		var rec Record
		if !w.tomb {
			var err error
			rec, err = decodeRecord(w.kind, w.key, w.val, g.owner, g.vtep)
			if err != nil {
				res.invalid++
				if res.firstInvalid == nil {
					res.firstInvalid = err
				}
				continue
			}
		}
		t.witness(w.version)
		if g.owner == t.self {
			if t.declared {
				t.mergeOwn(k, w, g.vtep, now, &res)
				continue
			}
			// Not declared yet: keep it as a relay copy of our previous
			// life (see declared), claiming nothing: invisible in the
			// snapshot, where our records will appear once we declare.
			rec = nil
		}
		e := &entry{version: w.version, tomb: w.tomb, vtep: g.vtep, val: w.val, rec: rec, origin: w.origin}
		if w.tomb {
			ttl := t.tombTTL
			if w.ttl > 0 && w.ttl < ttl {
				ttl = w.ttl
			}
			e.expires = now.Add(ttl)
		}
		recs[k] = e
		t.touch(g.owner)
		t.noteTomb(e)
		wa := *w
		if w.tomb {
			wa.ttl = e.expires.Sub(now)
		}
		if !t.sendOrigin {
			wa.origin = 0
		}
		res.accepted = append(res.accepted, wa)
		// Only records of known kinds are visible (in snapshots).
		wasVisible := old != nil && !old.tomb && old.rec != nil
		isVisible := !w.tomb && rec != nil
		switch {
		case (wasVisible || isVisible) && !(wasVisible && isVisible && old.val == w.val && old.vtep == g.vtep):
			res.changed = true
			t.changed(g.owner, k, w.origin, isVisible)
		case wasVisible && isVisible:
			// Only the version moved (an owner declaring anew after a
			// restart): nothing to program, but snapshots carry versions,
			// which decide address conflicts, so the cached one is stale.
			t.gen++
		}
	}
	if g.asOf > 0 && g.owner != t.self {
		t.witness(g.asOf)
		t.saw(g.owner, g.asOf)
		recs := t.owners[g.owner]
		for k, e := range recs {
			if !e.tomb && e.version <= g.asOf && !listed[k] {
				delete(recs, k)
				t.touch(g.owner)
				res.dropped++
				if e.rec != nil {
					res.changed = true
					t.changed(g.owner, k, 0, false)
				}
			}
		}
	}
	return res
}

// mergeOwn handles a copy of one of this host's own records.
func (t *table) mergeOwn(k rkey, w *wireRecord, vtep netip.Addr, now time.Time, res *mergeResult) {
	own := t.ownerMap(t.self)
	e := own[k]
	if e != nil && !w.order(vtep).beats(e.order()) {
		return // ours is the same or newer; it will win on its own
	}
	if w.tomb && (e == nil || e.tomb) {
		// A deletion we agree with (we do not declare the record): keep it
		// so it keeps beating older copies.
		ttl := min(t.tombTTL, max(w.ttl, time.Millisecond))
		own[k] = &entry{version: w.version, tomb: true, expires: now.Add(ttl), vtep: t.vtep}
		t.touch(t.self)
		t.noteTomb(own[k])
		return
	}
	// A newer version of our record than we know: written by a previous
	// life of this host, or forged. Ours is the truth; reissue it above.
	var ne *entry
	if e != nil && !e.tomb {
		c := *e
		c.version = t.tick()
		ne = &c
	} else {
		ne = &entry{version: t.tick(), tomb: true, expires: now.Add(t.tombTTL), vtep: t.vtep}
	}
	own[k] = ne
	t.ownSeen.Store(max(t.ownSeen.Load(), ne.version))
	t.touch(t.self)
	t.noteTomb(ne)
	res.own = append(res.own, t.wireOf(k, ne, now))
}

// gc collects expired tombstones and returns how many. It scans the
// table only when the earliest tombstone is due.
func (t *table) gc(now time.Time) int {
	if t.nextGC.IsZero() || now.Before(t.nextGC) {
		return 0
	}
	n := 0
	t.nextGC = time.Time{}
	for owner, recs := range t.owners {
		for k, e := range recs {
			if !e.tomb {
				continue
			}
			if !now.Before(e.expires) {
				delete(recs, k)
				t.touch(owner)
				n++
				continue
			}
			t.noteTomb(e)
		}
		if len(recs) == 0 && owner != t.self {
			delete(t.owners, owner)
		}
	}
	return n
}

// reap removes every record of owner and reports how many were live.
func (t *table) reap(owner string) int {
	n := 0
	for k, e := range t.owners[owner] {
		if !e.tomb {
			n++
			if e.rec != nil {
				t.changed(owner, k, 0, false)
			}
		}
	}
	delete(t.owners, owner)
	delete(t.seen, owner)
	t.touch(owner)
	return n
}

// liveCount counts owner's live records.
func (t *table) liveCount(owner string) int { return t.summary(owner).live }

// counts returns live records of this host, live records of others, and
// tombstones.
func (t *table) counts() (local, remote, tombs int) {
	for owner, recs := range t.owners {
		for _, e := range recs {
			switch {
			case e.tomb:
				tombs++
			case owner == t.self:
				local++
			default:
				remote++
			}
		}
	}
	return
}

// ownerGroup returns owner's records as one or more groups (one per VTEP),
// with live records only when liveOnly.
func (t *table) ownerGroups(owner string, liveOnly bool, now time.Time) []group {
	recs := t.owners[owner]
	byVTEP := map[netip.Addr]*group{}
	var order []netip.Addr
	for _, k := range slices.SortedFunc(maps.Keys(recs), compareKeys) {
		e := recs[k]
		if liveOnly && e.tomb {
			continue
		}
		g := byVTEP[e.vtep]
		if g == nil {
			g = &group{owner: owner, vtep: e.vtep}
			byVTEP[e.vtep] = g
			order = append(order, e.vtep)
		}
		g.recs = append(g.recs, t.wireOf(k, e, now))
	}
	out := make([]group, 0, len(order))
	for _, v := range order {
		out = append(out, *byVTEP[v])
	}
	return out
}

// state returns every record, live and tombstone, grouped by owner: the
// push/pull payload. This host's group carries asOf, so the receiver drops
// whatever older records of ours it holds that we no longer have.
func (t *table) state(now time.Time) []group {
	var out []group
	for _, owner := range slices.Sorted(maps.Keys(t.owners)) {
		out = append(out, t.ownerState(owner, now)...)
	}
	if _, ok := t.owners[t.self]; !ok {
		out = append(out, t.ownerState(t.self, now)...)
	}
	return out
}

// ownerState is state restricted to one owner.
func (t *table) ownerState(owner string, now time.Time) []group {
	gs := t.ownerGroups(owner, false, now)
	if owner == t.self && t.declared {
		if len(gs) == 0 {
			gs = []group{{owner: t.self, vtep: t.vtep}}
		}
		gs[0].asOf = t.clock
	}
	return gs
}

// ownSync returns this host's complete live set as of now, for a Sync
// message to one member; ok is false before the first setLocal.
func (t *table) ownSync(now time.Time) (g group, ok bool) {
	if !t.declared {
		return group{}, false
	}
	gs := t.ownerGroups(t.self, true, now)
	g = group{owner: t.self, vtep: t.vtep}
	if len(gs) > 0 {
		g = gs[0]
	}
	g.asOf = t.clock
	return g, true
}

// lookup returns the stored entry for a record (tests and bench).
func (t *table) lookup(owner string, k rkey) *entry { return t.owners[owner][k] }
