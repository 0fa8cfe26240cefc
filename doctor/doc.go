// Package doctor checks a host and its paths to the peers for the failures
// VXLAN overlays are known for, before traffic breaks: missing kernel
// features, two iptables backends with rules, MTU black holes on the
// underlay, firewalled VXLAN or gossip ports, a VXLAN port another device
// already uses, TX checksum offload on kernels and drivers that mangle
// VXLAN, duplicate host names or addresses, reap_after shorter than
// failure detection, and vxmesh state that nothing accounts for.
//
// Design: every check is a pure function over a Facts value (what was read
// from the config, the agent's API and the kernel) that returns Results;
// the readers that fill Facts live in their own small files (kernel*.go,
// probe*.go) behind the Kernel and Prober interfaces, so the checks are
// unit-tested with canned facts and no root, and the kernel side is tested
// in namespaces by making each fault and seeing it reported.
//
// What only the agent's gossip knows (the peers' clocks, which keys each
// member holds) comes through the optional ClusterInfo interface; while
// the agent does not serve it, those checks say so with a warning instead
// of guessing.
package doctor
