package bridge

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// Network drivers the reconciler knows. Overlay networks reach it as bridge
// networks (their bridge); the overlay package adds the VXLAN side.
const (
	DriverBridge  = "bridge"
	DriverMacvlan = "macvlan"
	DriverIPvlan  = "ipvlan"
)

// State is the desired local state of one host: a plain value the agent
// builds from its inputs.
type State struct {
	// Networks in config order; their order fixes the order of firewall rules.
	Networks []Network
	// Containers that need a namespace of their own (network lists and mode
	// none). Host-mode containers and container:OTHER joiners are not here:
	// they need nothing of their own.
	Containers []Container
	// Ports holds the chains other packages contribute to the firewall
	// (portmap's VXMESH-DNAT, VXMESH-HAIRPIN, VXMESH-PUBLISHED). A chain
	// given here replaces the empty default of the same name.
	Ports PortChains
	// RestoreSysctls puts back the sysctls vxmesh changed (ip_forward,
	// IPv6 forwarding, bridge-nf-call-iptables and -ip6tables) when no
	// bridge network is left (full cleanup).
	RestoreSysctls bool
}

// PortChains are iptables chains contributed by port publishing, per table
// and family (NAT6 and Filter6 go to ip6tables).
type PortChains struct {
	NAT     []ipt.Chain
	Filter  []ipt.Chain
	NAT6    []ipt.Chain
	Filter6 []ipt.Chain
}

// Network is one local network.
type Network struct {
	// Name of the network (in aliases, logs and rule comments).
	Name string
	// Driver is DriverBridge, DriverMacvlan or DriverIPvlan.
	Driver string
	// Device is the bridge device (bridge driver only).
	Device string
	// Subnet of the network; Gateway/Subnet.Bits() goes on the bridge.
	// Invalid for an IPv6-only network.
	Subnet netip.Prefix
	// Gateway is the host's address on the bridge, and the containers'
	// default gateway.
	Gateway netip.Addr
	// Subnet6 is the network's IPv6 subnet, invalid when it has none;
	// Gateway6/Subnet6.Bits() goes on the bridge, and ip6tables get the
	// network's masquerade.
	Subnet6 netip.Prefix
	// Gateway6 is the host's IPv6 address on the bridge and the
	// containers' IPv6 default gateway.
	Gateway6 netip.Addr
	// MTU of the bridge and the container interfaces; 0 leaves the kernel's.
	MTU int
	// Internal networks get no masquerade and no forwarding to or from
	// other interfaces.
	Internal bool
	// Parent is the parent link of a macvlan or ipvlan network.
	Parent string
	// MAC, when set, is the bridge's MAC (overlays share one gateway MAC on
	// every host); nil keeps the kernel's.
	MAC net.HardwareAddr
}

// Container is one container namespace and its interfaces.
type Container struct {
	// Name of the container (in aliases and logs).
	Name string
	// Netns is the named network namespace (/run/netns/NAME).
	Netns string
	// Interfaces, eth0 first.
	Interfaces []Interface
	// Files are the name files to write under EtcNetns/Netns, by file name
	// (FileHostname, FileHosts, FileResolv); nil writes none.
	Files map[string][]byte
	// HostPlaced: the runtime owns the namespace and moves the container
	// ends itself (Docker); each veth is made with its container end in
	// the host namespace under Interface.HostPeer (plan_hostpeer.go).
	// Netns then only names the veths (HostVethName) and their MACs.
	HostPlaced bool
}

// Interface is one container interface.
type Interface struct {
	// Network the interface is on.
	Network string
	// IfName inside the container: eth0, eth1…
	IfName string
	// Addr is the interface's address with the subnet's prefix length;
	// invalid for none (an IPv6-only network).
	Addr netip.Prefix
	// Addr6 is the interface's IPv6 address with subnet6's prefix length;
	// invalid for none.
	Addr6 netip.Prefix
	// MAC to give the interface when it is created; nil picks a random one.
	// An existing interface keeps the MAC the kernel has.
	MAC net.HardwareAddr
	// Gateway, when valid, gets the namespace's default route via this
	// interface (the first interface with one wins).
	Gateway netip.Addr
	// Gateway6 does the same for the IPv6 default route.
	Gateway6 netip.Addr
	// MTU of the interface; 0 leaves the kernel's.
	MTU int
	// HostPeer is the container end's name in the host namespace
	// (Container.HostPlaced only).
	HostPeer string
}

// Record is what the reconciler must remember across restarts and the
// kernel cannot tell it. The agent persists it in its state file; Apply
// returns the updated copy.
type Record struct {
	// CreatedNetns are the namespaces vxmesh created and so may delete.
	CreatedNetns []string `json:"created_netns,omitempty"`
	// Namespaces are the container namespaces vxmesh configured (links,
	// name files), created or adopted: where to look when a container goes.
	Namespaces []string `json:"namespaces,omitempty"`
	// MACs of container interfaces by "netns/network", so a recreated
	// interface keeps its MAC.
	MACs map[string]string `json:"macs,omitempty"`
	// Sysctls holds the value each sysctl vxmesh changed had before, by
	// /proc/sys path, to put back on cleanup.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// MACKey is the Record.MACs key of a container interface.
func MACKey(netns, network string) string { return netns + "/" + network }

func (r Record) clone() Record {
	c := Record{
		CreatedNetns: slices.Clone(r.CreatedNetns),
		Namespaces:   slices.Clone(r.Namespaces),
		MACs:         make(map[string]string, len(r.MACs)),
		Sysctls:      make(map[string]string, len(r.Sysctls)),
	}
	for k, v := range r.MACs {
		c.MACs[k] = v
	}
	for k, v := range r.Sysctls {
		c.Sysctls[k] = v
	}
	return c
}

func (r *Record) created(ns string) bool { return slices.Contains(r.CreatedNetns, ns) }

func addName(list []string, name string) []string {
	if slices.Contains(list, name) {
		return list
	}
	list = append(list, name)
	slices.Sort(list)
	return list
}

func removeName(list []string, name string) []string {
	return slices.DeleteFunc(list, func(s string) bool { return s == name })
}

// Link is a network interface as read from the kernel.
type Link struct {
	Name  string
	Index int
	// Kind is the rtnl kind: "bridge", "veth", "macvlan", "ipvlan", "device"…
	Kind  string
	Alias string
	// MasterIndex is the bridge the link is enslaved to, 0 for none.
	MasterIndex int
	// ParentIndex is IFLA_LINK: the peer's index for a veth (in the peer's
	// namespace), the parent's for macvlan.
	ParentIndex int
	MTU         int
	Up          bool
	// Hairpin is the bridge port's hairpin mode (host links on a bridge).
	Hairpin bool
	MAC     net.HardwareAddr
	// Addrs are the link's addresses, IPv6 link-local ones left out.
	Addrs []netip.Prefix
}

// Route is a default route as read from the kernel (main table).
type Route struct {
	// Link is the output device's name.
	Link    string
	Gateway netip.Addr
	// IPv6 tells the route's family.
	IPv6 bool
}

// Actual is the kernel state the reconciler may own or adopt.
type Actual struct {
	// Host are the links of the host namespace.
	Host []Link
	// Sysctls are the host's sysctls of interest by /proc/sys path; a
	// sysctl the kernel lacks has no entry.
	Sysctls map[string]string
	// Netns holds the namespaces of interest: desired and recorded ones.
	Netns map[string]*NetnsState
	// Files holds the name files present per namespace of interest, by file
	// name; a missing file has no entry.
	Files map[string]map[string][]byte
}

// NetnsState is what the reconciler reads inside a container namespace.
type NetnsState struct {
	Exists bool
	Links  []Link
	Routes []Route
}

func linkByName(ls []Link, name string) *Link {
	for i := range ls {
		if ls[i].Name == name {
			return &ls[i]
		}
	}
	return nil
}

// Sysctls vxmesh sets in the host namespace while it has bridge networks.
const (
	SysctlForward = "net/ipv4/ip_forward"
	// SysctlBridgeNF makes bridged frames pass iptables (br_netfilter), which
	// published ports reached over the same bridge need. Absent when
	// br_netfilter is not loaded.
	SysctlBridgeNF = "net/bridge/bridge-nf-call-iptables"
)

// HostSysctls are the sysctls a host with bridge networks needs, with
// their values.
var HostSysctls = []struct{ Key, Value string }{
	{SysctlForward, "1"},
	{SysctlBridgeNF, "1"},
}

// IPv6 sysctls vxmesh sets in the host namespace while a bridge network
// has an IPv6 subnet.
const (
	// SysctlForward6 turns IPv6 routing on. Like Docker with --ipv6, it is
	// only set when a network has subnet6: with forwarding on, the kernel
	// ignores router advertisements on interfaces whose accept_ra is 1, so
	// a host that learns its own IPv6 route by SLAAC needs accept_ra=2.
	SysctlForward6 = "net/ipv6/conf/all/forwarding"
	// SysctlBridgeNF6 is bridge-nf-call-iptables for ip6tables.
	SysctlBridgeNF6 = "net/bridge/bridge-nf-call-ip6tables"
)

// HostSysctls6 are the sysctls a host with IPv6 bridge networks needs too.
var HostSysctls6 = []struct{ Key, Value string }{
	{SysctlForward6, "1"},
	{SysctlBridgeNF6, "1"},
}

// Prefixes returns the interface's addresses that are set, IPv4 first.
func (ifc *Interface) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{ifc.Addr, ifc.Addr6} {
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}
