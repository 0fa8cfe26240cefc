package bridge

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNoIPvlan is returned when an ipvlan network is used on a kernel
// without ipvlan support.
var ErrNoIPvlan = errors.New("kernel lacks ipvlan support")

// Kernel is the kernel side of the reconciler. Namespace "" is the host
// namespace (the one the agent manages); any other name is a named
// namespace under /run/netns. Every write method counts toward Writes.
// The real one is NewKernel; tests of the plan logic use a fake.
type Kernel interface {
	// Links lists the links of ns with their addresses.
	Links(ns string) ([]Link, error)
	// DefaultRoutes lists ns's default routes in the main table.
	DefaultRoutes(ns string) ([]Route, error)
	// NetnsExists reports whether the named namespace exists.
	NetnsExists(name string) bool
	// Sysctl reads a sysctl of the host namespace by its /proc/sys path
	// ("net/ipv4/ip_forward"); os.ErrNotExist when the kernel has none.
	Sysctl(key string) (string, error)

	// CreateNetns creates a named namespace with lo up.
	CreateNetns(name string) error
	// DeleteNetns removes a named namespace; a missing one is no error.
	DeleteNetns(name string) error
	// AddBridge creates a bridge in the host namespace with alias, MTU
	// (0: default) and MAC (nil: random), and sets it up.
	AddBridge(name, alias string, mtu int, mac net.HardwareAddr) error
	// AddVeth creates a veth pair: hostName in the host namespace on master,
	// in hairpin mode, up; peerName inside netns with mac (nil: random). Both
	// get alias and mtu (0: default).
	AddVeth(hostName, master, netns, peerName, alias string, mtu int, mac net.HardwareAddr) error
	// AddMacvlan creates a bridge-mode macvlan child of parent (a host
	// link) directly inside netns as name, with alias, mtu and mac.
	AddMacvlan(netns, name, parent, alias string, mtu int, mac net.HardwareAddr) error
	// AddIPvlan creates an L2 ipvlan child of parent inside netns as name;
	// ErrNoIPvlan when the kernel lacks ipvlan.
	AddIPvlan(netns, name, parent, alias string, mtu int) error
	// DeleteLink removes a link; a missing one is no error.
	DeleteLink(ns, name string) error
	// SetAlias sets a link's alias.
	SetAlias(ns, name, alias string) error
	// SetUp sets a link up.
	SetUp(ns, name string) error
	// SetMTU sets a link's MTU.
	SetMTU(ns, name string, mtu int) error
	// SetMaster enslaves a host link to a bridge.
	SetMaster(name, master string) error
	// SetMAC sets a link's MAC.
	SetMAC(ns, name string, mac net.HardwareAddr) error
	// AddAddr adds an address to a link.
	AddAddr(ns, name string, p netip.Prefix) error
	// DelAddr removes an address from a link.
	DelAddr(ns, name string, p netip.Prefix) error
	// ReplaceDefaultRoute makes the default route of ns go via gw on link.
	ReplaceDefaultRoute(ns, link string, gw netip.Addr) error
	// SetSysctl writes a sysctl of the host namespace.
	SetSysctl(key, value string) error
	// SetHairpin sets hairpin mode on a host link enslaved to a bridge.
	SetHairpin(name string, on bool) error

	// Writes counts the writes made so far.
	Writes() int64
}

// Announcer is a Kernel that can also announce addresses (NetlinkKernel
// does). A Kernel without it skips the announcements: they are packets,
// not state.
type Announcer interface {
	// Announce sends a gratuitous ARP (IPv4) or an unsolicited neighbour
	// advertisement (IPv6) for ip from link name in ns, so peers drop a
	// MAC they cached for ip. It changes no kernel
	// state and is no write.
	Announce(ns, name string, ip netip.Addr) error
}
