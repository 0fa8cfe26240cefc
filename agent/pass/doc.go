// Package pass holds what one reconcile pass of the agent is made of, so
// that the steps (agent/portstep, agent/overlaystep, agent/dnsstep) and the
// loop (package agent) share values without importing each other:
//
//   - Snapshot: every input, read once at the top of a pass (the config,
//     the run-time containers, a copy of the state file, one gossip view,
//     the host's nameservers). Pools, steps and the plan all read it.
//   - Desired: the desired state built from a Snapshot, with typed fields
//     the steps fill in Prepare (Bridge.Ports, Remote).
//   - State and Store: state.json, changed through Store.Update and
//     written once per pass (Store.Flush).
//   - Step and Env: the narrow door a step gets; a step never sees the
//     agent's locks or fields.
//
// The flow is one way: package agent imports the steps, the steps import
// this package, and this package imports only the kernel packages' value
// types (bridge, bridge/portmap, gossip) and config.
package pass
