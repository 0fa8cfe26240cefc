package gossipbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// Benchmarks. Figures and commands are in docs/benchmarks.md (## Gossip).
//
//	go test ./gossip/gossipbench -run '^$' -bench Convergence -benchtime 1x -timeout 30m
//
// The push/pull size benchmark measures the wire encoding, so it lives with
// it: go test ./gossip -run '^$' -bench StateSize
//
// GOSSIP_BENCH_NODES (e.g. "3,10,50"), GOSSIP_BENCH_WRITES (default 200) and
// GOSSIP_BENCH_RATE (writes per second, default 20) and GOSSIP_BENCH_ENDPOINTS
// (endpoints per member, default 10) shape a run;
// GOSSIP_BENCH_LOSS=0.05 drops that share of all UDP gossip packets (iptables
// statistic match in the benchmark's namespace) to measure the repair paths.

// benchTunings are the strategies compared: memberlist's own LAN defaults
// (the baseline), our tuned epidemic gossip without direct sends, and the
// default (direct fan-out plus tuned gossip).
func benchTunings() []struct {
	name string
	tun  gossip.Tuning
} {
	baseline := gossip.Tuning{
		GossipInterval: 200 * time.Millisecond, GossipNodes: 3, RetransmitMult: 4,
		ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		SuspicionMult: 4, SuspicionMaxTimeoutMult: 6, PushPullInterval: 30 * time.Second,
		TCPTimeout: 10 * time.Second, DirectFanout: -1,
	}
	epidemic := gossip.DefaultTuning()
	epidemic.DirectFanout = -1
	return []struct {
		name string
		tun  gossip.Tuning
	}{
		{"memberlist-defaults", baseline},
		{"tuned-epidemic", epidemic},
		{"vxmesh-default", gossip.DefaultTuning()},
	}
}

func benchSizes() []int {
	if s := os.Getenv("GOSSIP_BENCH_NODES"); s != "" {
		var out []int
		for _, f := range splitComma(s) {
			n, err := strconv.Atoi(f)
			if err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	return []int{3, 10, 50}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func BenchmarkConvergence(b *testing.B) {
	writes, rate := 200, 20.0
	if s := os.Getenv("GOSSIP_BENCH_WRITES"); s != "" {
		writes, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("GOSSIP_BENCH_RATE"); s != "" {
		rate, _ = strconv.ParseFloat(s, 64)
	}
	endpoints := 10
	if s := os.Getenv("GOSSIP_BENCH_ENDPOINTS"); s != "" {
		endpoints, _ = strconv.Atoi(s)
	}
	for _, n := range benchSizes() {
		p99 := map[string]time.Duration{}
		for _, tc := range benchTunings() {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, tc.name), func(b *testing.B) {
				name := nstest.NewNetns(b, "gbench")
				if loss := os.Getenv("GOSSIP_BENCH_LOSS"); loss != "" {
					nstest.RequireTool(b, "iptables")
					if _, err := nstest.RunIn(name, "iptables", "-A", "INPUT", "-p", "udp", "--dport", strconv.Itoa(gossip.DefaultPort),
						"-m", "statistic", "--mode", "random", "--probability", loss, "-j", "DROP"); err != nil {
						b.Fatal(err)
					}
				}
				h, err := netnsutil.Open(name)
				if err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				var r Result
				for range b.N {
					r, err = Convergence(context.Background(), Options{
						Nodes: n, Writes: writes, Rate: rate, Endpoints: endpoints, Netns: h, Tuning: tc.tun,
						Timeout: 70 * time.Second,
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				p99[tc.name] = r.P99
				b.ReportMetric(float64(r.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(r.P99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(r.Max.Microseconds())/1000, "max-ms")
				b.ReportMetric(float64(r.Missed), "missed")
				b.ReportMetric(r.IdleBytesPerNodeSec, "idle-B/node/s")
				b.ReportMetric(r.ChurnBytesPerNodeSec, "churn-B/node/s")
				b.ReportMetric(float64(r.StateBytes), "pushpull-B")
				if base := p99["memberlist-defaults"]; base > 0 && tc.name != "memberlist-defaults" {
					b.ReportMetric(float64(r.P99)/float64(base), "p99/baseline")
				}
				b.Logf("%s %s", tc.name, r)
			})
		}
	}
}

// TestConvergenceRuns is a small smoke run of the benchmark logic.
func TestConvergenceRuns(t *testing.T) {
	t.Parallel()
	ns := loopbackNS(t)
	r, err := Convergence(context.Background(), Options{Nodes: 3, Writes: 10, Rate: 50, Idle: 200 * time.Millisecond, Netns: ns, Tuning: fastTuning()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Missed != 0 || r.P50 <= 0 || r.Max < r.P99 || r.ChurnBytesPerNodeSec <= 0 {
		t.Fatalf("implausible result: %s", r)
	}
}

// fastTuning makes the smoke run's cluster form in a fraction of a second.
func fastTuning() gossip.Tuning {
	return gossip.Tuning{
		GossipInterval: 20 * time.Millisecond, GossipNodes: 3, RetransmitMult: 3,
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SuspicionMult: 2, SuspicionMaxTimeoutMult: 2, PushPullInterval: time.Second,
		TCPTimeout: time.Second, RejoinInterval: 200 * time.Millisecond, LeaveTimeout: 500 * time.Millisecond,
	}
}

// loopbackNS makes a fresh namespace whose loopback serves 127.0.0.0/8.
func loopbackNS(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netnsutil.Open(nstest.NewNetns(t, "gbs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestOverMemory(t *testing.T) {
	tests := []struct {
		name  string
		limit uint64
		over  bool
	}{
		{"no limit", 0, false},
		{"one byte", 1, true},
		{"an exabyte", 1 << 60, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := overMemory(tt.limit)
			if got := errors.Is(err, errOverMemory); got != tt.over {
				t.Fatalf("overMemory(%d) = %v, want over %v", tt.limit, err, tt.over)
			}
		})
	}
}
