package gossip

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Join pacing. Until the first join succeeds, joinLoop retries with an
// exponential backoff starting at minJoinBackoff; the backoff is capped at
// Tuning.RejoinInterval, which is also the steady period once joined.
//
// An earlier version doubled the backoff on every turn that joined nobody,
// including turns with nothing to join because every configured peer had
// already joined us: the duration overflowed after about 38 doublings and
// the timer then fired at once, forever (a core at 100% after about three
// idle minutes). The backoff is now capped before it can overflow, and an
// empty target list counts as joined.
const minJoinBackoff = 100 * time.Millisecond

// nextBackoff doubles cur within [lo, hi]. It never overflows: a cur at or
// above hi/2 goes straight to hi, and anything below lo (zero, negative)
// starts again at lo. If hi < lo, hi wins.
func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	lo = min(lo, hi)
	switch {
	case cur < lo:
		return lo
	case cur >= hi/2:
		return hi
	default:
		return cur * 2
	}
}

// joinPacer decides how long joinLoop waits after each turn. It is a value
// over counts, so the decision is unit-tested without a network or a clock.
type joinPacer struct {
	lo, hi  time.Duration // first retry; cap and steady period (RejoinInterval)
	backoff time.Duration // the next wait while not joined
	joined  bool
}

func newJoinPacer(lo, hi time.Duration, joined bool) *joinPacer {
	lo = min(lo, hi)
	return &joinPacer{lo: lo, hi: hi, backoff: lo, joined: joined}
}

// next returns the wait after a turn that had targets peers to join, of
// which ok answered. No targets means every configured peer is already an
// alive member (it joined us): we are in the cluster, nothing to do. Once
// joined, the loop keeps its RejoinInterval period, which is what retries
// peers that die later.
func (p *joinPacer) next(targets, ok int) time.Duration {
	if targets == 0 || ok > 0 {
		p.joined = true
	}
	if p.joined {
		return p.hi
	}
	wait := p.backoff
	p.backoff = nextBackoff(p.backoff, p.lo, p.hi)
	return wait
}

// joinLoop joins the configured peers, with backoff until the first
// success, then keeps rejoining every RejoinInterval the peers that are not
// alive members and the members that died: a partition heals by itself once
// the network does. A member that died is rejoined only by the
// rejoinPickers members picked for it (bound.go).
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	c.mu.Lock()
	joined := len(c.cfg.Join) == 0
	c.mu.Unlock()
	p := newJoinPacer(minJoinBackoff, c.tun.RejoinInterval, joined)
	for {
		targets := c.joinTargets()
		ok := c.joinAll(targets)
		// While no peer is alive, retry every aloneRejoin (heal.go).
		if !c.joinSleep(rejoinWait(p.next(len(targets), ok), len(targets), c.alive.Load())) {
			return
		}
	}
}

// sleepOrStop waits d and reports true, or reports false as soon as the
// cluster stops. It is the default Cluster.joinSleep; tests swap it to run
// many turns of joinLoop in milliseconds.
func (c *Cluster) sleepOrStop(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return false
	case <-t.C:
		return true
	}
}

func (c *Cluster) joinTargets() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	alive := map[netip.AddrPort]bool{c.Addr(): true}
	for _, m := range c.members {
		if m.state == MemberAlive {
			alive[m.addr] = true
		}
	}
	// Members that died are rejoined only by the few members picked for
	// them (bound.go); a configured peer that is such a member too.
	notMine := map[netip.AddrPort]bool{}
	var out []netip.AddrPort
	add := func(a netip.AddrPort) {
		if !alive[a] && !notMine[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for name, m := range c.members {
		if name != c.cfg.Name && m.state != MemberAlive && !m.reaped && !c.pickedLocked(name) {
			notMine[m.addr] = true
		}
	}
	for _, j := range c.cfg.Join {
		add(j)
	}
	for name, m := range c.members {
		if name != c.cfg.Name && m.state != MemberAlive && !m.reaped {
			add(m.addr)
		}
	}
	return out
}

// joinAll joins every target concurrently and returns how many answered.
func (c *Cluster) joinAll(targets []netip.AddrPort) int {
	var wg sync.WaitGroup
	var ok atomic.Int64
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ctr.exchanges.Add(1)
			if _, err := c.ml.Join([]string{t.String()}); err != nil {
				c.log.Debug("join", "peer", t, "err", err)
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	return int(ok.Load())
}
