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
// The exchange runs in its own goroutine, never in memberlist's callbacks
// (they hold memberlist's node lock), and at most one runs per member: a
// request while one is in flight is dropped. That also stops the loop the
// exchange itself would cause, since merging the peer's state can fire
// NotifyJoin for that same peer.

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
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
	busy map[string]bool // members with an exchange in flight
	acks uint64          // successful direct probes of any member
	last map[string]ackMark
}

// ackMark is when a member last answered a probe.
type ackMark struct {
	at   time.Time
	acks uint64 // healer.acks then
}

// begin marks an exchange with name in flight and reports true, or
// reports false when one already is.
func (h *healer) begin(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.busy[name] {
		return false
	}
	if h.busy == nil {
		h.busy = map[string]bool{}
	}
	h.busy[name] = true
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
	if name == c.cfg.Name || !c.heal.begin(name) {
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
		if _, err := c.ml.Join([]string{addr.String()}); err != nil {
			c.log.Debug("heal: push/pull", "member", name, "addr", addr, "was", was, "err", err)
			return
		}
		c.log.Info("heal: exchanged full state", "member", name, "was", was, "took", time.Since(start).Round(time.Millisecond))
	}()
}
