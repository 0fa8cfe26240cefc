package agent

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/agent/dnsstep"
	"github.com/vxmesh/vxmesh/agent/metrics"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/agent/portstep"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/ipt"
)

// initSteps makes the built-in steps (ports, overlay with gossip, DNS),
// the bridge reconciler and the metrics registry, and orders every step
// by its declared Order.
func (a *Agent) initSteps(k bridge.Kernel, it, it6 ipt.Iptables) error {
	env := pass.Env{Store: a.store, Trigger: a.Trigger, Log: a.log}
	ps, closePorts, err := portstep.New(env, a.opts.HostNetns, it)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, closePorts)
	a.ports = ps

	_, real := k.(*bridge.NetlinkKernel)
	ovl, err := overlaystep.New(env, overlaystep.Options{
		Config: a.cfg, HostNetns: a.opts.HostNetns, Kernel: real, Cluster: real && !a.opts.NoCluster,
		Tuning: a.opts.GossipTuning, JoinWait: a.opts.JoinWait, Settle: a.opts.IPAMSettle,
	})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, ovl.Close)
	a.ovl = ovl

	a.br = &bridge.Reconciler{Kernel: k, IPT: it, IPT6: it6, Planner: bridge.Planner{EtcNetns: a.opts.EtcNetns}, Log: a.log, OnRecord: recordKeeper(a.store, a.log),
		OnChange: func(op bridge.Op) { a.metrics.KernelWrites(metrics.BridgeKind(op.Kind), 1) }}

	// The embedded DNS server forwards from the host namespace; Run closes
	// it when it stops: the listeners die with the agent, and a restarted
	// agent opens them again in its first pass.
	srv, err := dns.New(dns.Options{Logger: a.log, ResolvConf: a.opts.HostResolvConf, ForwardNetns: a.opts.HostNetns})
	if err != nil {
		return fmt.Errorf("start dns server: %w", err)
	}
	a.closers = append(a.closers, func() { srv.Close() })
	a.dns = dnsstep.New(srv, a.log)
	// Names follow a gossip change at once, between passes (the fast path).
	ovl.OnRemote = a.dns.Refresh
	a.metrics = metrics.New(a.log, a.opts.HostNetns, a.dns.Collector())
	a.metrics.WatchGossip(ovl.Cluster)
	ovl.Metrics = a.metrics

	a.steps = append([]pass.Step{ps, ovl, a.dns}, a.opts.Steps...)
	slices.SortStableFunc(a.steps, func(x, y pass.Step) int { return cmp.Compare(x.Order(), y.Order()) })
	return nil
}
