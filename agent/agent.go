// Package agent is the vxmesh daemon as a library: one level-triggered
// reconcile loop that turns the inputs (the config file, run-time
// containers from the API, the state file, and later the gossip table)
// into kernel state, plus the HTTP API on a unix socket.
//
// # The loop
//
// Every input change only marks the agent dirty (Trigger): a size-1,
// never-blocking channel, so bursts coalesce into one pass. A pass reads
// every input, builds the whole desired state as a plain value (Desired),
// lets the steps add to it (Step.Prepare), and applies it: the bridge
// reconciler reads the kernel, plans and applies the difference, then the
// other steps apply theirs. Passes are at least MinInterval apart; a failed
// pass is retried with exponential backoff (up to MaxBackoff); every
// ResyncInterval a pass runs anyway. Every pass is a full resync — it
// re-reads the kernel rather than trusting what the last pass did — so
// there is no separate "full resync after failure": all passes are full.
// Nothing is applied before every input has been read once: the config and
// state file are read before the loop starts, and the loop waits until
// every Source has a snapshot (after kube-proxy's
// bounded_frequency_runner and "level driven, not edge driven").
//
// # Hooks
//
// More reconcilers plug in as Steps fed by the same Desired value:
//
//   - ports (ports.go, always first): Prepare assigns host ports and
//     fills Desired.Bridge.Ports with the VXMESH-DNAT/HAIRPIN/PUBLISHED
//     chains (bridge.PortChains), so the bridge step syncs the whole
//     firewall in one transaction; its host port choices go in
//     State.Ports; Apply flushes conntrack once the rules are in force.
//   - overlay (overlay.go, right after ports): Prepare gives the vxb-NAME
//     bridges the shared gateway MAC and the VXLAN MTU, keeps the block
//     claims and fills Desired.Remote from the gossip snapshot; Apply adds
//     the VXLAN device, programs FDB and neighbour entries and publishes
//     this host's records; its cluster IPAM replaces the local pools of
//     overlay networks in buildDesired (overlay_ipam.go).
//   - DNS: a Step whose Apply starts the per-namespace listeners; the
//     resolv.conf nameserver list is an input of bridge.ResolvConf, so
//     switching it to 127.0.0.11 is a change in buildDesired.
//   - gossip (gossip.go): a Source, made from the config's cluster
//     section; its Snapshot (a *GossipView) lands in Desired.Sources before
//     any step runs, and its changes call Agent.Trigger.
//
// # Stopping
//
// Cancelling Run's context stops the loop without touching the kernel: a
// restarted agent reads its state file, adopts the links, namespaces and
// chains it finds (stable names and the vxmesh: alias) and changes nothing,
// so traffic never notices. Gossip leaves the cluster; the other hosts keep
// this host's records, and so its overlay entries, for reap_after, and the
// restarted agent programs nothing before it has heard the cluster again
// (docs/overlay.md, "Gossip readiness and agent restarts"). With
// Options.CleanupOnExit it removes everything it created before returning,
// and withdraws its records first.
package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Defaults of Options.
const (
	DefaultMinInterval    = 200 * time.Millisecond
	DefaultResyncInterval = 30 * time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultConfigPoll     = time.Second
	DefaultAPITimeout     = time.Minute
	DefaultHostResolvConf = "/etc/resolv.conf"
)

// Options configure an Agent beyond its config file.
type Options struct {
	// Logger gets the agent's logs; default slog.Default().
	Logger *slog.Logger
	// HostNetns names the namespace (under /run/netns) the agent manages as
	// its host; "" is the namespace the process runs in. Tests run several
	// agents in one process, each in its own test namespace.
	HostNetns string
	// EtcNetns is the root of the name files; default /etc/netns.
	EtcNetns string
	// HostResolvConf is read for the nameservers of containers without
	// dns; default /etc/resolv.conf.
	HostResolvConf string
	// ConfigPath is the config file to reload on Reload and when it
	// changes; default the config's File. Empty disables reloading.
	ConfigPath string
	// CleanupOnExit removes everything the agent created when Run stops.
	CleanupOnExit bool
	// Kernel and Iptables replace the real kernel (tests).
	Kernel   bridge.Kernel
	Iptables ipt.Iptables
	// Steps run after the bridge step, in order (see the package doc).
	Steps []Step
	// Sources are extra inputs; the loop applies nothing until each has a
	// snapshot.
	Sources []Source
	// MinInterval, ResyncInterval, MaxBackoff and ConfigPoll tune the loop.
	MinInterval, ResyncInterval, MaxBackoff, ConfigPoll time.Duration
	// APITimeout bounds how long run and rm wait for their pass.
	APITimeout time.Duration
	// GossipTuning tunes the gossip member (zero fields: defaults);
	// JoinWait and IPAMSettle tune the overlay (see gossip.go,
	// overlay_ipam.go). NoCluster runs without gossip (a lone host).
	GossipTuning         gossip.Tuning
	JoinWait, IPAMSettle time.Duration
	NoCluster            bool
}

// Step is one reconciler fed by the desired state.
type Step interface {
	// Name names the step in logs.
	Name() string
	// Prepare may add to d before anything is applied.
	Prepare(d *Desired) error
	// Apply makes the kernel match d; it runs after the bridge step.
	Apply(ctx context.Context, d *Desired) error
	// Cleanup removes everything the step created (--cleanup-on-exit).
	Cleanup(ctx context.Context) error
}

// Source is an extra input of the desired state (e.g. the gossip table).
// It calls Agent.Trigger when its value changes.
type Source interface {
	// Name keys the snapshot in Desired.Sources.
	Name() string
	// Snapshot returns the current value; ready is false until the source
	// has been read once.
	Snapshot() (v any, ready bool)
}

// Agent is one host's daemon.
type Agent struct {
	opts Options
	log  *slog.Logger
	br   *bridge.Reconciler

	closers []func()
	dirty   chan struct{}

	mu          sync.Mutex
	cfg         *config.Config
	state       *State
	gen         uint64 // bumped on every input change
	applied     uint64 // gen of the last finished pass
	appliedCh   chan struct{}
	last        *Desired
	results     map[string]error
	lastPass    time.Time
	lastErr     error
	runtimeBusy map[string]bool // names being added or removed through the API

	dns     *dnsStep // the embedded DNS server's step, the last of opts.Steps (dnsstep.go)
	metrics *metrics // Prometheus registry and endpoint (metrics.go)

	ports *portStep // the first of opts.Steps

	gossip *gossipSource // nil without a cluster (gossip.go)
	ovl    *overlayStep  // the second of opts.Steps (overlay.go)
}

// New returns an agent for cfg (a config that passed validation). It opens
// the kernel handles; Run does the rest.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("new agent: no config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.EtcNetns == "" {
		opts.EtcNetns = bridge.DefaultEtcNetns
	}
	if opts.HostResolvConf == "" {
		opts.HostResolvConf = DefaultHostResolvConf
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = cfg.File
	}
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{&opts.MinInterval, DefaultMinInterval}, {&opts.ResyncInterval, DefaultResyncInterval}, {&opts.MaxBackoff, DefaultMaxBackoff}, {&opts.ConfigPoll, DefaultConfigPoll}, {&opts.APITimeout, DefaultAPITimeout}} {
		if *d.p <= 0 {
			*d.p = d.v
		}
	}
	a := &Agent{opts: opts, log: opts.Logger, cfg: cfg, dirty: make(chan struct{}, 1), appliedCh: make(chan struct{}), runtimeBusy: map[string]bool{}}
	k := opts.Kernel
	if k == nil {
		nk, err := bridge.NewKernel(opts.HostNetns)
		if err != nil {
			return nil, fmt.Errorf("new agent: %w", err)
		}
		a.closers = append(a.closers, nk.Close)
		k = nk
	}
	it := opts.Iptables
	if it == nil {
		h := netns.None()
		if opts.HostNetns != "" {
			var err error
			if h, err = netnsutil.Open(opts.HostNetns); err != nil {
				a.Close()
				return nil, fmt.Errorf("new agent: %w", err)
			}
			a.closers = append(a.closers, func() { h.Close() })
		}
		r, err := ipt.New(h, false)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("new agent: %w", err)
		}
		it = r
	}
	ps, err := newPortStep(a)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("new agent: %w", err)
	}
	a.ports = ps
	if err := a.initOverlay(k); err != nil {
		a.Close()
		return nil, fmt.Errorf("new agent: %w", err)
	}
	a.opts.Steps = append([]Step{ps, a.ovl}, opts.Steps...)
	a.br = &bridge.Reconciler{Kernel: k, IPT: it, Planner: bridge.Planner{EtcNetns: opts.EtcNetns}, Log: a.log, OnRecord: a.saveRecord}
	if err := a.initDNS(); err != nil {
		a.Close()
		return nil, fmt.Errorf("new agent: %w", err)
	}
	return a, nil
}

// Close releases the kernel handles; Run does not call it.
func (a *Agent) Close() {
	for _, c := range a.closers {
		c()
	}
	a.closers = nil
}

// Trigger marks the agent dirty: a pass follows soon. It never blocks.
func (a *Agent) Trigger() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
}

// bump records an input change (under a.mu) and triggers a pass.
func (a *Agent) bump() uint64 {
	a.gen++
	a.Trigger()
	return a.gen
}

// Config returns the config in force.
func (a *Agent) Config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Run serves the API and runs the loop until ctx is done. It returns an
// error when it cannot start (state file, socket) or, with CleanupOnExit,
// when the cleanup fails.
func (a *Agent) Run(ctx context.Context) error {
	st, err := loadState(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.state = st
	a.mu.Unlock()

	if err := a.metrics.serve(a.cfg.Metrics.Listen); err != nil {
		return err
	}
	ln, err := listen(a.cfg.API.Socket)
	if err != nil {
		a.metrics.stop()
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "err", err)
		}
	}()
	a.log.Info("agent started", "host", a.cfg.Host.Name, "config", a.opts.ConfigPath, "socket", a.cfg.API.Socket, "state_dir", a.cfg.StateDir)

	stopOverlay, err := a.runOverlay(ctx)
	if err != nil {
		a.metrics.stop()
		srv.Close()
		<-serveDone
		os.Remove(a.cfg.API.Socket)
		return err
	}
	var wg sync.WaitGroup
	if a.opts.ConfigPath != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchConfig(ctx) }()
	}
	a.loop(ctx)
	wg.Wait()

	var cerr error
	if a.opts.CleanupOnExit {
		cerr = a.cleanup(context.WithoutCancel(ctx))
	}
	stopOverlay()     // gossip leaves after the cleanup withdrew our records
	a.dns.srv.Close() // DNS listeners die with the agent; the next one reopens them in its first pass
	a.metrics.stop()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	srv.Shutdown(sctx)
	cancel()
	<-serveDone
	os.Remove(a.cfg.API.Socket)
	a.log.Info("agent stopped", "cleanup", a.opts.CleanupOnExit)
	return cerr
}

// listen opens the API socket with mode 0600. A socket nobody answers on
// is stale and replaced; one an agent answers on is refused. The socket is
// made under a temporary name, restricted, then renamed into place, so it
// is never reachable with looser permissions.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("make socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is serving %s", path)
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// loop is the level-triggered reconcile loop.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTimer(a.opts.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var backoff time.Duration
	var last time.Time
	a.Trigger()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.dirty:
		case <-resync.C:
		case <-retry.C:
		}
		if wait := a.opts.MinInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// Whatever marked us dirty until now is covered by this pass.
		select {
		case <-a.dirty:
		default:
		}
		err := a.pass(ctx)
		last = time.Now()
		if ctx.Err() != nil {
			return
		}
		retry.Stop()
		if err != nil {
			backoff = min(max(2*backoff, a.opts.MinInterval*2), a.opts.MaxBackoff)
			a.log.Warn("reconcile failed; retrying", "in", backoff, "err", err)
			retry.Reset(backoff)
		} else {
			backoff = 0
		}
		resync.Reset(a.opts.ResyncInterval)
	}
}

// runtimeConfigs parses the run-time containers (under a.mu).
func (a *Agent) runtimeConfigs() []config.Container {
	var out []config.Container
	for _, s := range a.state.Containers {
		c, err := s.ToConfig()
		if err != nil {
			a.log.Error("run-time container in state file is broken; ignored", "container", s.Name, "err", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

// hostNameservers reads the host's nameservers (minus loopback ones).
func (a *Agent) hostNameservers() []netip.Addr {
	b, err := os.ReadFile(a.opts.HostResolvConf)
	if err != nil {
		return nil
	}
	return bridge.HostNameservers(b)
}

// desired builds the desired state from the current inputs.
func (a *Agent) desired() (*Desired, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return buildDesiredPools(a.cfg, a.runtimeConfigs(), a.state, a.hostNameservers(), a.poolOf), a.gen
}

// pass is one reconcile pass over every input.
func (a *Agent) pass(ctx context.Context) error {
	start := time.Now()
	d, gen := a.desired()
	for _, s := range a.opts.Sources {
		v, ready := s.Snapshot()
		if !ready {
			a.log.Info("waiting for input before applying anything", "source", s.Name())
			return nil
		}
		d.Sources[s.Name()] = v
	}
	for _, c := range d.Conflicts {
		a.log.Warn("conflict", "problem", c)
	}
	var errs []error
	for _, s := range a.opts.Steps {
		if err := s.Prepare(d); err != nil {
			errs = append(errs, fmt.Errorf("prepare %s: %w", s.Name(), err))
		}
	}
	a.mu.Lock()
	if a.gen == gen && !allocEqual(a.state.Allocations, d.Allocations) {
		a.state.Allocations = d.Allocations
		if err := a.state.save(a.cfg.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	rec := a.state.Bridge
	a.mu.Unlock()

	res, err := a.br.Reconcile(ctx, &d.Bridge, rec)
	results := map[string]error{}
	if res != nil {
		a.saveRecord(res.Record)
		for k, v := range res.Containers {
			results[k] = v
		}
	} else if err != nil {
		for _, c := range d.Bridge.Containers {
			results[c.Name] = err
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range a.opts.Steps {
		if err := s.Apply(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	if err := a.metrics.serve(d.Config.Metrics.Listen); err != nil {
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	a.metrics.observe(d, time.Since(start), err)

	a.mu.Lock()
	a.last, a.results, a.lastPass, a.lastErr = d, results, time.Now(), err
	if gen > a.applied {
		a.applied = gen
	}
	close(a.appliedCh)
	a.appliedCh = make(chan struct{})
	a.mu.Unlock()
	if res != nil && res.Changes > 0 {
		a.log.Info("reconciled", "changes", res.Changes, "containers", len(d.Bridge.Containers), "networks", len(d.Bridge.Networks))
	}
	return err
}

func allocEqual(a, b map[string]map[string]netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, m := range a {
		n, ok := b[k]
		if !ok || len(m) != len(n) {
			return false
		}
		for c, ip := range m {
			if n[c] != ip {
				return false
			}
		}
	}
	return true
}

// saveRecord persists the bridge record (the reconciler calls it mid-apply
// when it creates a namespace).
func (a *Agent) saveRecord(rec bridge.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if reflect.DeepEqual(normRecord(a.state.Bridge), normRecord(rec)) {
		return // unchanged: no disk write on an idle pass
	}
	a.state.Bridge = rec
	if err := a.state.save(a.cfg.StateDir); err != nil {
		a.log.Error("save state", "err", err)
	}
}

// normRecord makes empty and nil collections compare equal.
func normRecord(r bridge.Record) bridge.Record {
	if len(r.CreatedNetns) == 0 {
		r.CreatedNetns = nil
	}
	if len(r.Namespaces) == 0 {
		r.Namespaces = nil
	}
	if len(r.MACs) == 0 {
		r.MACs = nil
	}
	if len(r.Sysctls) == 0 {
		r.Sysctls = nil
	}
	return r
}

// waitApplied waits until a pass that saw input generation gen finished.
func (a *Agent) waitApplied(ctx context.Context, gen uint64) error {
	for {
		a.mu.Lock()
		done, ch := a.applied >= gen, a.appliedCh
		a.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Sync triggers a pass and waits until one that saw every input so far has
// finished; it returns that pass's error.
func (a *Agent) Sync(ctx context.Context) error {
	a.mu.Lock()
	gen := a.bump()
	a.mu.Unlock()
	if err := a.waitApplied(ctx, gen); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

// Reload reads the config file again. A config that fails validation is
// refused whole: each error is logged with its file, line and field, and
// the running state stays. Fields that cannot change while running
// (state_dir, api.socket) keep their old values, with a warning.
func (a *Agent) Reload() error {
	path := a.opts.ConfigPath
	if path == "" {
		return errors.New("reload: the agent has no config file")
	}
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range config.AsErrorList(err) {
			a.log.Error("config rejected; keeping the running state", "error", e.Error())
		}
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg.StateDir != a.cfg.StateDir {
		a.log.Warn("state_dir cannot change while running; restart the agent", "old", a.cfg.StateDir, "new", cfg.StateDir)
		cfg.StateDir = a.cfg.StateDir
	}
	if cfg.API.Socket != a.cfg.API.Socket {
		a.log.Warn("api.socket cannot change while running; restart the agent", "old", a.cfg.API.Socket, "new", cfg.API.Socket)
		cfg.API.Socket = a.cfg.API.Socket
	}
	if a.gossip != nil {
		a.gossip.reload(a.cfg, cfg)
	}
	a.cfg = cfg
	a.bump()
	a.log.Info("config reloaded", "file", path, "networks", len(cfg.Networks), "containers", len(cfg.Containers))
	return nil
}

// fingerprint identifies a config file's version: mtime, size and content
// hash (the hash catches a rewrite within the mtime granularity).
func fingerprint(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	f, err := os.Open(path)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, io.LimitReader(f, config.MaxFileSize+1))
	return fmt.Sprintf("%d/%d/%x", st.ModTime().UnixNano(), st.Size(), h.Sum(nil))
}

// watchConfig reloads the config when the file changes (polled: no
// fsnotify dependency, and it survives editors that replace the file).
func (a *Agent) watchConfig(ctx context.Context) {
	last := fingerprint(a.opts.ConfigPath)
	t := time.NewTicker(a.opts.ConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := fingerprint(a.opts.ConfigPath)
		if fp == last {
			continue
		}
		last = fp
		a.log.Info("config file changed", "file", a.opts.ConfigPath)
		a.Reload()
	}
}

// cleanup removes everything the agent created: the steps' state, then the
// bridge side (links, namespaces it created, files, chains, ip_forward).
func (a *Agent) cleanup(ctx context.Context) error {
	var errs []error
	for _, s := range slices.Backward(a.opts.Steps) {
		if err := s.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", s.Name(), err))
		}
	}
	a.mu.Lock()
	rec := a.state.Bridge
	a.mu.Unlock()
	res, err := a.br.Cleanup(ctx, rec)
	if res != nil {
		a.saveRecord(res.Record)
	}
	if err != nil {
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if err != nil {
		a.log.Error("cleanup incomplete", "err", err)
	} else {
		a.log.Info("cleaned up everything vxmesh created")
	}
	return err
}

// hostNetnsPath is the file to setns(2) into for the host namespace.
func (a *Agent) hostNetnsPath() string {
	if a.opts.HostNetns != "" {
		return netnsutil.Path(a.opts.HostNetns)
	}
	return fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
}

// etcDir is the name-file directory of a namespace.
func (a *Agent) etcDir(ns string) string { return filepath.Join(a.opts.EtcNetns, ns) }

func joinLines(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// stateCopy returns a copy of the state file's content.
func (a *Agent) stateCopy() *State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.clone()
}
