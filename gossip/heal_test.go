package gossip

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestHealLoneHost cuts one host off alone, changes records on both sides
// during the cut, waits until those changes' gossip is spent, heals, and
// checks every table converges well under the 5 s target. Push/pull and
// rejoin keep their production periods (15 s and 5 s), so only the heal
// exchange makes the bound. Cases: short, the cut ends after probes went
// unanswered but before anyone is declared dead (memberlist reports
// nothing then); asym, the others declared the cut host dead but it still
// only suspects them (so it alone saw no member come back); long, both
// sides declared the other dead.
func TestHealLoneHost(t *testing.T) {
	t.Parallel()
	const bound = 3 * time.Second
	for _, kind := range []string{"short", "asym", "long"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			tp := nstest.New(t, nstest.Options{Hosts: 3})
			var cs []*Cluster
			for i, h := range tp.Hosts {
				tun := DefaultTuning()
				tun.ProbeInterval, tun.ProbeTimeout = 500*time.Millisecond, 250*time.Millisecond
				// Suspicion of 5 s or more: the cut ends before that
				// member declares anyone dead.
				if kind == "short" || (kind == "asym" && i == 2) {
					tun.SuspicionMult = 10
				}
				cfg := Config{Name: h.Name, Addr: h.Addr, Netns: h.NsHandle(t), Tuning: tun}
				if i > 0 {
					cfg.Join = []netip.AddrPort{netip.AddrPortFrom(tp.Hosts[0].Addr, DefaultPort)}
				}
				cs = append(cs, start(t, cfg))
			}
			waitMembers(t, cs, 3)
			for i, c := range cs {
				mustSet(t, c, hostEndpoints(i+1, 3, 0)...)
			}
			waitSame(t, 5*time.Second, cs, "")

			// Probe answers across the cut have been seen (waitMissed needs
			// a last one).
			waitHeard(t, cs[0], "h3")
			waitHeard(t, cs[2], "h1")
			tp.Hosts[2].SetUnderlayUp(t, false)
			switch kind {
			case "short":
				waitMissed(t, cs[0], "h3")
				waitMissed(t, cs[2], "h1")
			case "asym":
				waitMembers(t, cs[:2], 2)
			case "long":
				waitMembers(t, cs[:2], 2)
				waitMembers(t, cs[2:], 1)
			}
			// Both sides change: h1 drops one endpoint and adds one; the cut
			// host h3 gives one a new MAC and drops one.
			mustSet(t, cs[0], append(hostEndpoints(1, 2, 0), hostEndpoints(1, 5, 0)[4])...)
			mustSet(t, cs[2], hostEndpoints(3, 2, 5)...)
			waitSpent(t, cs)
			wantUp := map[string][2]int{"short": {3, 3}, "asym": {2, 3}, "long": {2, 1}}[kind]
			if a, b := cs[0].Stats().Members, cs[2].Stats().Members; a != wantUp[0] || b != wantUp[1] {
				t.Fatalf("before the heal h1 sees %d alive, h3 %d; want %d, %d", a, b, wantUp[0], wantUp[1])
			}

			healed := time.Now()
			tp.Hosts[2].SetUnderlayUp(t, true)
			want := strings.Join([]string{
				"mesh 10.200.1.2 02:00:00:00:01:02 h1 198.18.0.1 [c1-0]",
				"mesh 10.200.1.3 02:00:00:00:01:03 h1 198.18.0.1 [c1-1]",
				"mesh 10.200.1.6 02:00:00:00:01:06 h1 198.18.0.1 [c1-4]",
				"mesh 10.200.2.2 02:00:00:00:02:02 h2 198.18.0.2 [c2-0]",
				"mesh 10.200.2.3 02:00:00:00:02:03 h2 198.18.0.2 [c2-1]",
				"mesh 10.200.2.4 02:00:00:00:02:04 h2 198.18.0.2 [c2-2]",
				"mesh 10.200.3.2 02:05:00:00:03:02 h3 198.18.0.3 [c3-0]",
				"mesh 10.200.3.3 02:05:00:00:03:03 h3 198.18.0.3 [c3-1]",
			}, "\n")
			waitSame(t, bound, cs, want)
			t.Logf("converged %v after the heal (bound %v)", time.Since(healed).Round(time.Millisecond), bound)
		})
	}
}

// waitSpent waits until no member has gossip left to send.
func waitSpent(t *testing.T, cs []*Cluster) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		for _, c := range cs {
			if n := c.localQ.NumQueued() + c.relayQ.NumQueued(); n > 0 {
				return fmt.Errorf("%s has %d broadcasts queued", c.Name(), n)
			}
		}
		return nil
	})
}

// waitHeard waits until c has had a probe answer from name.
func waitHeard(t *testing.T, c *Cluster, name string) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		c.heal.mu.Lock()
		defer c.heal.mu.Unlock()
		if c.heal.last[name].at.IsZero() {
			return fmt.Errorf("%s never heard %s answer a probe", c.Name(), name)
		}
		return nil
	})
}

// waitMissed waits until c has had no answer from name's probes for long
// enough that its next answer counts as a return (missedProbe).
func waitMissed(t *testing.T, c *Cluster, name string) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		c.heal.mu.Lock()
		last := c.heal.last[name]
		c.heal.mu.Unlock()
		alive := int(c.alive.Load())
		if last.at.IsZero() {
			return fmt.Errorf("%s never heard %s answer a probe", c.Name(), name)
		}
		if gap := time.Since(last.at); !missedProbe(gap, 0, alive, c.tun.ProbeInterval) {
			return fmt.Errorf("%s last heard %s's probe answer %v ago", c.Name(), name, gap)
		}
		return nil
	})
}

// TestHealerCoalesces: at most one exchange per member is in flight; a
// second request for the same member is dropped until the first ends,
// others are independent.
func TestHealerCoalesces(t *testing.T) {
	var h healer
	steps := []struct {
		op   string // "begin" or "end"
		name string
		want bool // begin's result
	}{
		{"begin", "a", true},
		{"begin", "a", false},
		{"begin", "b", true},
		{"end", "a", false},
		{"begin", "a", true},
		{"begin", "b", false},
	}
	for i, s := range steps {
		if s.op == "end" {
			h.end(s.name)
			continue
		}
		if got := h.begin(s.name, time.Unix(int64(10*i), 0)); got != s.want {
			t.Fatalf("step %d: begin(%s) = %v, want %v", i, s.name, got, s.want)
		}
	}

	// Concurrent requests for one member: exactly one wins.
	var h2 healer
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h2.begin("x", time.Time{}) {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d concurrent begins won, want 1", won)
	}
}

func TestMissedProbe(t *testing.T) {
	const p = time.Second
	tests := []struct {
		name   string
		gap    time.Duration
		others uint64
		alive  int
		want   bool
	}{
		{"two hosts, next interval", p, 0, 2, false},
		{"two hosts, two intervals", 2 * p, 0, 2, false},
		{"two hosts, a probe missed", 2*p + time.Millisecond, 0, 2, true},
		{"three hosts, others probed twice", 3 * p, 2, 3, false},
		{"three hosts, another probed three times", 3 * p, 3, 3, true},
		{"three hosts, long gap", 5 * p, 1, 3, true},
		{"ten hosts, full shuffle", 17 * p, 16, 10, false},
		{"ten hosts, a round too many", 17 * p, 17, 10, true},
		{"alive count below two", 3 * p, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := missedProbe(tt.gap, tt.others, tt.alive, p); got != tt.want {
				t.Fatalf("missedProbe(%v, %d, %d) = %v, want %v", tt.gap, tt.others, tt.alive, got, tt.want)
			}
		})
	}

	// healer.acked counts the others' answers between two of one member.
	var h healer
	t0 := time.Unix(0, 0)
	steps := []struct {
		name string
		at   time.Duration
		want bool
	}{
		{"a", 0, false}, {"b", p, false}, {"a", 2 * p, false}, // round robin
		{"b", 3 * p, false}, {"b", 4 * p, false}, {"b", 5 * p, false}, // a silent
		{"a", 6 * p, true}, // b answered 3 times meanwhile
		{"b", 7 * p, false},
	}
	// A member that came up and was silent since is noticed at its first
	// answer.
	h.up("c", t0.Add(7*p))
	steps = append(steps, struct {
		name string
		at   time.Duration
		want bool
	}{"c", 12 * p, true})
	for i, s := range steps {
		if got := h.acked(s.name, t0.Add(s.at), 3, p); got != s.want {
			t.Fatalf("step %d: acked(%s) = %v, want %v", i, s.name, got, s.want)
		}
	}
}

func TestRejoinWait(t *testing.T) {
	tests := []struct {
		name    string
		d       time.Duration
		targets int
		alive   int64
		want    time.Duration
	}{
		{"alone with targets", 5 * time.Second, 2, 1, aloneRejoin},
		{"alone, backoff already shorter", 200 * time.Millisecond, 2, 1, 200 * time.Millisecond},
		{"alone, nothing to join", 5 * time.Second, 0, 1, 5 * time.Second},
		{"peers alive", 5 * time.Second, 1, 3, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rejoinWait(tt.d, tt.targets, tt.alive); got != tt.want {
				t.Fatalf("rejoinWait = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHealDigest: a change whose broadcasts never left its host (no probe
// was missed, nobody came back) reaches the others within a probe round
// through the digest in the probe acks, not the periodic push/pull (set
// to an hour here).
func TestHealDigest(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	cs := loCluster(t, ns, 3, func(c *Config) {
		c.Tuning = fastTuning()
		c.Tuning.PushPullInterval = time.Hour
	})
	for i, c := range cs {
		mustSet(t, c, hostEndpoints(i+1, 2, 0)...)
	}
	waitSame(t, 5*time.Second, cs, "")
	// h3 changes its records silently: the table only, nothing queued.
	c3 := cs[2]
	c3.mu.Lock()
	_, err := c3.tab.setLocal(hostEndpoints(3, 3, 7), c3.now())
	c3.tab.gen++
	c3.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitSame(t, 5*time.Second, cs, "")
	if !strings.Contains(view(cs[0]), "02:07:00:00:03:04") {
		t.Fatalf("h1 lacks h3's new record:\n%s", view(cs[0]))
	}
	t.Logf("converged %v after the silent change", time.Since(start).Round(time.Millisecond))
}

// TestHealerDigest: a digest ahead of what this host has schedules one
// check at a time; a member still behind after an exchange is retried
// only after a doubling backoff; being in sync resets it; forget drops
// the state.
func TestHealerDigest(t *testing.T) {
	var h healer
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	steps := []struct {
		op     string // "ack" (digestBehind), "check" (digestCheck)
		behind bool
		at     time.Duration
		want   bool
	}{
		{"ack", false, 0, false},                        // in sync
		{"ack", true, 0, true},                          // behind: schedule a check
		{"ack", true, 100 * time.Millisecond, false},    // one check at a time
		{"check", false, 500 * time.Millisecond, false}, // arrived in the grace
		{"ack", true, time.Second, true},
		{"check", true, 1500 * time.Millisecond, true}, // exchange; backoff 1 s
		{"ack", true, 2 * time.Second, true},           // next = 1.5 s: passed
		{"check", true, 2500 * time.Millisecond, true}, // exchange; next 3.5 s, backoff 2 s
		{"ack", true, 3 * time.Second, false},          // before next
		{"ack", true, 4 * time.Second, true},
		{"check", true, 4500 * time.Millisecond, true}, // next 6.5 s
		{"ack", true, 5 * time.Second, false},
		{"ack", false, 5500 * time.Millisecond, false}, // in sync: reset
		{"ack", true, 6 * time.Second, true},
	}
	for i, s := range steps {
		var got bool
		if s.op == "ack" {
			got = h.digestBehind("a", s.behind, at(s.at))
		} else {
			got = h.digestCheck("a", s.behind, at(s.at))
		}
		if got != s.want {
			t.Fatalf("step %d (%s behind=%v at %v) = %v, want %v", i, s.op, s.behind, s.at, got, s.want)
		}
	}
	h.up("a", t0)
	h.forget("a")
	if n := h.size(); n != 0 {
		t.Errorf("after forget: state for %d members", n)
	}
	if h.digestCheck("a", true, t0) {
		t.Error("a check of a forgotten member exchanged")
	}
}

// TestHealerForgetsMembers: the watch state follows the members: many
// members coming up and going down leave nothing behind.
func TestHealerForgetsMembers(t *testing.T) {
	var h healer
	now := time.Unix(1000, 0)
	for i := range 1000 {
		name := fmt.Sprintf("m%d", i)
		h.up(name, now)
		h.acked(name, now.Add(time.Second), 3, time.Second)
		h.digestBehind(name, true, now)
		h.forget(name)
	}
	if n := h.size(); n != 0 {
		t.Fatalf("state for %d members after they all left", n)
	}
}

// TestHealerOverdue: a member is overdue (Members: suspect) once it
// missed a probe since its last answer, and never before it came up.
func TestHealerOverdue(t *testing.T) {
	var h healer
	now := time.Unix(1000, 0)
	if h.overdue("a", now.Add(time.Hour), 3, time.Second) {
		t.Error("an unknown member is overdue")
	}
	h.up("a", now)
	if h.overdue("a", now.Add(3*time.Second), 3, time.Second) {
		t.Error("overdue within two probe rounds")
	}
	if !h.overdue("a", now.Add(5*time.Second), 3, time.Second) {
		t.Error("not overdue after five intervals without an answer")
	}
	h.acked("a", now.Add(5*time.Second), 3, time.Second)
	if h.overdue("a", now.Add(6*time.Second), 3, time.Second) {
		t.Error("overdue right after an answer")
	}
}

// TestAckPayloadDigest: an ack carries the digest after the clock only
// when every other member announces featureAckDigest and this host has made
// a change; otherwise it is the bare 8-byte clock older members expect.
func TestAckPayloadDigest(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name     string
		features uint64
		change   bool
		wantLen  int
	}{
		{"every member accepts, a change made", ourFeatures, true, 16},
		{"no change yet", ourFeatures, false, 8},
		{"a member of an older version", featureOrigin, true, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{now: func() time.Time { return now }, cfg: Config{Name: "h1"},
				tab: newTable("h1", netip.MustParseAddr("198.18.0.1"), time.Second, now),
				members: map[string]*member{
					"h1": {meta: nodeMeta{features: ourFeatures}},
					"h2": {meta: nodeMeta{features: tc.features}},
				}}
			// As memberUp keeps it when a member's meta arrives.
			c.tab.ackDigest.Store(c.ackDigestOKLocked())
			if tc.change {
				if _, err := c.tab.setLocal(hostEndpoints(1, 1, 0), now); err != nil {
					t.Fatal(err)
				}
			}
			p := (*pinger)(c).AckPayload()
			if len(p) != tc.wantLen {
				t.Fatalf("payload of %d bytes, want %d", len(p), tc.wantLen)
			}
			if _, err := clockOffset(p[:8], now, 0); err != nil {
				t.Fatal(err)
			}
			if tc.wantLen == 16 && binary.BigEndian.Uint64(p[8:]) != c.tab.ownSeen.Load() {
				t.Errorf("digest %d, want %d", binary.BigEndian.Uint64(p[8:]), c.tab.ownSeen.Load())
			}
		})
	}
}
