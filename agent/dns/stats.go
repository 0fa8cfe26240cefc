package dns

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are query counters, summed over every container since New.
// StatsFor leaves TCPRetries zero: it is counted per server.
type Stats struct {
	// Queries received (every packet or TCP message, dropped ones included).
	Queries uint64 `json:"queries"`
	// Local answered from the view: addresses, PTR, or NODATA.
	Local uint64 `json:"local"`
	// NXDomain answered NXDOMAIN from the view (names hidden from the
	// asker, unknown addresses in our subnets); never forwarded.
	NXDomain uint64 `json:"nxdomain"`
	// Forwarded answered with an upstream's response.
	Forwarded uint64 `json:"forwarded"`
	// Failed answered SERVFAIL because no upstream answered usefully in
	// time (or there was none).
	Failed uint64 `json:"failed"`
	// Rejected answered FORMERR, NOTIMP, REFUSED or BADVERS: malformed or
	// unsupported queries.
	Rejected uint64 `json:"rejected"`
	// Dropped got no answer: unparseable, a response packet, a non-loopback
	// source, or over the in-flight limit.
	Dropped uint64 `json:"dropped"`
	// TCPRetries counts upstream answers that came back truncated over UDP
	// and were asked again over TCP.
	TCPRetries uint64 `json:"tcp_retries"`
}

func (a *Stats) add(b Stats) {
	a.Queries += b.Queries
	a.Local += b.Local
	a.NXDomain += b.NXDomain
	a.Forwarded += b.Forwarded
	a.Failed += b.Failed
	a.Rejected += b.Rejected
	a.Dropped += b.Dropped
	a.TCPRetries += b.TCPRetries
}

type counters struct {
	queries, local, nxdomain, forwarded, failed, rejected, dropped atomic.Uint64
}

func (c *counters) count(o outcome) {
	switch o {
	case outLocal:
		c.local.Add(1)
	case outNXDomain:
		c.nxdomain.Add(1)
	case outForwarded:
		c.forwarded.Add(1)
	case outFailed:
		c.failed.Add(1)
	case outRejected:
		c.rejected.Add(1)
	case outDropped:
		c.dropped.Add(1)
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		Queries:   c.queries.Load(),
		Local:     c.local.Load(),
		NXDomain:  c.nxdomain.Load(),
		Forwarded: c.forwarded.Load(),
		Failed:    c.failed.Load(),
		Rejected:  c.rejected.Load(),
		Dropped:   c.dropped.Load(),
	}
}

// Stats returns the counters of every container, detached ones included.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.retired
	for _, l := range s.listeners {
		st.add(l.c.snapshot())
	}
	st.TCPRetries = s.tcpRetries.Load()
	return st
}

// StatsFor returns the counters of one attached namespace since it was
// attached; ok is false when it is not attached.
func (s *Server) StatsFor(netnsName string) (st Stats, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[netnsName]
	if l == nil {
		return Stats{}, false
	}
	return l.c.snapshot(), true
}

// Collector returns a Prometheus collector of Stats:
// vxmesh_dns_queries_total, vxmesh_dns_responses_total{result=...} and
// vxmesh_dns_upstream_tcp_retries_total, plus vxmesh_dns_attached (gauge).
func (s *Server) Collector() prometheus.Collector { return collector{s} }

var (
	descQueries = prometheus.NewDesc("vxmesh_dns_queries_total",
		"DNS queries received by the embedded server.", nil, nil)
	descResponses = prometheus.NewDesc("vxmesh_dns_responses_total",
		"DNS queries by outcome: local, nxdomain, forwarded, failed (SERVFAIL), rejected (FORMERR/NOTIMP/REFUSED), dropped.",
		[]string{"result"}, nil)
	descTCPRetries = prometheus.NewDesc("vxmesh_dns_upstream_tcp_retries_total",
		"Upstream answers truncated over UDP and asked again over TCP.", nil, nil)
	descAttached = prometheus.NewDesc("vxmesh_dns_attached",
		"Container namespaces the embedded server listens in.", nil, nil)
)

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueries
	ch <- descResponses
	ch <- descTCPRetries
	ch <- descAttached
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(st.Queries))
	for _, r := range []struct {
		name string
		v    uint64
	}{
		{"local", st.Local}, {"nxdomain", st.NXDomain}, {"forwarded", st.Forwarded},
		{"failed", st.Failed}, {"rejected", st.Rejected}, {"dropped", st.Dropped},
	} {
		ch <- prometheus.MustNewConstMetric(descResponses, prometheus.CounterValue, float64(r.v), r.name)
	}
	ch <- prometheus.MustNewConstMetric(descTCPRetries, prometheus.CounterValue, float64(st.TCPRetries))
	ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, float64(len(c.s.Attached())))
}
