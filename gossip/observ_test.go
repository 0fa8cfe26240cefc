package gossip

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

func TestMeta(t *testing.T) {
	tests := []struct {
		name string
		in   nodeMeta
	}{
		{"no keys", nodeMeta{features: ourFeatures, keys: []string{}}},
		{"keys", nodeMeta{features: ourFeatures, keys: []string{"sha256:0011223344556677", "sha256:8899aabbccddeeff"}}},
		{"future feature", nodeMeta{features: 1<<40 | ourFeatures, keys: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMeta(encodeMeta(tt.in))
			if err != nil || got.features != tt.in.features || !slices.Equal(got.keys, tt.in.keys) {
				t.Fatalf("round trip: %+v, %v; want %+v", got, err, tt.in)
			}
		})
	}
	// A member before node meta sends none: no features, keys unknown.
	if m, err := decodeMeta(nil); err != nil || m.features != 0 || m.keys != nil {
		t.Fatalf("empty meta: %+v, %v", m, err)
	}
	for _, bad := range [][]byte{{9}, {metaFormat}, {metaFormat, 0, 1}, append(encodeMeta(nodeMeta{}), 0)} {
		if _, err := decodeMeta(bad); err == nil {
			t.Errorf("decodeMeta(%x) accepted", bad)
		}
	}
}

func TestClockOffset(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name    string
		theirs  time.Time
		rtt     time.Duration
		want    time.Duration
		wantErr bool
	}{
		{"same clock", now.Add(-5 * time.Millisecond), 10 * time.Millisecond, 0, false},
		{"ahead 2s", now.Add(2 * time.Second), 0, 2 * time.Second, false},
		{"behind 1s", now.Add(-time.Second - time.Millisecond), 2 * time.Millisecond, -time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := binary.BigEndian.AppendUint64(nil, uint64(tt.theirs.UnixNano()))
			got, err := clockOffset(p, now, tt.rtt)
			if err != nil || got != tt.want {
				t.Fatalf("clockOffset = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := clockOffset([]byte{1, 2}, now, 0); err == nil {
		t.Fatal("short payload accepted")
	}
}

// TestOriginOnlyWhenAllDecodeIt: a table sends origin times only while
// every member announces the feature; received ones are kept.
func TestOriginOnlyWhenAllDecodeIt(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tab := newTable("h1", netip.MustParseAddr("198.18.0.1"), time.Minute, now)
	out, err := tab.setLocal(hostEndpoints(1, 1, 0), now)
	if err != nil || len(out) != 1 || out[0].origin != 0 {
		t.Fatalf("without the feature: %+v, %v", out, err)
	}
	tab.sendOrigin = true
	g := tab.ownerGroups("h1", true, now)
	if len(g) != 1 || g[0].recs[0].origin != now.UnixMilli() {
		t.Fatalf("with the feature: %+v", g)
	}
	// A receiver keeps and reports the origin.
	var seen []int64
	rx := newTable("h2", netip.MustParseAddr("198.18.0.2"), time.Minute, now)
	rx.observe = func(_ string, _ rkey, origin int64, live bool) {
		if live {
			seen = append(seen, origin)
		}
	}
	rx.merge(&g[0], now)
	if !slices.Equal(seen, []int64{now.UnixMilli()}) {
		t.Fatalf("observed origins %v", seen)
	}
}

// TestMembersKeysAndClocks: two members with a key and a fingerprint
// function see each other's fingerprints, a near-zero clock offset and the
// origin time of each other's records; a key change is announced.
func TestMembersKeysAndClocks(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210")
	fp := func(k []byte) string { return fmt.Sprintf("fp-%x", k[:4]) }
	var mu sync.Mutex
	var origins []time.Time
	var cs []*Cluster
	for i := 1; i <= 2; i++ {
		cfg := Config{Name: fmt.Sprintf("h%d", i), Addr: lo(i), Netns: ns, Keys: [][]byte{k1}, Fingerprint: fp, Tuning: fastTuning()}
		if i > 1 {
			cfg.Join = []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}
		}
		cs = append(cs, startWith(t, cfg, func(c *Cluster) {
			if i == 2 {
				c.Observe(func(ch Change) {
					if ch.Live && ch.Owner == "h1" {
						mu.Lock()
						origins = append(origins, ch.Origin)
						mu.Unlock()
					}
				})
			}
		}))
	}
	waitMembers(t, cs, 2)
	peer := func(c *Cluster, name string) Member {
		for _, m := range c.Members() {
			if m.Name == name {
				return m
			}
		}
		return Member{}
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		m := peer(cs[1], "h1")
		if !slices.Equal(m.KeyFingerprints, []string{fp(k1)}) {
			return fmt.Errorf("h2 sees h1's keys %v", m.KeyFingerprints)
		}
		if !m.ClockKnown {
			return fmt.Errorf("h2 has no clock offset for h1")
		}
		if m.ClockOffset < -50*time.Millisecond || m.ClockOffset > 50*time.Millisecond {
			return fmt.Errorf("h2 sees h1's clock %v off, want about 0", m.ClockOffset)
		}
		return nil
	})
	if self := peer(cs[0], "h1"); !self.Self || !self.ClockKnown || !slices.Equal(self.KeyFingerprints, []string{fp(k1)}) {
		t.Fatalf("h1 about itself: %+v", self)
	}

	// Records carry their origin: both members announce the feature.
	before := time.Now()
	mustSet(t, cs[0], hostEndpoints(1, 1, 0)...)
	waitSame(t, 5*time.Second, cs, "")
	mu.Lock()
	got := slices.Clone(origins)
	mu.Unlock()
	if len(got) == 0 || got[0].Before(before.Add(-time.Second)) || got[0].After(time.Now()) {
		t.Fatalf("origins observed on h2: %v (set at %v)", got, before)
	}

	// A new encrypting key shows on the other member.
	if err := cs[0].SetKeys([][]byte{k2, k1}); err != nil {
		t.Fatal(err)
	}
	if err := cs[1].SetKeys([][]byte{k2, k1}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		if got := peer(cs[1], "h1").KeyFingerprints; !slices.Equal(got, []string{fp(k2), fp(k1)}) {
			return fmt.Errorf("h2 sees h1's keys %v after rotation", got)
		}
		return nil
	})
}

// logBuf is a concurrency-safe buffer behind a JSON slog handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogRejectAndReap: a forged record and a reap each leave one
// structured line saying what and why.
func TestLogRejectAndReap(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	var logs logBuf
	var cs []*Cluster
	for i := 1; i <= 3; i++ {
		cfg := Config{Name: fmt.Sprintf("h%d", i), Addr: lo(i), Netns: ns, ReapAfter: time.Second, Tuning: fastTuning()}
		if i > 1 {
			cfg.Join = []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}
		}
		log := slog.New(slog.DiscardHandler)
		if i == 2 {
			log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
		c, err := New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			c.Shutdown()
			cancel()
			<-done
		})
		cs = append(cs, c)
	}
	waitMembers(t, cs, 3)
	evil := cs[2]
	mustSet(t, evil, hostEndpoints(3, 2, 0)...)
	waitSame(t, 5*time.Second, cs, "")

	// evil sends h1's record with its own address as VTEP.
	e := hostEndpoints(1, 1, 0x66)[0].(Endpoint)
	forged := encodeUpdate(msgUpdate, &group{owner: "h1", vtep: lo(3), recs: []wireRecord{
		{kind: KindEndpoint, version: 1 << 61, key: string(e.appendKey(nil)), val: string(e.appendValue(nil))},
	}})
	var h2node memberlist.Node
	for _, n := range evil.ml.Members() {
		if n.Name == "h2" {
			h2node = *n
		}
	}
	if err := evil.ml.SendBestEffort(&h2node, forged); err != nil {
		t.Fatal(err)
	}
	// Then evil goes; after reap_after h2 reaps its two records.
	nstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), `"reason":"vtep is not the owner's address"`) {
			return fmt.Errorf("no rejection logged yet:\n%s", logs.String())
		}
		return nil
	})
	evil.Shutdown()
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), `"msg":"reaped records of departed member"`) {
			return fmt.Errorf("no reap logged yet")
		}
		return nil
	})
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []struct{ msg, fields string }{
		{`"level":"WARN","msg":"rejected gossip"`, `"reason":"vtep is not the owner's address","owner":"h1","vtep":"127.0.0.3","member_addr":"127.0.0.1","records":1`},
		{`"level":"INFO","msg":"reaped records of departed member"`, `"member":"h3","records":2`},
	}
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, w.msg) && strings.Contains(l, w.fields) && strings.Contains(l, `"node":"h2"`) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines with %s %s, want 1:\n%s", n, w.msg, w.fields, logs.String())
		}
	}
}

// TestRecordCounts: records by kind and state, a dead member's live
// records waiting for their reap.
func TestRecordCounts(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	c := start(t, Config{Name: "h1", Addr: lo(1), Netns: ns})
	mustSet(t, c, append(hostEndpoints(1, 2, 0), BlockClaim{Network: "mesh", Prefix: netip.MustParsePrefix("10.200.1.0/24")})...)
	mustSet(t, c, hostEndpoints(1, 1, 0)...) // one endpoint and the claim become tombstones
	now := time.Now()
	for _, h := range []struct {
		name  string
		state MemberState
	}{{"h2", MemberAlive}, {"h3", MemberDead}} {
		i := int(h.name[1] - '0')
		tab := newTable(h.name, lo(i), time.Minute, now)
		tab.sendOrigin = true
		if _, err := tab.setLocal(hostEndpoints(i, 3, 0), now); err != nil {
			t.Fatal(err)
		}
		g := tab.ownerGroups(h.name, true, now)[0]
		c.mu.Lock()
		c.members[h.name] = &member{addr: netip.AddrPortFrom(lo(i), DefaultPort), state: h.state}
		c.tab.merge(&g, now)
		c.mu.Unlock()
	}
	got := map[string]int{}
	for _, rc := range c.RecordCounts() {
		got[rc.Kind.String()+"/"+rc.State] = rc.Records
	}
	want := map[string]int{
		"endpoint/live": 1 + 3, "endpoint/tombstone": 1, "endpoint/reap-pending": 3,
		"block-claim/live": 0, "block-claim/tombstone": 1, "block-claim/reap-pending": 0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RecordCounts = %v, want %v", got, want)
	}
}
