package dns

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/dns/dnsload"
)

// BenchmarkDNS measures, in one run and one topology, queries per second
// and latency of three paths, each a closed loop of 4 UDP clients:
//
//   - direct: a client in the agent's namespace asks the fake upstream
//     (the baseline: what forwarding costs on top of);
//   - forwarded: a client in the container asks 127.0.0.11 for an external
//     name, which the server forwards to that upstream;
//   - local: a client in the container asks 127.0.0.11 for a container name.
//
// The parent logs a table with the ratios to direct.
//
//	go test ./agent/dns -run '^$' -bench BenchmarkDNS -benchtime 20000x
func BenchmarkDNS(b *testing.B) {
	r := newRig(b, Options{ForwardTimeout: 2 * time.Second, TryTimeout: time.Second})
	if err := r.srv.Attach(r.ctr, rigView()); err != nil {
		b.Fatal(err)
	}
	modes := []struct {
		name string
		opts dnsload.Options
	}{
		{"direct", dnsload.Options{Netns: r.agent.NS, Server: r.upstream.addr, Name: "ext.example.org."}},
		{"forwarded", dnsload.Options{Netns: r.ctr, Server: ListenAddr, Name: "ext.example.org."}},
		{"local", dnsload.Options{Netns: r.ctr, Server: ListenAddr, Name: "web2."}},
	}
	results := map[string]dnsload.Result{}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			o := m.opts
			o.Workers = 4
			o.Queries = b.N
			b.ResetTimer()
			res, err := dnsload.Run(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d queries unanswered: %v", res.Errors, res)
			}
			b.ReportMetric(res.QPS, "q/s")
			b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
			results[m.name] = res
		})
	}
	base, ok := results["direct"]
	if !ok {
		return
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n%-10s %10s %9s %9s %12s %12s\n", "path", "q/s", "p50", "p99", "q/s÷direct", "p99÷direct")
	for _, m := range modes {
		res, ok := results[m.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&tbl, "%-10s %10.0f %9v %9v %12.2f %12.2f\n", m.name, res.QPS,
			res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond),
			res.QPS/base.QPS, float64(res.P99)/float64(base.P99))
	}
	b.Log(tbl.String())
	b.Logf("server stats: %+v", r.srv.Stats())
}
