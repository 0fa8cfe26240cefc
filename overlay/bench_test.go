package overlay_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
	"github.com/vxmesh/vxmesh/overlay"
	"github.com/vxmesh/vxmesh/overlay/overlaybench"
)

// soloDevice makes a namespace holding a bridge and a VXLAN device, enough
// to program entries (no traffic), and returns the namespace and device.
func soloDevice(tb testing.TB) (string, overlay.Device) {
	tb.Helper()
	ns := nstest.NewNetns(tb, "prog")
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer nsh.Close()
	h, err := overlay.NewHandle(nsh)
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-bench"}}
	if err := h.LinkAdd(br); err != nil {
		tb.Fatal(err)
	}
	d := overlay.Device{Name: "bench", VNI: 4200, Local: netip.MustParseAddr("198.18.0.1"), MTU: 1450, Bridge: "vxb-bench"}
	if _, err := overlay.EnsureDevice(h, d); err != nil {
		tb.Fatal(err)
	}
	return ns, d
}

// BenchmarkProgram times programming N remote endpoints (FDB + flood +
// neighbour entries, from an empty device) four ways in the same run, and
// reports each as entries/s plus Sync's speed-up over the script ways.
//
//	go test -run '^$' -bench BenchmarkProgram -benchtime 3x ./overlay/
func BenchmarkProgram(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ns, d := soloDevice(b)
			eps := overlaybench.Endpoints(n, n/100)
			dir := b.TempDir()
			methods := []struct {
				name string
				run  func() (overlaybench.Result, error)
			}{
				{"sync", func() (overlaybench.Result, error) { return overlaybench.SyncPipelined(ns, d.LinkName(), eps) }},
				{"sync-per-request", func() (overlaybench.Result, error) { return overlaybench.SyncPerRequest(ns, d.LinkName(), eps) }},
				{"loop", func() (overlaybench.Result, error) { return overlaybench.ScriptLoop(ns, d.LinkName(), eps, dir) }},
				{"batch", func() (overlaybench.Result, error) { return overlaybench.Batch(ns, d.LinkName(), eps, dir) }},
			}
			total := map[string]time.Duration{}
			entries := 0
			var resync time.Duration
			for range b.N {
				for _, m := range methods {
					b.StopTimer()
					if err := overlaybench.Reset(ns, d); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					r, err := m.run()
					if err != nil {
						b.Fatal(err)
					}
					total[m.name] += r.Duration
					entries = r.Entries
					b.Logf("%s", r)
				}
				r, err := overlaybench.Resync(ns, d.LinkName(), eps)
				if err != nil {
					b.Fatal(err)
				}
				resync += r.Duration
			}
			rate := func(m string) float64 { return float64(entries*b.N) / total[m].Seconds() }
			b.ReportMetric(rate("sync"), "sync-entries/s")
			b.ReportMetric(rate("sync-per-request"), "per-request-entries/s")
			b.ReportMetric(rate("loop"), "loop-entries/s")
			b.ReportMetric(rate("batch"), "batch-entries/s")
			b.ReportMetric(float64(total["sync"].Milliseconds())/float64(b.N), "sync-ms")
			b.ReportMetric(float64(resync.Microseconds())/1000/float64(b.N), "resync-ms")
			b.ReportMetric(float64(total["loop"])/float64(total["sync"]), "x-faster-than-loop")
			b.ReportMetric(float64(total["batch"])/float64(total["sync"]), "x-faster-than-batch")
			b.ReportMetric(float64(total["sync-per-request"])/float64(total["sync"]), "x-faster-than-per-request")
		})
	}
}

// BenchmarkThroughput runs iperf3 (one TCP stream, 5 s after a 1 s warm-up)
// container to container across the overlay and, in the same run, host to
// host over the bare underlay veths, and reports both and their ratio.
//
//	go test -run '^$' -bench BenchmarkThroughput -benchtime 3x ./overlay/
func BenchmarkThroughput(b *testing.B) {
	nstest.RequireTool(b, "iperf3")
	tp := nstest.New(b, nstest.Options{Hosts: 2})
	var hosts []*ovHost
	for _, h := range tp.Hosts {
		oh := newOvHost(b, h, false)
		oh.addNetwork(b, meshNet)
		hosts = append(hosts, oh)
	}
	c1 := hosts[0].addContainer(b, "c1", meshNet, netip.MustParseAddr("10.200.1.10"))
	c2 := hosts[1].addContainer(b, "c2", meshNet, netip.MustParseAddr("10.200.2.10"))
	syncAll(b, hosts, meshNet, []*ctr{c1, c2})
	const dur = 5 * time.Second
	var over, under float64
	var ratios []float64
	for i := range b.N {
		var o, u float64
		var err error
		// Alternate the order, so neither always runs on a warmer machine.
		runs := []func(){
			func() {
				if err == nil {
					o, err = overlaybench.Iperf3(c1.ns, c2.ns, c2.ip, dur)
				}
			},
			func() {
				if err == nil {
					u, err = overlaybench.Iperf3(hosts[0].NS, hosts[1].NS, hosts[1].Addr, dur)
				}
			},
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		runs[0]()
		runs[1]()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("overlay %.0f Mbit/s, underlay %.0f Mbit/s, ratio %.2f", o/1e6, u/1e6, o/u)
		over += o
		under += u
		ratios = append(ratios, o/u)
	}
	// Each pair ran back to back; the median of the pairs' ratios is the
	// figure least moved by other load on the machine.
	slices.Sort(ratios)
	b.ReportMetric(over/float64(b.N)/1e6, "overlay-Mbit/s")
	b.ReportMetric(under/float64(b.N)/1e6, "underlay-Mbit/s")
	b.ReportMetric(ratios[len(ratios)/2], "median-overlay/underlay")
}
