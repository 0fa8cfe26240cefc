// Package agent is the vxmesh daemon as a library: one level-triggered
// reconcile loop that turns the inputs (the config file, run-time
// containers from the API, the state file, the gossip table) into kernel
// state, the state store, and the HTTP API on a unix socket. The steps it
// drives live in packages of their own (agent/portstep, agent/overlaystep,
// agent/dnsstep) and see it only through agent/pass.
//
// # The loop
//
// Every input change only marks the agent dirty (Trigger): a size-1,
// never-blocking channel, so bursts coalesce into one pass. A pass takes
// one snapshot of every input (pass.Snapshot: config, run-time containers,
// a copy of the state, one gossip view, the host's nameservers), builds
// the whole desired state from it as a plain value (pass.Build), lets the
// steps add to it (Step.Prepare), and applies it: the bridge reconciler
// reads the kernel, plans and applies the difference, then the steps apply
// theirs; the state store is written once at the end (pass.Store.Flush).
// Passes nobody waits for are at least MinInterval apart (one an API
// caller waits for runs at once); a failed pass is retried with
// exponential backoff (up to MaxBackoff); every ResyncInterval a pass runs
// anyway. That pass, and one after a failure or drift, is a full resync:
// it re-reads the kernel rather than trusting what the last pass did.
// Other passes trust what was written plus what the watchers report (the
// bridge reconcile is skipped when its input is unchanged, bridgeSkip;
// the overlay syncs against its mirror). Nothing is applied before every
// input has been read once: the config and state file are read before the
// loop starts, and the loop waits until every Source is ready (after
// kube-proxy's bounded_frequency_runner and "level driven, not edge
// driven"). The read API serves the last pass's value (a.last) and never
// builds or changes desired state.
//
// # Steps
//
// Steps declare their place (pass.Step.Order); Prepare and Apply run in
// ascending order, Cleanup in descending order:
//
//   - ports (agent/portstep, pass.OrderPorts): Prepare assigns host ports
//     and fills Desired.Bridge.Ports with the VXMESH-DNAT/HAIRPIN/PUBLISHED
//     chains (bridge.PortChains), so the bridge step syncs the whole
//     firewall in one transaction; its host port choices go in
//     State.Ports; Apply flushes conntrack once the rules are in force.
//   - overlay (agent/overlaystep, pass.OrderOverlay): Prepare gives the
//     vxb-NAME bridges the shared gateway MAC and the VXLAN MTU, keeps the
//     block claims and fills Desired.Remote from the snapshot's gossip
//     view; Apply adds the VXLAN device, programs FDB and neighbour entries
//     and publishes this host's records; its cluster IPAM gives the pools
//     of overlay networks (pass.PoolSource). It runs this host's gossip
//     member, whose changes trigger a pass and, between passes, the fast
//     path (the one documented exception to one view per pass).
//   - DNS (agent/dnsstep, pass.OrderDNS): Apply starts the per-namespace
//     listeners; the resolv.conf nameserver list is an input of
//     bridge.ResolvConf, so switching it to 127.0.0.11 is a change in
//     pass.Build.
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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/dnsstep"
	"github.com/vxmesh/vxmesh/agent/metrics"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/agent/portstep"
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
	// Iptables6 is the ip6tables side when Iptables is given (nil: IPv6
	// gets no chains); with the real iptables the agent opens ip6tables.
	Iptables6 ipt.Iptables
	// Steps are extra steps, placed among the built-in ones by their
	// Order (see the package doc).
	Steps []pass.Step
	// Sources are extra inputs; the loop applies nothing until each is
	// ready.
	Sources []Source
	// MinInterval, ResyncInterval, MaxBackoff and ConfigPoll tune the loop.
	MinInterval, ResyncInterval, MaxBackoff, ConfigPoll time.Duration
	// APITimeout bounds how long run and rm wait for their pass.
	APITimeout time.Duration
	// GossipTuning tunes the gossip member (zero fields: defaults);
	// JoinWait and IPAMSettle tune the overlay (see agent/overlaystep).
	// NoCluster runs without gossip (a lone host).
	GossipTuning         gossip.Tuning
	JoinWait, IPAMSettle time.Duration
	NoCluster            bool
}

// Source is an extra input the loop waits for: nothing is applied until
// every Source is ready. It calls Agent.Trigger when that changes.
type Source interface {
	// Name names the source in logs.
	Name() string
	// Ready reports whether the source has been read once.
	Ready() bool
}

// Agent is one host's daemon.
type Agent struct {
	opts Options
	log  *slog.Logger
	br   *bridge.Reconciler

	closers []func()
	dirty   chan struct{}
	urgent  chan struct{} // bump: somebody waits for the next pass (see paced)

	store *pass.Store // state.json; written once per pass (Flush)
	steps []pass.Step // every step, by Order

	mu          sync.Mutex
	cfg         *config.Config
	gen         uint64 // bumped on every input change
	applied     uint64 // gen of the last finished pass
	appliedCh   chan struct{}
	last        *pass.Desired // the last pass's value; read APIs serve it
	lastApplied bool          // whether the last pass applied it (not waiting for inputs)
	results     map[string]error
	bsk         bridgeSkip // the loop's: when a pass may skip the bridge reconcile
	lastPass    time.Time
	lastErr     error
	runtimeBusy map[string]bool // names being added or removed through the API

	dns     *dnsstep.Step     // the embedded DNS server's step
	metrics *metrics.Registry // Prometheus registry and endpoint
	ports   *portstep.Step
	ovl     *overlaystep.Step // the overlay step, with this host's gossip member
	fault   func(string)      // crash hook of FaultEnv; nil in production
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
	a := &Agent{opts: opts, log: opts.Logger, cfg: cfg, dirty: make(chan struct{}, 1), urgent: make(chan struct{}, 1), appliedCh: make(chan struct{}), runtimeBusy: map[string]bool{}}
	k := opts.Kernel
	if k == nil {
		nk, err := bridge.NewKernel(opts.HostNetns)
		if err != nil {
			return nil, fmt.Errorf("new agent: %w", err)
		}
		a.closers = append(a.closers, nk.Close)
		// One namespace kept ready: creating a container's namespace is
		// the slowest step of an attach (bridge/netnspool.go).
		nk.KeepSpareNetns(1)
		k = nk
	}
	it := opts.Iptables
	it6 := opts.Iptables6
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
		// Without ip6tables, IPv6 networks get no masquerade, isolation
		// or published ports; everything else works.
		if r6, err := ipt.New(h, true); err != nil {
			a.log.Warn("ip6tables unavailable: IPv6 networks get no NAT, isolation or published ports", "err", err)
		} else {
			it6 = r6
		}
	}
	a.store = pass.NewStore(cfg.StateDir)
	if err := a.initSteps(k, it, it6); err != nil {
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
	select {
	case a.urgent <- struct{}{}:
	default:
	}
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
	if err := a.store.Load(); err != nil {
		return err
	}
	if err := a.metrics.Serve(a.cfg.Metrics.Listen); err != nil {
		return err
	}
	ln, err := listen(a.cfg.API.Socket)
	if err != nil {
		a.metrics.Stop()
		return err
	}
	// IdleTimeout: a client that keeps a connection alive and goes away
	// would otherwise hold a goroutine and an fd of ours for ever.
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "err", err)
		}
	}()
	stopAPI := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
		<-serveDone
		os.Remove(a.cfg.API.Socket)
	}
	a.log.Info("agent started", "host", a.cfg.Host.Name, "config", a.opts.ConfigPath, "socket", a.cfg.API.Socket, "state_dir", a.cfg.StateDir)

	stopOverlay, err := a.ovl.Start(ctx)
	if err != nil {
		a.metrics.Stop()
		stopAPI()
		return err
	}
	stopDocker, err := a.serveDocker(ctx)
	if err != nil {
		stopOverlay()
		a.metrics.Stop()
		stopAPI()
		return err
	}
	var wg sync.WaitGroup
	if a.opts.ConfigPath != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchConfig(ctx) }()
	}
	a.loop(ctx)
	wg.Wait()
	stopDocker() // no Docker call may start an attach the loop will not do

	var cerr error
	if a.opts.CleanupOnExit {
		cerr = a.cleanup(context.WithoutCancel(ctx))
	}
	stopOverlay() // gossip leaves after the cleanup withdrew our records
	a.dns.Close() // DNS listeners die with the agent; the next one reopens them in its first pass
	a.metrics.Stop()
	stopAPI()
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
