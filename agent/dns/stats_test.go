package dns

import (
	"context"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

func TestCounters(t *testing.T) {
	s := testServer(t, &fakeUpstream{answer: answerA})
	l := &listener{}
	cv := compileView(testView())
	for _, q := range []struct {
		raw []byte
		tcp bool
	}{
		{pack(t, "web2.", mdns.TypeA), false},
		{pack(t, "secret.", mdns.TypeA), false},
		{pack(t, "example.org.", mdns.TypeA), true},
		{pack(t, "web.", mdns.TypeAXFR), true},
		{[]byte{1, 2, 3}, false},
	} {
		l.c.queries.Add(1)
		_, out := s.handle(context.Background(), cv, q.raw, q.tcp)
		l.c.count(out)
	}
	s.retired.add(l.c.snapshot())
	want := Stats{Queries: 5, Local: 1, NXDomain: 1, Forwarded: 1, Rejected: 1, Dropped: 1}
	if got := s.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += "{" + lp.GetValue() + "}"
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for k, v := range map[string]float64{
		"vxmesh_dns_queries_total":             5,
		"vxmesh_dns_responses_total{local}":    1,
		"vxmesh_dns_responses_total{nxdomain}": 1,
		"vxmesh_dns_responses_total{dropped}":  1,
		"vxmesh_dns_responses_total{failed}":   0,
		"vxmesh_dns_attached":                  0,
	} {
		if g, ok := got[k]; !ok || g != v {
			keys := make([]string, 0, len(got))
			for k := range got {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			t.Errorf("%s = %v (present %v), want %v; have %v", k, g, ok, v, keys)
		}
	}
}
