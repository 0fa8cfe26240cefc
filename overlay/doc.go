// Package overlay is the kernel-facing half of vxmesh's overlay networks:
// the VXLAN device of each overlay network, the FDB and neighbour entries
// that tell it where every remote endpoint lives, a watcher that notices when
// that state drifts, and the pure cluster-wide IPAM (block claims, address
// allocation, conflict detection, MAC generation).
//
// The package takes values and returns values. It knows nothing of gossip,
// the config file or the agent loop: the agent turns the gossip table into a
// []Entry per network and calls Sync; it turns the block claims it has seen
// into a []Claim and calls ChooseBlock.
//
// # Design notes
//
// Static entries, not kernel misses. The VXLAN device runs with learning
// off and l2miss/l3miss off. Every remote endpoint gets a permanent FDB entry
// (MAC -> remote VTEP, NTF_SELF on the VXLAN device) and a permanent
// neighbour entry (IP -> MAC) on the same device. With "proxy" on, the
// VXLAN driver answers ARP requests (and IPv6 neighbour solicitations) from
// that neighbour table itself, so ARP never crosses the underlay. Compared
// with answering L2/L3 miss notifications from user space (the early
// flannel and docker design), static entries keep working while the agent
// restarts or is slow, and what is programmed can be read back and compared.
//
// Broadcast still needs a path: unknown-unicast and multicast frames go to
// the all-zeros FDB entry, which holds one destination per remote VTEP that
// has endpoints on the network (the flood list, ingress replication). The
// kernel refuses to replace non-unicast FDB entries, so flood destinations
// are appended and deleted one by one, never replaced.
//
// Reconcile, don't script. Sync reads the device's permanent entries once,
// computes the difference with the wanted set as a plain list of operations
// (Plan, a pure function), and applies it with replace semantics: an entry
// whose MAC moved to another VTEP is rewritten in one step. Deletes that
// find nothing succeed, so a pass can run twice. Only permanent NTF_SELF FDB
// entries and permanent neighbour entries on our own VXLAN device are ever
// touched; entries the bridge or the kernel made stay as they are.
//
// Throughput. One netlink request per entry with an ack each costs two
// system calls per entry. Handle pipelines instead: it writes hundreds of
// requests in one sendmsg on a raw NETLINK_ROUTE socket, asks for an ack
// only on the last request of each batch (the kernel reports every failed
// request anyway), and sizes the socket buffers so those error reports can
// never overflow it (no ENOBUFS). docs/benchmarks.md has the figures.
//
// Drift. Watcher subscribes to link, neighbour and address notifications in
// the host namespace and raises a coalesced signal when something on our
// devices changed, so the agent re-runs Sync: an entry deleted by hand comes
// back. Subscriptions that overflow are closed by the netlink library; the
// watcher resubscribes and signals, since events were lost.
package overlay
