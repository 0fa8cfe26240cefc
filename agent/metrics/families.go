package metrics

import (
	"math"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/gossip"
)

// The live families: how long a change takes to reach this host's kernel,
// what each pass costs and writes, what gossip holds and refuses, how full
// each network's subnet is. docs/operations.md lists each with its labels.

// Kernel write kinds (label kind of vxmesh_kernel_writes_total and
// vxmesh_drift_repairs_total).
const (
	KindFDB      = "fdb"
	KindNeigh    = "neigh"
	KindLink     = "link"
	KindAddr     = "addr"
	KindRoute    = "route"
	KindSysctl   = "sysctl"
	KindFile     = "file"
	KindNetns    = "netns"
	KindFirewall = "firewall"
	KindDevice   = "device" // the VXLAN device (drift repairs)
	KindOther    = "other"
)

// bridgeKinds maps the bridge reconciler's ops to write kinds.
var bridgeKinds = map[bridge.OpKind]string{
	bridge.OpCreateNetns: KindNetns, bridge.OpDeleteNetns: KindNetns,
	bridge.OpAddBridge: KindLink, bridge.OpAddVeth: KindLink, bridge.OpAddMacvlan: KindLink, bridge.OpAddIPvlan: KindLink,
	bridge.OpDeleteLink: KindLink, bridge.OpSetAlias: KindLink, bridge.OpSetUp: KindLink, bridge.OpSetMTU: KindLink,
	bridge.OpSetMaster: KindLink, bridge.OpSetMAC: KindLink, bridge.OpSetHairpin: KindLink,
	bridge.OpAddAddr: KindAddr, bridge.OpDelAddr: KindAddr, bridge.OpAnnounce: KindAddr,
	bridge.OpReplaceRoute: KindRoute,
	bridge.OpSetSysctl:    KindSysctl,
	bridge.OpWriteFile:    KindFile, bridge.OpRemoveFile: KindFile, bridge.OpRemoveDir: KindFile,
	bridge.OpSyncFirewall: KindFirewall, bridge.OpRemoveFirewall: KindFirewall,
}

// BridgeKind is the write kind of a bridge op (KindOther when unknown).
func BridgeKind(k bridge.OpKind) string {
	if s, ok := bridgeKinds[k]; ok {
		return s
	}
	return KindOther
}

// lagBuckets span a fast path on one host (milliseconds) to a cluster
// that waits for push/pull (tens of seconds).
var lagBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// passBuckets span a no-op pass (milliseconds) to a pass at ten thousand
// endpoints (seconds).
var passBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// families are the histograms and vectors Registry adds to the base
// series.
type families struct {
	lag     *prometheus.HistogramVec
	pass    prometheus.Histogram
	writes  *prometheus.CounterVec
	repairs *prometheus.CounterVec
	ipUsed  *prometheus.GaugeVec
	ipSize  *prometheus.GaugeVec
}

func newFamilies() families {
	return families{
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vxmesh_convergence_lag_seconds",
			Help:    "From a record's write at its owner (owner's clock) to its programming on this host.",
			Buckets: lagBuckets}, []string{"kind"}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vxmesh_reconcile_duration_seconds",
			Help: "How long reconcile passes take.", Buckets: passBuckets}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vxmesh_kernel_writes_total",
			Help: "Kernel (and name file) changes made, by kind."}, []string{"kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vxmesh_drift_repairs_total",
			Help: "Outside changes to vxmesh's kernel state found and undone, by kind."}, []string{"kind"}),
		ipUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vxmesh_ipam_used_addresses",
			Help: "Addresses in use in a network's subnet as this host sees it (gateway, its containers, other hosts' endpoints)."}, []string{"network"}),
		ipSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vxmesh_ipam_size_addresses",
			Help: "Usable addresses in a network's subnet."}, []string{"network"}),
	}
}

func (f families) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.lag, f.pass, f.writes, f.repairs, f.ipUsed, f.ipSize}
}

// KernelWrites counts n kernel writes of kind.
func (m *Registry) KernelWrites(kind string, n int) {
	if n > 0 {
		m.f.writes.WithLabelValues(kind).Add(float64(n))
	}
}

// DriftRepaired counts a repair of an outside change of kind.
func (m *Registry) DriftRepaired(kind string) { m.f.repairs.WithLabelValues(kind).Inc() }

// Converged records that a record of kind (a gossip.Kind name) written
// lag ago at its owner is now programmed here. A negative lag (the
// owner's clock ahead of ours) counts as zero.
func (m *Registry) Converged(kind string, lag time.Duration) {
	m.f.lag.WithLabelValues(kind).Observe(max(lag, 0).Seconds())
}

// IPAMUsage is one network's address use as this host sees it.
type IPAMUsage struct {
	Network    string
	Used, Size float64
}

// Usage computes each network's IPAM usage from a pass's value: the
// gateway, this host's interfaces and, on overlay networks, the other
// hosts' endpoints, counted once each inside the subnet.
func Usage(d *pass.Desired) []IPAMUsage {
	if d == nil || d.Snapshot == nil || d.Config == nil {
		return nil
	}
	used := map[string]map[netip.Addr]bool{}
	add := func(network string, a netip.Addr) {
		if used[network] == nil {
			used[network] = map[netip.Addr]bool{}
		}
		used[network][a] = true
	}
	for _, c := range d.Containers {
		for _, i := range c.Interfaces {
			if i.Addr.IsValid() {
				add(i.Network, i.Addr.Addr())
			}
		}
	}
	for _, r := range d.Remote {
		add(r.Network, r.IP)
	}
	var out []IPAMUsage
	for _, n := range d.Config.Networks {
		if !n.Subnet.IsValid() {
			continue
		}
		u := IPAMUsage{Network: n.Name, Size: subnetSize(n.Subnet)}
		if n.Gateway.IsValid() {
			add(n.Name, n.Gateway)
		}
		for a := range used[n.Name] {
			if n.Subnet.Contains(a) {
				u.Used++
			}
		}
		out = append(out, u)
	}
	return out
}

// subnetSize counts a subnet's usable addresses: IPv4 without its network
// and broadcast addresses (a /31 or /32 keeps all), IPv6 all of them.
func subnetSize(p netip.Prefix) float64 {
	host := p.Addr().BitLen() - p.Bits()
	n := math.Pow(2, float64(host))
	if p.Addr().Is4() && host >= 2 {
		n -= 2
	}
	return n
}

// setIPAM replaces the per-network gauges (a removed network's go).
func (m *Registry) setIPAM(us []IPAMUsage) {
	m.f.ipUsed.Reset()
	m.f.ipSize.Reset()
	for _, u := range us {
		m.f.ipUsed.WithLabelValues(u.Network).Set(u.Used)
		m.f.ipSize.WithLabelValues(u.Network).Set(u.Size)
	}
}

// gossipCollector reads the gossip member at scrape time: its table by
// kind and state, and its refusals by reason.
type gossipCollector struct{ cluster func() *gossip.Cluster }

var (
	descRecords = prometheus.NewDesc("vxmesh_gossip_records",
		"Records in this host's gossip table by kind and state (live, tombstone, reap-pending: live records of a dead or departed member, removed at its reap time).",
		[]string{"kind", "state"}, nil)
	descRejected = prometheus.NewDesc("vxmesh_gossip_rejected_total",
		"Gossip refused, by reason: vtep (a record pointing at another address than its owner's), unknown-owner, malformed, invalid-record, name-conflict (a join under a taken name).",
		[]string{"reason"}, nil)
	descMembers = prometheus.NewDesc("vxmesh_gossip_members",
		"Cluster members by state, this host included.", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (g gossipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descRejected
	ch <- descMembers
}

// Collect implements prometheus.Collector. Without a cluster it sends
// nothing.
func (g gossipCollector) Collect(ch chan<- prometheus.Metric) {
	c := g.cluster()
	if c == nil {
		return
	}
	for _, rc := range c.RecordCounts() {
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(rc.Records), rc.Kind.String(), rc.State)
	}
	st := c.Stats()
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"vtep", st.RejectedVTEP}, {"unknown-owner", st.RejectedUnknownOwner}, {"malformed", st.RejectedMalformed},
		{"invalid-record", st.InvalidRecords}, {"name-conflict", st.NameConflicts},
	} {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(r.n), r.reason)
	}
	states := map[string]int{}
	for _, s := range []gossip.MemberState{gossip.MemberAlive, gossip.MemberSuspect, gossip.MemberDead, gossip.MemberLeft} {
		states[s.String()] = 0
	}
	for _, mb := range c.Members() {
		states[mb.State.String()]++
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s)
	}
}
