package agent

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// metricsHosts: overlay mesh on two hosts with one container each, and the
// metrics endpoint on 127.0.0.1:9471 in each host namespace.
func metricsHosts(host string) string {
	return fmt.Sprintf(`
metrics:
  listen: 127.0.0.1:9471
networks:
  - name: mesh
    driver: overlay
    subnet: 10.210.0.0/16
containers:
  - name: m%s
    netns: ns(m%s)
    networks: [mesh]
`, host, host)
}

// sample returns the value of the series line that starts with series
// (name and labels exactly as exposed), and whether there is one.
func sample(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestMetricsLive: after a pass on a two-host overlay, every family of
// docs/operations.md's table is on h2's /metrics with sane values, and an
// outside change to an FDB entry counts as a drift repair.
func TestMetricsLive(t *testing.T) {
	c := newOvCluster(t, 2, false, metricsHosts)
	c.startAll()
	h1, h2 := c.host("h1"), c.host("h2")
	dev := h2.vxlanOf("mesh")

	// Outside change: h1's container's FDB entry goes on h2. A pass that
	// was already running when the watcher fired repairs it without
	// calling it drift (as its log does), so delete until one counts.
	mac := h1.mac("mh1", "mesh")
	vtep := c.addr(h1.h).String()
	nstest.Eventually(t, 30*time.Second, func() error {
		h2.h.MustRun(t, "bridge", "fdb", "del", mac, "dev", dev, "dst", vtep, "self")
		nstest.Eventually(t, 10*time.Second, func() error {
			if fdb, _ := h2.entries(dev); !strings.Contains(fdb, mac+" dst "+vtep+" self permanent") {
				return fmt.Errorf("fdb entry not restored:\n%s", fdb)
			}
			return nil
		})
		if v, _ := sample(scrape(t, h2.h.NS, "127.0.0.1:9471"), `vxmesh_drift_repairs_total{kind="fdb"}`); v < 1 {
			return fmt.Errorf("repair not counted as drift")
		}
		return nil
	})

	type check struct {
		series string
		ok     func(float64) bool
		says   string
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	is := func(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
	checks := []check{
		{`vxmesh_convergence_lag_seconds_count{kind="endpoint"}`, atLeast(1), ">= 1 (h1's endpoint programmed here)"},
		{`vxmesh_convergence_lag_seconds_sum{kind="endpoint"}`, func(v float64) bool { return v >= 0 && v < 30 }, "in [0, 30) s"},
		{`vxmesh_convergence_lag_seconds_bucket{kind="endpoint",le="+Inf"}`, atLeast(1), ">= 1"},
		{`vxmesh_reconcile_duration_seconds_count`, atLeast(1), ">= 1"},
		{`vxmesh_reconcile_duration_seconds_sum`, func(v float64) bool { return v > 0 && v < 60 }, "in (0, 60) s"},
		{`vxmesh_reconcile_passes_total`, atLeast(1), ">= 1"},
		{`vxmesh_kernel_writes_total{kind="fdb"}`, atLeast(2), ">= 2 (programmed, then repaired)"},
		{`vxmesh_kernel_writes_total{kind="neigh"}`, atLeast(1), ">= 1"},
		{`vxmesh_kernel_writes_total{kind="link"}`, atLeast(1), ">= 1 (bridge, veth)"},
		{`vxmesh_kernel_writes_total{kind="addr"}`, atLeast(1), ">= 1"},
		{`vxmesh_kernel_writes_total{kind="device"}`, atLeast(1), ">= 1 (the VXLAN device)"},
		{`vxmesh_drift_repairs_total{kind="fdb"}`, atLeast(1), ">= 1"},
		{`vxmesh_gossip_records{kind="endpoint",state="live"}`, is(2), "2 (one per host)"},
		{`vxmesh_gossip_records{kind="block-claim",state="live"}`, is(2), "2 (one block per host)"},
		{`vxmesh_gossip_records{kind="endpoint",state="reap-pending"}`, is(0), "0"},
		{`vxmesh_gossip_records{kind="endpoint",state="tombstone"}`, atLeast(0), "present"},
		{`vxmesh_gossip_rejected_total{reason="vtep"}`, is(0), "0"},
		{`vxmesh_gossip_rejected_total{reason="malformed"}`, is(0), "0"},
		{`vxmesh_gossip_members{state="alive"}`, is(2), "2"},
		{`vxmesh_gossip_members{state="dead"}`, is(0), "0"},
		{`vxmesh_ipam_used_addresses{network="mesh"}`, is(3), "3 (gateway and two containers)"},
		{`vxmesh_ipam_size_addresses{network="mesh"}`, is(65534), "65534"},
		{`vxmesh_dns_queries_total`, atLeast(0), "present"},
		{`vxmesh_dns_attached`, is(1), "1"},
	}
	var body string
	nstest.Eventually(t, 15*time.Second, func() error {
		body = scrape(t, h2.h.NS, "127.0.0.1:9471")
		var bad []string
		for _, ch := range checks {
			v, ok := sample(body, ch.series)
			if !ok || !ch.ok(v) {
				bad = append(bad, fmt.Sprintf("%s = %v (present %v), want %s", ch.series, v, ok, ch.says))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "\n"))
		}
		return nil
	})
	n, _ := sample(body, `vxmesh_convergence_lag_seconds_count{kind="endpoint"}`)
	sum, _ := sample(body, `vxmesh_convergence_lag_seconds_sum{kind="endpoint"}`)
	t.Logf("h2: %v endpoint records timed, mean convergence lag %.1f ms", n, 1000*sum/n)
	for _, help := range []string{"vxmesh_convergence_lag_seconds histogram", "vxmesh_kernel_writes_total counter", "vxmesh_gossip_records gauge"} {
		if !strings.Contains(body, "# TYPE "+help+"\n") {
			t.Errorf("no # TYPE %s", help)
		}
	}
}
