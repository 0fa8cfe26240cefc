package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// The push/pull payload at scale, measured on the wire encoding itself.
// Figures in docs/benchmarks.md (## Gossip):
//
//	go test ./gossip -run '^$' -bench StateSize

func BenchmarkStateSize(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			var s stateSize
			var err error
			for range b.N {
				if s, err = benchStateSize(n, 50); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.Bytes), "bytes")
			b.ReportMetric(float64(s.Bytes)/float64(s.Endpoints), "bytes/endpoint")
			b.ReportMetric(float64(s.Raw), "raw-bytes")
			b.ReportMetric(float64(s.Bytes)/float64(s.JSON), "bytes/json")
			b.ReportMetric(float64(s.Bytes)/float64(20<<20), "bytes/memberlist-cap")
			b.ReportMetric(float64(s.Encode.Microseconds())/1000, "encode-ms")
			b.ReportMetric(float64(s.Decode.Microseconds())/1000, "decode-merge-ms")
		})
	}
}

// TestBenchStateSize keeps the size figure honest in CI: 10,000 endpoints
// must stay far below memberlist's 20 MiB push/pull cap.
func TestBenchStateSize(t *testing.T) {
	s, err := benchStateSize(10000, 50)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bytes > 1<<20 {
		t.Fatalf("push/pull at 10k endpoints is %d bytes; keep it well under 1 MiB (cap 20 MiB)", s.Bytes)
	}
	t.Logf("10k endpoints: %d bytes sent, %d raw, %d as JSON", s.Bytes, s.Raw, s.JSON)
}

// stateSize is the push/pull payload benchStateSize measured.
type stateSize struct {
	Endpoints int `json:"endpoints"`
	Owners    int `json:"owners"`
	// Bytes is the State message as sent (DEFLATE-compressed); Raw is the
	// same message uncompressed; JSON is the endpoints as a JSON array, a
	// naive baseline.
	Bytes int `json:"bytes"`
	Raw   int `json:"raw"`
	JSON  int `json:"json"`
	// Encode and Decode are the times to build and to parse it once.
	Encode time.Duration `json:"encode"`
	Decode time.Duration `json:"decode"`
}

// benchStateSize builds a table of endpoints spread over owners (realistic
// names: "web-17", two names each, one network per 1000 endpoints) and
// measures its push/pull payload.
func benchStateSize(endpoints, owners int) (stateSize, error) {
	if owners <= 0 || endpoints <= 0 {
		return stateSize{}, errors.New("bench state size: need endpoints and owners")
	}
	now := time.Now()
	t := newTable("observer", netip.MustParseAddr("198.18.255.1"), time.Minute, now)
	var all []Endpoint
	per := (endpoints + owners - 1) / owners
	for o := range owners {
		host := fmt.Sprintf("host-%02d", o+1)
		vtep := netip.AddrFrom4([4]byte{198, 18, byte(o >> 8), byte(o + 1)})
		owner := newTable(host, vtep, time.Minute, now)
		var recs []Record
		for j := 0; j < per && len(all) < endpoints; j++ {
			n := len(all)
			name := fmt.Sprintf("web-%d", n)
			e := Endpoint{
				Network: fmt.Sprintf("net-%d", n/1000), Container: name,
				IP:    netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
				MAC:   []byte{2, 0x42, 10, byte(n >> 16), byte(n >> 8), byte(n)},
				Names: []string{name, "svc-" + name},
			}
			recs = append(recs, e)
			all = append(all, e.stamped(host, vtep).(Endpoint))
		}
		ups, err := owner.setLocal(recs, now)
		if err != nil {
			return stateSize{}, err
		}
		t.merge(&group{owner: host, vtep: vtep, recs: ups}, now)
	}
	s := stateSize{Endpoints: len(all), Owners: owners}
	start := time.Now()
	gs := t.state(now)
	msg := encodeState(gs)
	s.Encode = time.Since(start)
	s.Bytes = len(msg)
	body := appendUvarint(nil, uint64(len(gs)))
	for i := range gs {
		body = appendGroup(body, &gs[i])
	}
	s.Raw = len(body) + 3
	start = time.Now()
	m, err := decodeMessage(msg)
	if err != nil {
		return s, fmt.Errorf("bench state size: %w", err)
	}
	t2 := newTable("observer2", netip.MustParseAddr("198.18.255.2"), time.Minute, now)
	for i := range m.groups {
		t2.merge(&m.groups[i], now)
	}
	s.Decode = time.Since(start)
	if got := len(t2.snapshot().Endpoints); got != len(all) {
		return s, fmt.Errorf("bench state size: decoded %d endpoints, want %d", got, len(all))
	}
	j, err := json.Marshal(all)
	if err != nil {
		return s, err
	}
	s.JSON = len(j)
	return s, nil
}
