// Package metrics is the agent's Prometheus registry and the HTTP server
// on metrics.listen.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// MetricsPath is where the Prometheus endpoint (metrics.listen) serves.
const MetricsPath = "/metrics"

// PprofEnv, set to 1 in the agent's environment, adds Go's profiling
// endpoints (net/http/pprof) under PprofPath on metrics.listen. They are
// off by default: a CPU profile costs the agent while it runs, and the
// heap and goroutine dumps show internals an operator did not ask to
// expose. docs/operations.md, "Profiling".
const (
	PprofEnv  = "VXMESH_PPROF"
	PprofPath = "/debug/pprof/"
)

// pprofOn reports whether the environment asks for the profiling
// endpoints.
func pprofOn() bool { return os.Getenv(PprofEnv) == "1" }

// handlePprof mounts net/http/pprof's handlers under PprofPath. They are
// registered on our own mux, not http.DefaultServeMux, so nothing else in
// the process can expose them by accident.
func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PprofPath, pprof.Index) // named profiles: heap, goroutine, allocs...
	mux.HandleFunc("GET "+PprofPath+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+PprofPath+"profile", pprof.Profile)
	mux.HandleFunc("GET "+PprofPath+"symbol", pprof.Symbol)
	mux.HandleFunc("POST "+PprofPath+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+PprofPath+"trace", pprof.Trace)
}

// Registry is the agent's Prometheus registry and the HTTP server on
// metrics.listen. The server is opened in the host namespace when Run
// starts (a bad address fails the start), follows metrics.listen on
// reload, and stops with Run.
//
// Exported series (besides the Go runtime's and the process's):
//
//	vxmesh_reconcile_passes_total                     counter
//	vxmesh_reconcile_errors_total                     counter: passes that failed
//	vxmesh_reconcile_last_duration_seconds            gauge
//	vxmesh_reconcile_last_success_timestamp_seconds   gauge
//	vxmesh_containers                                 gauge: containers in the inputs
//	vxmesh_networks                                   gauge: networks in the config
//	vxmesh_remote_endpoints                           gauge: other hosts' overlay endpoints
//	vxmesh_dns_*                                      the embedded DNS server (docs/dns.md)
//
// and the live families of families.go (convergence lag, pass duration,
// kernel writes, drift repairs, gossip records and refusals, IPAM usage);
// docs/operations.md has the table.
type Registry struct {
	f            families
	reg          *prometheus.Registry
	passes       prometheus.Counter
	errors       prometheus.Counter
	lastDuration prometheus.Gauge
	lastSuccess  prometheus.Gauge
	containers   prometheus.Gauge
	networks     prometheus.Gauge
	remote       prometheus.Gauge

	log       *slog.Logger
	hostNetns string

	mu     sync.Mutex
	listen string // the address served ("" when off)
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
}

// New registers the agent's series and extra (e.g. the DNS
// server's collector; nil ones are skipped).
func New(log *slog.Logger, hostNetns string, extra ...prometheus.Collector) *Registry {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Registry{
		reg:          prometheus.NewRegistry(),
		passes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "vxmesh_reconcile_passes_total", Help: "Reconcile passes run."}),
		errors:       prometheus.NewCounter(prometheus.CounterOpts{Name: "vxmesh_reconcile_errors_total", Help: "Reconcile passes that failed (retried with backoff)."}),
		lastDuration: g("vxmesh_reconcile_last_duration_seconds", "How long the last reconcile pass took."),
		lastSuccess:  g("vxmesh_reconcile_last_success_timestamp_seconds", "When the last successful reconcile pass finished (Unix time)."),
		containers:   g("vxmesh_containers", "Containers in the inputs (config and API)."),
		networks:     g("vxmesh_networks", "Networks in the config."),
		remote:       g("vxmesh_remote_endpoints", "Other hosts' endpoints on this host's overlay networks."),
		log:          log,
		hostNetns:    hostNetns,
		f:            newFamilies(),
	}
	m.reg.MustRegister(m.passes, m.errors, m.lastDuration, m.lastSuccess, m.containers, m.networks, m.remote,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.f.collectors()...)
	for _, c := range extra {
		if c != nil {
			m.reg.MustRegister(c)
		}
	}
	return m
}

// Observe records one finished pass over containers containers, networks
// networks and remote other hosts' endpoints.
func (m *Registry) Observe(containers, networks, remote int, took time.Duration, err error) {
	m.passes.Inc()
	m.lastDuration.Set(took.Seconds())
	m.f.pass.Observe(took.Seconds())
	if err != nil {
		m.errors.Inc()
	} else {
		m.lastSuccess.SetToCurrentTime()
	}
	m.containers.Set(float64(containers))
	m.networks.Set(float64(networks))
	m.remote.Set(float64(remote))
}

// ObserveDesired takes what a pass's value shows: each network's IPAM
// usage.
func (m *Registry) ObserveDesired(d *pass.Desired) { m.setIPAM(Usage(d)) }

// WatchGossip makes the gossip member cluster returns (nil: none yet, or
// no cluster) report its records, refusals and members at each scrape.
func (m *Registry) WatchGossip(cluster func() *gossip.Cluster) {
	m.reg.MustRegister(gossipCollector{cluster})
}

// Serve makes the endpoint listen on addr ("" turns it off). Serving the
// same address again does nothing; a new address replaces the old one.
func (m *Registry) Serve(addr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == m.listen && (addr == "" || m.srv != nil) {
		return nil
	}
	m.stopLocked()
	if addr == "" {
		return nil
	}
	var ln net.Listener
	listen := func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}
	var err error
	if m.hostNetns != "" {
		err = netnsutil.Do(m.hostNetns, listen)
	} else {
		err = listen()
	}
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelError)}))
	pprofOn := pprofOn()
	if pprofOn {
		handlePprof(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "vxmesh agent: metrics are at "+MetricsPath, http.StatusNotFound)
	})
	m.listen, m.ln, m.done = addr, ln, make(chan struct{})
	// No WriteTimeout: /debug/pprof/profile streams for its seconds= window.
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv, done := m.srv, m.done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics server stopped", "err", err)
		}
	}()
	m.log.Info("serving metrics", "addr", ln.Addr().String(), "path", MetricsPath)
	if pprofOn {
		m.log.Warn("serving Go profiles ("+PprofEnv+"=1)", "addr", ln.Addr().String(), "path", PprofPath)
	}
	return nil
}

// Addr is the address the endpoint listens on (nil when off).
func (m *Registry) Addr() net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ln == nil {
		return nil
	}
	return m.ln.Addr()
}

// Stop closes the endpoint.
func (m *Registry) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopLocked()
}

func (m *Registry) stopLocked() {
	if m.srv == nil {
		m.listen = ""
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	m.srv.Shutdown(ctx)
	cancel()
	<-m.done
	m.log.Info("stopped serving metrics", "addr", m.listen)
	m.listen, m.ln, m.srv, m.done = "", nil, nil, nil
}
