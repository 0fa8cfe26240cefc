package metrics

import (
	"io"
	"log/slog"
	"math"
	"net/netip"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// series returns each labelled series of a family as "label=value,..." →
// value (histograms: their sample count).
func series(t *testing.T, m *Registry, family string) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, s := range mf.GetMetric() {
			k := ""
			for _, l := range s.GetLabel() {
				if k != "" {
					k += ","
				}
				k += l.GetName() + "=" + l.GetValue()
			}
			out[k] = value(s)
		}
	}
	return out
}

func value(s *dto.Metric) float64 {
	if h := s.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return metricValue(s)
}

func TestLiveFamilies(t *testing.T) {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "")
	m.KernelWrites(KindFDB, 3)
	m.KernelWrites(BridgeKind(bridge.OpAddVeth), 1)
	m.KernelWrites(BridgeKind(bridge.OpSetMTU), 1)
	m.KernelWrites(KindNeigh, 0) // nothing written: no series
	m.DriftRepaired(KindFDB)
	m.Converged("endpoint", 40*time.Millisecond)
	m.Converged("endpoint", -time.Second) // owner's clock ahead: counts as 0
	m.Observe(1, 1, 0, 20*time.Millisecond, nil)

	tests := []struct {
		family string
		want   map[string]float64
	}{
		{"vxmesh_kernel_writes_total", map[string]float64{"kind=fdb": 3, "kind=link": 2}},
		{"vxmesh_drift_repairs_total", map[string]float64{"kind=fdb": 1}},
		{"vxmesh_convergence_lag_seconds", map[string]float64{"kind=endpoint": 2}},
		{"vxmesh_reconcile_duration_seconds", map[string]float64{"": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.family, func(t *testing.T) {
			got := series(t, m, tt.family)
			if len(got) != len(tt.want) {
				t.Fatalf("%v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s{%s} = %v, want %v", tt.family, k, got[k], v)
				}
			}
		})
	}
	// The negative lag landed in the lowest bucket.
	mfs, _ := m.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "vxmesh_convergence_lag_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if b := h.GetBucket()[0]; b.GetCumulativeCount() != 1 || math.Abs(h.GetSampleSum()-0.04) > 1e-9 {
				t.Errorf("lag histogram: first bucket %d, sum %v", b.GetCumulativeCount(), h.GetSampleSum())
			}
		}
	}
}

func TestBridgeKind(t *testing.T) {
	for op, want := range map[bridge.OpKind]string{
		bridge.OpAddBridge: KindLink, bridge.OpAddAddr: KindAddr, bridge.OpReplaceRoute: KindRoute,
		bridge.OpSetSysctl: KindSysctl, bridge.OpWriteFile: KindFile, bridge.OpCreateNetns: KindNetns,
		bridge.OpSyncFirewall: KindFirewall, "future op": KindOther,
	} {
		if got := BridgeKind(op); got != want {
			t.Errorf("BridgeKind(%q) = %q, want %q", op, got, want)
		}
	}
}

func TestIPAMUsage(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	cfg := &config.Config{Networks: []config.Network{
		{Name: "web", Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1")},
		{Name: "mesh", Subnet: pfx("10.200.0.0/16"), Gateway: addr("10.200.0.1")},
		{Name: "v6", Subnet: pfx("fd00::/120")},
		{Name: "host"}, // no subnet (macvlan without IPAM): not reported
	}}
	d := &pass.Desired{Snapshot: &pass.Snapshot{Config: cfg},
		Containers: []*pass.ContainerView{
			{Interfaces: []bridge.Interface{{Network: "web", Addr: pfx("10.1.0.2/24")}, {Network: "mesh", Addr: pfx("10.200.1.2/16")}}},
			{Interfaces: []bridge.Interface{{Network: "web", Addr: pfx("10.1.0.3/24")}, {Network: "v6", Addr: pfx("fd00::5/120")}}},
		},
		Remote: []pass.RemoteEndpoint{
			{Network: "mesh", IP: addr("10.200.2.2")}, {Network: "mesh", IP: addr("10.200.2.3")},
			{Network: "mesh", IP: addr("10.200.1.2")}, // the same address twice counts once
		},
	}
	want := []IPAMUsage{{"web", 3, 254}, {"mesh", 4, 65534}, {"v6", 1, 256}}
	got := Usage(d)
	if len(got) != len(want) {
		t.Fatalf("Usage = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Usage[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "")
	m.ObserveDesired(d)
	if s := series(t, m, "vxmesh_ipam_used_addresses"); s["network=mesh"] != 4 || len(s) != 3 {
		t.Errorf("used: %v", s)
	}
	// A network that goes loses its series.
	cfg.Networks = cfg.Networks[:1]
	m.ObserveDesired(d)
	if s := series(t, m, "vxmesh_ipam_size_addresses"); len(s) != 1 || s["network=web"] != 254 {
		t.Errorf("size after a network went: %v", s)
	}
	if Usage(nil) != nil {
		t.Error("Usage(nil)")
	}
}
