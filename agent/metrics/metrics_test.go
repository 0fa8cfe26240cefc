package metrics

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestMetricsRegistry: the agent's series and the DNS collector are
// registered and follow the passes.
func TestMetricsRegistry(t *testing.T) {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "", prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("vxmesh_dns_queries_total", "test", nil, nil), prometheus.CounterValue, 7)
	}))
	// A pass over 6 containers, 3 networks and 2 remote endpoints.
	m.Observe(6, 3, 2, 30*time.Millisecond, nil)
	m.Observe(6, 3, 2, 50*time.Millisecond, errors.New("boom"))
	got := gatherValues(t, m.reg)
	for name, want := range map[string]float64{
		"vxmesh_reconcile_passes_total":          2,
		"vxmesh_reconcile_errors_total":          1,
		"vxmesh_reconcile_last_duration_seconds": 0.05,
		"vxmesh_containers":                      6,
		"vxmesh_networks":                        3,
		"vxmesh_remote_endpoints":                2,
		"vxmesh_dns_queries_total":               7,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if got["vxmesh_reconcile_last_success_timestamp_seconds"] == 0 {
		t.Error("no last success timestamp")
	}

}

// TestMetricsServe: serve opens the endpoint inside the host namespace; a
// bad address fails; the same address twice is one listener; "" stops.
func TestMetricsServe(t *testing.T) {
	ns := nstest.NewNetns(t, "metrics")
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), ns)
	dial := func(a string) error {
		return netnsutil.Do(ns, func() error {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := m.Serve("256.0.0.1:1"); err == nil {
		t.Error("serve on a bad address succeeded")
	}
	if err := m.Serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	a := m.Addr()
	if err := m.Serve("127.0.0.1:0"); err != nil || m.Addr() != a {
		t.Fatalf("serving the same address again: %v, %v -> %v", err, a, m.Addr())
	}
	if err := dial(a.String()); err != nil {
		t.Fatalf("metrics port %s not open in %s: %v", a, ns, err)
	}
	if err := m.Serve(""); err != nil || m.Addr() != nil {
		t.Fatalf("serve off: %v, %v", err, m.Addr())
	}
	if err := dial(a.String()); err == nil {
		t.Fatal("metrics port still open after serve(\"\")")
	}
}

// TestPprofOptIn: the profiling endpoints answer on metrics.listen only
// with VXMESH_PPROF=1; the metrics answer either way.
func TestPprofOptIn(t *testing.T) {
	for _, tc := range []struct {
		env       string
		wantPprof int
	}{
		{"", http.StatusNotFound},
		{"0", http.StatusNotFound},
		{"1", http.StatusOK},
	} {
		t.Run("VXMESH_PPROF="+tc.env, func(t *testing.T) {
			t.Setenv(PprofEnv, tc.env)
			m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "")
			if err := m.Serve("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			defer m.Stop()
			base := "http://" + m.Addr().String()
			for path, want := range map[string]int{
				MetricsPath:                     http.StatusOK,
				PprofPath:                       tc.wantPprof,
				PprofPath + "heap?debug=1":      tc.wantPprof,
				PprofPath + "goroutine?debug=1": tc.wantPprof,
				PprofPath + "cmdline":           tc.wantPprof,
			} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
				}
			}
		})
	}
}

// gatherValues reads every unlabelled series (sums labelled ones) of reg.
func gatherValues(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] += metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
