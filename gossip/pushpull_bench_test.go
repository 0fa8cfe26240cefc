package gossip

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// The push/pull hot path at scale, in process, for profiles:
//
//	go test ./gossip -run '^$' -bench PushPull -cpuprofile cpu.out -memprofile mem.out
//	go tool pprof -top cpu.out
//
// Two members hold the same 10,000 endpoints of one other owner (the
// steady state of a cluster: push/pull finds nothing new), as in `vxmesh
// bench cost`, where a fake member publishes them.

// pushPullPair returns two tables that hold the same n endpoints of
// owner "inj".
func pushPullPair(b *testing.B, n int, now time.Time) (a, c *table) {
	b.Helper()
	vtep := netip.MustParseAddr("198.18.0.250")
	inj := newTable("inj", vtep, time.Minute, now)
	var recs []Record
	for i := range n {
		name := fmt.Sprintf("inj-%d", i)
		recs = append(recs, Endpoint{Network: "mesh", Container: name,
			IP:    netip.AddrFrom4([4]byte{10, 200, 128 + byte(i>>8), byte(i)}),
			MAC:   []byte{2, 0x1e, 0, 0, byte(i >> 8), byte(i)},
			Names: []string{name}})
	}
	ups, err := inj.setLocal(recs, now)
	if err != nil {
		b.Fatal(err)
	}
	a = newTable("h1", netip.MustParseAddr("198.18.0.1"), time.Minute, now)
	c = newTable("h2", netip.MustParseAddr("198.18.0.2"), time.Minute, now)
	for _, t := range []*table{a, c} {
		t.merge(&group{owner: "inj", vtep: vtep, recs: ups}, now)
		if _, err := t.setLocal(nil, now); err != nil {
			b.Fatal(err)
		}
	}
	return a, c
}

// BenchmarkPushPull: one side of a push/pull of tables that agree. full:
// build and encode our whole table, decode and merge theirs (every
// push/pull before digests; a join now). digest: encode our digest,
// decode theirs and compare.
func BenchmarkPushPull(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("digest/endpoints=%d", n), func(b *testing.B) {
			now := time.Now()
			a, c := pushPullPair(b, n, now)
			b.ReportAllocs()
			b.ResetTimer()
			var sent int
			for range b.N {
				msg := encodeDigest(a.self, a.digests())
				sent = len(msg)
				m, err := decodeMessage(msg)
				if err != nil {
					b.Fatal(err)
				}
				if d := c.differing(m.digests); len(d) != 0 {
					b.Fatalf("tables differ on %v", d)
				}
			}
			b.ReportMetric(float64(sent), "bytes")
		})
		b.Run(fmt.Sprintf("full/endpoints=%d", n), func(b *testing.B) {
			now := time.Now()
			a, c := pushPullPair(b, n, now)
			b.ReportAllocs()
			b.ResetTimer()
			var sent int
			for range b.N {
				msg := encodeState(a.state(now))
				sent = len(msg)
				m, err := decodeMessage(msg)
				if err != nil {
					b.Fatal(err)
				}
				for i := range m.groups {
					c.merge(&m.groups[i], now)
				}
			}
			b.ReportMetric(float64(sent), "bytes")
		})
	}
}
