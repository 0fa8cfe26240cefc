package gossip

// Healing: a full-state exchange with every member that comes back.
//
// While a host is cut off, the changes either side makes are published by
// direct sends and gossip, and those are lost. Nothing would carry them
// across once the network heals except the next push/pull (one random
// member every PushPullInterval) or, only for a member that had been
// declared dead, the own-records Sync of memberUp. So when a member comes
// back we do one TCP push/pull with it at once (memberlist's Join with that
// one address): both sides merge each other's whole table, which repairs
// additions and deletions (tombstones) of every owner, in one round trip.
//
// "Comes back" is two things, because memberlist reports only one of them:
//   - dead or left -> alive: memberlist calls NotifyJoin (memberUp);
//   - a member that missed probes answers again (a cut shorter than the
//     suspicion timeout, a refuted suspicion, or the cut host's view of
//     its peers): memberlist calls nothing (aliveNode notifies only on
//     dead/left -> alive or a metadata change) and does not publish its
//     suspect state (Node.State in Members() is never set), so we watch
//     its successful probes (PingDelegate.NotifyPingComplete) for gaps.
//
// A third thing needs no failed probe at all: a cut shorter than a probe
// round (or one that only dropped the broadcasts of a change) leaves the
// member answering probes throughout, and its change is lost until the
// next periodic push/pull (PushPullInterval). So every probe ack carries
// the member's digest, the version of its latest own change (meta.go),
// and a prober that has not received that member's records up to that
// version (table.seen) exchanges with it, after digestGrace (the change
// may still be on its way in a broadcast). A member that stays behind
// after an exchange (records it refuses, say) is retried with a doubling
// backoff (digestBackoffMin up to digestBackoffMax), so a persistent
// mismatch cannot turn into an exchange per probe.
//
// The probe answers also give the one suspicion this host can see:
// memberlist keeps a member's suspect state to itself (Node.State in
// Members() is never set), so Members reports a member suspect when it
// has missed a probe since its last answer (missedProbe), as the gap
// watch decides it. The per-member watch state is forgotten when a member
// goes down or is removed, so it does not grow with churn.
//
// The exchange runs in its own goroutine, never in memberlist's callbacks
// (they hold memberlist's node lock), and at most one runs per member: a
// request while one is in flight is dropped. That also stops the loop the
// exchange itself would cause, since merging the peer's state can fire
// NotifyJoin for that same peer. Exchanges are also bounded per host
// (bound.go): at most maxExchanges in flight with all members together and
// one per member per minExchangeGap; a request over the bound is dropped
// too (the digest watch retries after its backoff, push/pull repairs the
// rest), and a member that comes back from dead is healed only by the few
// members picked for it (pickedLocked), not by every member.

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Digest exchange timing (see above).
const (
	digestGrace      = 500 * time.Millisecond
	digestBackoffMin = time.Second
	digestBackoffMax = 30 * time.Second
)

// aloneRejoin is joinLoop's period while no other member is alive (this
// host is cut off, or every peer is down): the host that was cut off finds
// its peers within about a second of the heal instead of RejoinInterval.
// It is a fixed floor, so the loop cannot spin.
const aloneRejoin = time.Second

// healer coalesces the heal exchanges and watches probe gaps. Its zero
// value is ready.
type healer struct {
	mu   sync.Mutex
	busy map[string]bool      // members with an exchange in flight
	done map[string]time.Time // when the last exchange with a member began
	acks uint64               // successful direct probes of any member
	last map[string]ackMark
	dig  map[string]*digestWatch
}

// digestWatch is the digest state of one member.
type digestWatch struct {
	pending bool          // a check after digestGrace is scheduled
	next    time.Time     // no digest exchange before this
	backoff time.Duration // the wait after the next exchange
}

// ackMark is when a member last answered a probe.
type ackMark struct {
	at   time.Time
	acks uint64 // healer.acks then
}

// begin marks an exchange with name at now in flight and reports true,
// or reports false when one already is, when maxExchanges are in flight
// with any members, or when one with name began less than
// minExchangeGap ago (bound.go).
func (h *healer) begin(name string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.busy[name] || len(h.busy) >= maxExchanges {
		return false
	}
	if last, ok := h.done[name]; ok && now.Sub(last) < minExchangeGap && now.Sub(last) >= 0 {
		return false
	}
	if h.busy == nil {
		h.busy = map[string]bool{}
		h.done = map[string]time.Time{}
	}
	h.busy[name] = true
	h.done[name] = now
	return true
}

// end marks the exchange with name finished.
func (h *healer) end(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.busy, name)
}

// acked records that name answered a probe at now, in a cluster of alive
// members (self included) probed every probe, and reports whether it
// missed at least one probe since its previous answer.
func (h *healer) acked(name string, now time.Time, alive int, probe time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last = map[string]ackMark{}
	}
	prev, seen := h.last[name]
	h.last[name] = ackMark{at: now, acks: h.acks + 1}
	missed := seen && missedProbe(now.Sub(prev.at), h.acks-prev.acks, alive, probe)
	h.acks++
	return missed
}

// up starts the gap watch of a member that came up at now, so that a
// member cut off before its first probe answer is still noticed when it
// answers (a host cut right after it joined or restarted).
func (h *healer) up(name string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last = map[string]ackMark{}
	}
	h.last[name] = ackMark{at: now, acks: h.acks}
}

// forget drops the watch state of name (a member that went down or was
// removed); an exchange in flight finishes on its own.
func (h *healer) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.last, name)
	delete(h.dig, name)
	delete(h.done, name)
}

// size is the number of members with watch state (tests).
func (h *healer) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return max(len(h.last), len(h.dig))
}

// overdue reports whether name, watched since it came up, has missed a
// probe since its last answer at now (Members: suspect).
func (h *healer) overdue(name string, now time.Time, alive int, probe time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, ok := h.last[name]
	return ok && missedProbe(now.Sub(prev.at), h.acks-prev.acks, alive, probe)
}

// digestBehind takes a digest comparison of name at now and reports
// whether to schedule a check: the member is ahead of us, no check is
// pending and its backoff has passed. In sync resets the backoff.
func (h *healer) digestBehind(name string, behind bool, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dig == nil {
		h.dig = map[string]*digestWatch{}
	}
	w := h.dig[name]
	if !behind {
		if w != nil && !w.pending {
			delete(h.dig, name)
		}
		return false
	}
	if w == nil {
		w = &digestWatch{}
		h.dig[name] = w
	}
	if w.pending || now.Before(w.next) {
		return false
	}
	w.pending = true
	return true
}

// digestCheck ends the check of name at now and reports whether to
// exchange (still behind); an exchange sets the next backoff.
func (h *healer) digestCheck(name string, still bool, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.dig[name]
	if w == nil {
		return false // forgotten meanwhile
	}
	w.pending = false
	if !still {
		return false
	}
	w.next = now.Add(w.backoff)
	w.backoff = min(max(2*w.backoff, digestBackoffMin), digestBackoffMax)
	return true
}

// missedProbe decides from the gap between two answers of one member
// whether a probe of it went unanswered in between. memberlist probes one
// member per probe interval, round robin over the other alive-1 members
// and shuffled after each round, so between two consecutive probes of one
// member every other member is probed at most twice and at most
// 2*(alive-1)-1 intervals pass. More answers of the others than
// 2*(alive-2), or a longer gap (with one interval of slack), means a probe
// of this member failed. A false positive costs one extra exchange.
func missedProbe(gap time.Duration, others uint64, alive int, probe time.Duration) bool {
	alive = max(alive, 2)
	if others > uint64(2*(alive-2)) {
		return true
	}
	return gap > time.Duration(2*(alive-1))*probe
}

// healOnAck is called for every probe answer (meta.go's pinger): a member
// that answers after missing probes is healed with.
func (c *Cluster) healOnAck(n *memberlist.Node) {
	if c.heal.acked(n.Name, c.now(), int(c.alive.Load()), c.tun.ProbeInterval) {
		c.healWith(n.Name, nodeAddr(n), "unreachable")
	}
}

// healOnDigest is called for every probe answer that carries a digest
// (meta.go's pinger): a member whose latest own change this host has not
// received is healed with, unless the change arrives within digestGrace.
func (c *Cluster) healOnDigest(n *memberlist.Node, v uint64) {
	name, addr := n.Name, nodeAddr(n)
	c.mu.Lock()
	behind := c.tab.behind(name, v)
	c.mu.Unlock()
	if !c.heal.digestBehind(name, behind, c.now()) {
		return
	}
	c.later(digestGrace, func() {
		c.mu.Lock()
		still := c.tab.behind(name, v)
		c.mu.Unlock()
		if c.heal.digestCheck(name, still, c.now()) {
			c.healWith(name, addr, "behind")
		}
	}, func() { c.heal.digestCheck(name, false, c.now()) })
}

// later runs f after d unless the cluster stops first (then cancel, if
// any, runs instead). The wait counts in c.wg, registered under lifeMu so
// that it is never added once Shutdown has begun waiting.
func (c *Cluster) later(d time.Duration, f, cancel func()) {
	c.lifeMu.Lock()
	if c.shut {
		c.lifeMu.Unlock()
		if cancel != nil {
			cancel()
		}
		return
	}
	c.wg.Add(1)
	c.lifeMu.Unlock()
	t := time.NewTimer(d)
	go func() {
		defer c.wg.Done()
		defer t.Stop()
		select {
		case <-c.stop:
			if cancel != nil {
				cancel()
			}
		case <-t.C:
			f()
		}
	}()
}

// rejoinWait shortens joinLoop's wait d to aloneRejoin while there are
// targets to join and no other member is alive.
func rejoinWait(d time.Duration, targets int, alive int64) time.Duration {
	if targets > 0 && alive <= 1 {
		return min(d, aloneRejoin)
	}
	return d
}

// healWith starts a full-state exchange (push/pull) with member name at
// addr, unless one is in flight or the cluster stops. It never blocks: it
// is called from memberlist's event callbacks.
func (c *Cluster) healWith(name string, addr netip.AddrPort, was string) {
	if name == c.cfg.Name || !c.heal.begin(name, c.now()) {
		c.ctr.healSkipped.Add(1)
		return
	}
	select {
	case <-c.stop:
		c.heal.end(name)
		return
	default:
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.heal.end(name)
		start := time.Now()
		c.ctr.exchanges.Add(1)
		switch was {
		case "dead":
			c.ctr.healDead.Add(1)
		case "unreachable":
			c.ctr.healUnreachable.Add(1)
		case "behind":
			c.ctr.healBehind.Add(1)
		}
		if _, err := c.ml.Join([]string{addr.String()}); err != nil {
			c.log.Debug("heal: push/pull", "member", name, "addr", addr, "was", was, "err", err)
			return
		}
		c.log.Info("heal: exchanged full state", "member", name, "was", was, "took", time.Since(start).Round(time.Millisecond))
	}()
}
