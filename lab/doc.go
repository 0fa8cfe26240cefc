// Package lab runs a vxmesh cluster on one machine: N hosts as network
// namespaces on a private underlay, one real `vxmesh agent` process per
// host, example containers on a bridge and an overlay network, and checks
// that the network does what the product promises (`vxmesh lab`).
//
// Design notes.
//
// Nothing is in the root namespace. The underlay bridge lives in a
// namespace of its own ("vxl-<lab>-ul"); each host ("vxl-<lab>-hN") has one
// veth into it with 198.18.0.N/16; an "internet" host ("vxl-<lab>-inet",
// 198.18.255.254, with 198.19.0.1 on its lo) is every host's default route
// and runs a fake upstream DNS server, so containers' forwarded lookups
// work without a packet leaving the machine. No link, route, iptables rule
// or sysctl of the root namespace is touched. The same builder (Topology)
// is the kernel test harness's (internal/nstest wraps it), so tests and
// the lab run on one topology.
//
// A lab is a value first: Plan computes every name, address, file and
// container from the lab's name, host count and root directory alone, and
// writes one YAML config per host that a user can read and edit (the agent
// reloads it). Because the names follow from the lab name — which may not
// contain '-', so "vxl-<lab>-" and "<lab>-" never prefix another lab's
// names — `lab down` finds everything of a lab even when lab.json is gone
// and its processes died: namespaces by prefix, processes by the namespace
// they run in or the lab directory in their arguments.
//
// Agents are real processes of the vxmesh binary, started inside their
// host's network namespace only (forked from a thread locked in it, never
// `ip netns exec`, whose private mount namespace would hide the container
// namespaces the agent mounts under /run/netns), in a session of their own
// so they outlive `lab up`, with --cleanup-on-exit so `lab down`'s SIGTERM
// makes them remove what they created. The lab's other processes — the
// fake upstream DNS server and a TCP server in the first container — are
// the same binary re-executed as HelperArg0.
//
// The checks (Plan.Checks) are claims about the finished product: every
// pair of containers on the overlay on different hosts pings by IP and by
// name (looked up through the container's own resolver, from inside its
// namespace), a published port answers from another host, and every
// container resolves an upstream name. They are small functions (Ping,
// Resolve, DialBanner) that tests can call directly; they report failure
// honestly rather than being weakened to pass.
//
// Lab directory (DefaultRoot/<lab>):
//
//	lab.json          the Record: plan, pids, argv of every process
//	checks.json       the last check results
//	h1.yaml …         host configs
//	h1.log …          agent logs (stdout and stderr)
//	h1/               h1's state_dir, with api.sock
//	dns.log           fake upstream DNS server
//	web1-server.log   TCP server in web1
package lab
