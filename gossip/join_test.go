package gossip

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

func TestNextBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 5 * time.Second
	const maxDur = time.Duration(math.MaxInt64)
	tests := []struct {
		name        string
		cur, lo, hi time.Duration
		want        time.Duration
	}{
		{"zero starts at lo", 0, lo, hi, lo},
		{"negative starts at lo", -time.Second, lo, hi, lo},
		{"below lo starts at lo", lo / 2, lo, hi, lo},
		{"doubles", lo, lo, hi, 2 * lo},
		{"doubles below half cap", 2400 * time.Millisecond, lo, hi, 4800 * time.Millisecond},
		{"half cap reaches cap", hi / 2, lo, hi, hi},
		{"above half cap is cap", 3 * time.Second, lo, hi, hi},
		{"at cap stays", hi, lo, hi, hi},
		{"above cap is cap", 10 * hi, lo, hi, hi},
		{"huge cap does not overflow", maxDur/2 + 1, lo, maxDur, maxDur},
		{"max stays max", maxDur, lo, maxDur, maxDur},
		{"cap below lo: cap wins", 0, lo, lo / 4, lo / 4},
		{"cap below lo stays", lo / 4, lo, lo / 4, lo / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextBackoff(tt.cur, tt.lo, tt.hi); got != tt.want {
				t.Fatalf("nextBackoff(%v, %v, %v) = %v, want %v", tt.cur, tt.lo, tt.hi, got, tt.want)
			}
		})
	}
}

// TestJoinPacer runs the pacer for many more turns than it takes a
// doubling duration to overflow (about 38 from 100ms): every wait stays
// within [lo, cap] whatever the turns report.
func TestJoinPacer(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 5 * time.Second
	type turn struct{ targets, ok int }
	tests := []struct {
		name   string
		joined bool   // configured with no peers
		turns  []turn // repeated 200 times
		want   func(i int) time.Duration
	}{
		{
			// The bug: every configured peer joined us first, so there is
			// nobody to join and nothing ever succeeds.
			name:  "all peers already joined us",
			turns: []turn{{0, 0}},
			want:  func(int) time.Duration { return hi },
		},
		{
			name:  "peers never answer",
			turns: []turn{{2, 0}},
			want: func(i int) time.Duration {
				return min(lo<<min(i, 10), hi)
			},
		},
		{
			name:  "first join succeeds",
			turns: []turn{{2, 1}},
			want:  func(int) time.Duration { return hi },
		},
		{
			// Peers die after we joined: retried at the steady period.
			name:   "no peers configured, members die later",
			joined: true,
			turns:  []turn{{0, 0}, {1, 0}, {3, 0}},
			want:   func(int) time.Duration { return hi },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newJoinPacer(lo, hi, tt.joined)
			for i := range 200 {
				tr := tt.turns[i%len(tt.turns)]
				got := p.next(tr.targets, tr.ok)
				if got < lo || got > hi {
					t.Fatalf("turn %d: wait %v outside [%v, %v]", i, got, lo, hi)
				}
				if want := tt.want(i); got != want {
					t.Fatalf("turn %d: wait %v, want %v", i, got, want)
				}
			}
		})
	}
}

// TestJoinPacerBackoffThenIdle is the bug's timeline: the peer is not up
// yet (failed turns back off), then it joins us (no targets, forever).
func TestJoinPacerBackoffThenIdle(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 5 * time.Second
	p := newJoinPacer(lo, hi, false)
	for i := range 5 {
		if got, want := p.next(1, 0), lo<<i; got != want {
			t.Fatalf("failed turn %d: wait %v, want %v", i, got, want)
		}
	}
	for i := range 100 {
		if got := p.next(0, 0); got != hi {
			t.Fatalf("idle turn %d: wait %v, want %v", i, got, hi)
		}
	}
	// A member dies later: retried at the cap, not from lo again.
	if got := p.next(1, 0); got != hi {
		t.Fatalf("after a member died: wait %v, want %v", got, hi)
	}
}

// waitRecorder stands in for Cluster.joinSleep: it records the wait the
// loop asked for and sleeps a millisecond instead, so joinLoop runs
// hundreds of turns in well under a second.
type waitRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *waitRecorder) hook(c *Cluster) {
	c.joinSleep = func(d time.Duration) bool {
		r.mu.Lock()
		r.waits = append(r.waits, d)
		r.mu.Unlock()
		return c.sleepOrStop(time.Millisecond)
	}
}

func (r *waitRecorder) snapshot() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// TestJoinLoopPeersJoinedUs drives the real joinLoop of a member whose
// peer starts after it and joins it (the condition of the idle-CPU bug)
// for more turns than the old doubling needed to overflow, and checks
// every wait it asked for: within [minJoinBackoff, RejoinInterval], and
// exactly RejoinInterval once the peer is an alive member.
func TestJoinLoopPeersJoinedUs(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	tun := fastTuning()
	tun.RejoinInterval = 2 * time.Second
	port := func(i int) netip.AddrPort { return netip.AddrPortFrom(lo(i), DefaultPort) }
	var rec waitRecorder
	first := startWith(t, Config{Name: "h1", Addr: lo(1), Netns: ns, Tuning: tun, Join: []netip.AddrPort{port(2)}}, rec.hook)
	// Let h1 fail a few turns against a peer that is not up yet.
	nstest.Eventually(t, 5*time.Second, func() error {
		if n := len(rec.snapshot()); n < 3 {
			return fmt.Errorf("h1 ran %d join turns, want 3", n)
		}
		return nil
	})
	second := start(t, Config{Name: "h2", Addr: lo(2), Netns: ns, Tuning: tun, Join: []netip.AddrPort{port(1)}})
	waitMembers(t, []*Cluster{first, second}, 2)
	idleFrom := len(rec.snapshot())
	const idleTurns = 100 // the old backoff overflowed after about 38
	nstest.Eventually(t, 10*time.Second, func() error {
		if n := len(rec.snapshot()) - idleFrom; n < idleTurns {
			return fmt.Errorf("h1 ran %d join turns since h2 joined, want %d", n, idleTurns)
		}
		return nil
	})
	waits := rec.snapshot()
	for i, w := range waits {
		if w < minJoinBackoff || w > tun.RejoinInterval {
			t.Fatalf("turn %d: wait %v outside [%v, %v]; all: %v", i, w, minJoinBackoff, tun.RejoinInterval, waits)
		}
	}
	// A turn may still be in flight when h2 shows up alive; from the
	// next one on, h1 has nothing to join and waits the steady period.
	for i, w := range waits[idleFrom+1:] {
		if w != tun.RejoinInterval {
			t.Fatalf("idle turn %d: wait %v, want %v", i, w, tun.RejoinInterval)
		}
	}
}
