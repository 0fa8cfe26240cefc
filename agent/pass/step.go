package pass

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/vxmesh/vxmesh/config"
)

// Snapshot is every input of one pass, read once at its top. Nothing in a
// pass reads an input anywhere else; the gossip fast path between passes
// (agent/overlaystep) is the one documented exception.
type Snapshot struct {
	// Config is the config in force.
	Config *config.Config
	// Runtime are the run-time containers (API run), parsed.
	Runtime []config.Container
	// State is a copy of the state file's content at the top of the pass.
	State *State
	// Gossip is the one gossip view of the pass (nil without a cluster).
	Gossip *GossipView
	// HostDNS are the host's nameservers (minus loopback ones).
	HostDNS []netip.Addr
}

// Orders of the built-in steps: Prepare runs in ascending Order, Apply
// too (after the bridge step), Cleanup in descending Order.
const (
	// OrderPorts: first, so Desired.Bridge.Ports is filled before the
	// bridge step syncs the firewall.
	OrderPorts = 100
	// OrderOverlay: after the ports, before every consumer of Remote.
	OrderOverlay = 200
	// OrderDNS: last, so its Prepare sees Desired.Remote and its Cleanup
	// runs first (before the bridge cleanup deletes the namespaces).
	OrderDNS = 900
)

// Step is one reconciler fed by the desired state.
type Step interface {
	// Name names the step in logs.
	Name() string
	// Order places the step among the others (see OrderPorts...).
	Order() int
	// Prepare may add to d before anything is applied.
	Prepare(d *Desired) error
	// Apply makes the kernel match d; it runs after the bridge step.
	Apply(ctx context.Context, d *Desired) error
	// Cleanup removes everything the step created (--cleanup-on-exit).
	Cleanup(ctx context.Context) error
}

// Env is all a step sees of the agent.
type Env struct {
	// Store is the state store; changes are written at the end of the pass.
	Store *Store
	// Trigger asks for a pass soon; it never blocks.
	Trigger func()
	// Log is the agent's logger.
	Log *slog.Logger
}

// AddrPool hands out one network's addresses: a local bridge.Pool, or the
// overlay's cluster IPAM.
type AddrPool interface {
	Reserve(ip netip.Addr, owner string) error
	Allocate(owner string) (netip.Addr, error)
}

// PoolSource gives the pools of some networks (the overlay step's cluster
// IPAM); nil: a local bridge.Pool.
type PoolSource interface {
	Pool(n *config.Network, s *Snapshot) AddrPool
}
