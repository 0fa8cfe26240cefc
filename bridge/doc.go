// Package bridge makes one host's local container networking real: bridges,
// veth pairs, macvlan children, named network namespaces, addresses, default
// routes, ip_forward, the NAT/isolation iptables chains, and the name files
// under /etc/netns/NAME.
//
// # Design
//
// The package is a reconciler, not a script. The caller (the agent) hands it
// the desired state as a plain value (State). Reconciler.Read collects the
// actual state from the kernel — links that carry our "vxmesh:" alias,
// their addresses, default routes and links inside the container
// namespaces we care about, ip_forward, and the name files — and Plan
// compares the two and returns a list of operations (Op), a value that can
// be printed, logged and unit-tested without root. Apply runs the
// operations through the Kernel interface, one slog line per change with
// its reason. Applying the plan of an unchanged state is an empty plan, so a
// second pass makes no kernel writes (Kernel.Writes and ipt.Runner.Writes
// count them).
//
// What vxmesh owns is told by the kernel itself wherever possible: every
// link we create carries the alias "vxmesh:net=NET" (bridges) or
// "vxmesh:ctr=NAME,net=NET" (both veth ends, macvlan children), and the host
// end of a container veth has the stable name vh+FNV-32a(netns/network), so a
// restarted agent finds and adopts it instead of recreating it (no traffic
// is lost). What the kernel cannot say — which namespaces we created (and so
// may delete), which namespaces we configured (where to look when a
// container goes away), the MAC of each interface (so a recreated interface
// keeps it) and whether we switched ip_forward on — lives in a Record the
// agent persists in its state file. Deletions remove exactly what we
// created; links, rules, namespaces and files we did not create are never
// touched, and a link that has one of our names but is not ours is an error
// for its container, not something to delete.
//
// A new container interface with an IPv4 address gets the MAC derived from
// it as Docker does (AddrMAC: 02:42 and the four address bytes), so a
// container that takes over the address of a removed one is reachable at
// once by peers that cached the old MAC. Each interface that gets an IPv4
// address is also announced (gratuitous ARP from inside the container) for
// what derivation cannot cover: a MAC recorded before derivation, an
// address that moved on a live interface. Live interfaces keep their MAC:
// an upgraded agent adopts them with no write.
//
// Container-side interfaces are created directly inside the container
// namespace under their final name (eth0, eth1…): the veth peer and the
// macvlan child are born there (IFLA_NET_NS_FD), so no half-moved device is
// ever left in the host namespace. The default route goes via the gateway
// of the first network the container lists (internal or not, as Docker
// does with its first network); the others get only their subnet route.
//
// The iptables chains of architecture.md are assembled by Firewall from the
// networks plus the chains other packages contribute (portmap's
// VXMESH-DNAT, VXMESH-HAIRPIN and VXMESH-PUBLISHED), and synced per table in
// one atomic ipt.SyncChains call.
//
// Failures are contained per owner: when an operation for a container
// fails, the rest of that container's operations are skipped, the container
// is reported failed in Result, and the other containers go on. The next
// pass re-reads the kernel and finishes (or undoes) the work, so a
// half-attached container is never reported as fine.
package bridge
