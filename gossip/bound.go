package gossip

// Bounds on full-state exchanges.
//
// A full-state exchange (memberlist's Join: both sides encode, send,
// inflate and merge their whole tables) is how a member that comes back is
// repaired: heal.go starts one when a member returns from dead, answers
// again after missed probes, or announces a change this host lacks, and
// join.go rejoins dead members every RejoinInterval so a healed partition
// re-merges. Each is cheap in a small cluster, but they all aim at the
// same member (the one that came back, or the one that looks dead) and
// they all start from every other member at once. At 200 in-process
// members on 2 cores that was a feedback loop: a member too busy to answer
// probes in time was declared dead, then every member rejoined it, healed
// with it when it answered and exchanged with it after its next change —
// 2,152 full exchanges in flight, 12,076 goroutines, and more members too
// busy to answer (docs/benchmarks.md, Scale). So:
//
//   - a host runs at most maxExchanges heal exchanges at once, with all
//     members together, and at most one with each member per
//     minExchangeGap (healer.begin); a request over the bound is dropped:
//     the digest watch asks again after its backoff, and the periodic
//     push/pull repairs whatever else is left;
//   - a member that died is rejoined, and healed with when it comes back,
//     only by the rejoinPickers alive members whose pickHash with it is
//     lowest (picked), not by all of them. Every member decides alone from
//     its own member list, so the choice needs no coordination; while the
//     lists disagree a few more or fewer members pick it, which is
//     harmless. In a cluster of at most rejoinPickers+1 members every
//     member is picked, so small clusters behave as before.
//   - the encoded whole table is reused while the table is unchanged
//     (stateCache), so the exchanges that do run, and the joins of new
//     members, encode it once rather than once each.

import (
	"hash/fnv"
	"iter"
	"time"
)

const (
	// maxExchanges bounds the heal exchanges one host runs at once.
	maxExchanges = 2
	// minExchangeGap is the least time between two heal exchanges with
	// one member.
	minExchangeGap = time.Second
	// rejoinPickers is how many members rejoin, and heal with, a member
	// that died.
	rejoinPickers = 3
	// stateCacheAge bounds how long an encoded whole table is reused: the
	// tombstones' remaining lifetimes in it grow stale by that much.
	stateCacheAge = time.Second
)

// pickHash orders the members that might rejoin target: a hash of both
// names, so each dead member gets its own, evenly spread set of pickers.
func pickHash(target, member string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(target))
	h.Write([]byte{0})
	h.Write([]byte(member))
	return h.Sum64()
}

// picked reports whether self is among the k members of alive (self
// included or not; target never counts) with the lowest pickHash with
// target, ties broken by name.
func picked(target, self string, alive iter.Seq[string], k int) bool {
	mine := pickHash(target, self)
	below := 0
	for m := range alive {
		if m == self || m == target {
			continue
		}
		if h := pickHash(target, m); h < mine || (h == mine && m < self) {
			below++
			if below >= k {
				return false
			}
		}
	}
	return true
}

// pickedLocked reports whether this host is one of the members that
// rejoin and heal with target. c.mu held.
func (c *Cluster) pickedLocked(target string) bool {
	return picked(target, c.cfg.Name, c.aliveNamesLocked(), rejoinPickers)
}

// aliveNamesLocked yields the names of the alive members. c.mu held while
// iterating.
func (c *Cluster) aliveNamesLocked() iter.Seq[string] {
	return func(yield func(string) bool) {
		for name, m := range c.members {
			if m.state == MemberAlive && !yield(name) {
				return
			}
		}
	}
}

// stateCache is the last whole-table State encoded, with what it was
// encoded from. Guarded by Cluster.mu.
type stateCache struct {
	key stateKey
	at  time.Time
	b   []byte
}

// stateKey is everything the whole-table State depends on besides the
// tombstones' remaining lifetimes.
type stateKey struct {
	mod, clock         uint64
	declared, withTime bool
}

func (t *table) stateKey() stateKey {
	return stateKey{mod: t.mod, clock: t.clock, declared: t.declared, withTime: t.sendOrigin}
}

// cachedStateLocked returns the encoded whole table if it is still valid
// at now, or nil. c.mu held.
func (c *Cluster) cachedStateLocked(now time.Time) []byte {
	sc := &c.stateCache
	if sc.b == nil || sc.key != c.tab.stateKey() {
		return nil
	}
	if age := now.Sub(sc.at); age < 0 || age >= stateCacheAge {
		return nil
	}
	return sc.b
}

// wholeState returns the encoded whole table at now: the cached one while
// it is valid, else a fresh encoding (then cached). The result is shared:
// callers must not modify it.
func (c *Cluster) wholeState(now time.Time) []byte {
	c.mu.Lock()
	if b := c.cachedStateLocked(now); b != nil {
		c.mu.Unlock()
		return b
	}
	key := c.tab.stateKey()
	gs := c.tab.state(now)
	c.mu.Unlock()
	b := encodeState(gs)
	c.mu.Lock()
	if c.tab.stateKey() == key {
		c.stateCache = stateCache{key: key, at: now, b: b}
	}
	c.mu.Unlock()
	return b
}
