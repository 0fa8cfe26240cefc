package overlaystep

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
)

// Options configure the overlay step.
type Options struct {
	// Config is the config at start (host name and address, cluster).
	Config *config.Config
	// HostNetns names the host namespace ("" the current one).
	HostNetns string
	// Kernel opens a netlink handle on the host namespace; false runs
	// without one (tests on a stub kernel).
	Kernel bool
	// Cluster runs this host's gossip member when the config has a host
	// name and address.
	Cluster bool
	// Tuning tunes the gossip member; JoinWait and Settle the readiness
	// and the IPAM (DefaultJoinWait, DefaultIPAMSettle when zero).
	Tuning           gossip.Tuning
	JoinWait, Settle time.Duration
}

// New makes the overlay step: its netlink handle in the host namespace
// (Options.Kernel) and the gossip member (Options.Cluster). Close releases
// them; Start runs them.
func New(env pass.Env, o Options) (*Step, error) {
	var closers []func()
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	var g *gossipSource
	if o.Cluster && o.Config.Host.Address.IsValid() && o.Config.Host.Name != "" {
		var err error
		if g, err = newGossipSource(o.Config, o.HostNetns, o.Tuning, o.JoinWait, env.Log, env.Trigger); err != nil {
			return nil, err
		}
		closers = append(closers, g.shutdown)
	}
	var h *overlay.Handle
	ns := netns.None()
	if o.Kernel {
		if o.HostNetns != "" {
			var err error
			if ns, err = netnsutil.Open(o.HostNetns); err != nil {
				closeAll()
				return nil, err
			}
			closers = append(closers, func() { ns.Close() })
		}
		var err error
		if h, err = overlay.NewHandle(ns); err != nil {
			closeAll()
			return nil, err
		}
		h.Log = env.Log.With("component", "overlay")
		closers = append(closers, h.Close)
	}
	s := newStep(env, h, ns, g, o.Settle)
	s.closers = closers
	if g != nil {
		g.onChange = s.fastSync
	}
	return s, nil
}

// Close releases the handles and stops the gossip member if it runs.
func (s *Step) Close() {
	for _, c := range slices.Backward(s.closers) {
		c()
	}
	s.closers = nil
}

// Start starts gossip and the overlay watcher; the returned function
// stops them (gossip leaves the cluster then) and waits.
func (s *Step) Start(ctx context.Context) (stop func(), err error) {
	if s.gossip != nil {
		if err := s.gossip.start(); err != nil {
			return nil, err
		}
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if s.gossip != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.gossip.run(gctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.run(gctx) }()
	return func() { cancel(); wg.Wait() }, nil
}

// Gossip reads the gossip view for a pass's snapshot (nil without a
// cluster).
func (s *Step) Gossip() *pass.GossipView {
	if s.gossip == nil {
		return nil
	}
	return s.gossip.view()
}

// Reload applies what of a new config gossip can take at run time.
func (s *Step) Reload(old, cfg *config.Config) {
	if s.gossip != nil {
		s.gossip.reload(old, cfg)
	}
}

// Handle is the netlink handle in the host namespace (nil without a
// kernel), and Netns that namespace: for the inspect readers.
func (s *Step) Handle() *overlay.Handle { return s.h }

// Netns is the host namespace the handle is in (see Handle).
func (s *Step) Netns() netns.NsHandle { return s.ns }

// ShutdownGossip stops the gossip member at once, without leaving (tests:
// an agent that dies).
func (s *Step) ShutdownGossip() {
	if s.gossip != nil {
		s.gossip.shutdown()
	}
}
