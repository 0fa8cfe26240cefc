// Package portmap publishes container ports on the host the way
// `docker run -p` and `-P` do, without a userland proxy.
//
// The package computes values; the agent and bridge/ apply them:
//
//   - Expand turns a container's `publish`, `publish_all` and `expose`
//     entries into Bindings (one per port; ranges are expanded), addressed
//     to the container's first non-internal bridge or overlay network, as
//     Docker publishes on the endpoint that gives the container its gateway.
//   - Allocator.Allocate chooses host ports for all containers of the host
//     at once: explicit ports are checked, random ports come from
//     DefaultRange (32768–60999, the Linux default ephemeral range Docker's
//     issue text refers to) and are kept stable through the Previous
//     assignment the agent persists. Each container gets its full set of
//     Mappings or an error naming what is in the way; nothing in between.
//   - Rules turns Mappings into the contents of the VXMESH-DNAT and
//     VXMESH-HAIRPIN nat chains and the VXMESH-PUBLISHED filter chain,
//     written exactly as `iptables -S` prints them, so a synced chain reads
//     back equal and a second sync writes nothing.
//   - FlushConntrack deletes conntrack entries of mappings that went away,
//     so established flows do not keep reaching a container through a dead
//     mapping; FlushUnmapped deletes UDP entries that would keep a new
//     mapping from taking effect.
//   - Format and JSON print mappings like `docker port`.
//
// Design notes.
//
// DNAT applies to every packet addressed to a local address (the jumps from
// PREROUTING and OUTPUT match --dst-type LOCAL), including packets coming
// from the container bridges themselves. Docker excludes its own bridge
// (`! -i docker0`) only because its userland proxy serves that case; we have
// no proxy, so excluding the bridge would break container → host
// address → container. Two things make that path work:
//
//   - A container reaching its own published port through the host address
//     would get the reply from itself, addressed to itself, and drop it:
//     VXMESH-HAIRPIN masquerades that one case (-s CIP -d CIP), so the
//     container sees the connection come from its gateway. Because
//     br_netfilter re-bridges a DNATed frame whose new destination is on
//     the bridge it came from, the frame leaves through the port it entered
//     by: the container's bridge port needs hairpin mode (bridge/ sets it).
//   - Another container on the same bridge needs no masquerade: with
//     br_netfilter (bridge-nf-call-iptables=1, which vxmesh requires) the
//     frame is bridged to the target and the reply is bridged back through
//     the same conntrack entry, which restores the host address as its
//     source. The target sees the real client address, as with Docker's
//     userland-proxy=false.
//
// Publishing on a loopback host address (127.0.0.1:8080:80) is refused:
// making it work needs route_localnet on the bridges and a DNAT in OUTPUT
// for 127.0.0.0/8, which would let neighbours on those bridges reach
// services bound to the host's loopback (the kube-proxy CVE-2020-8558
// problem). Docker falls back to its userland proxy there; we have none.
package portmap
