package doctor

import (
	"net/netip"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
)

// Facts is everything the checks look at, read once: the config, what the
// agent's API serves, the kernel of the host's network namespace, and the
// probes to each peer. A nil or empty part means it could not be read; its
// *Err field says why.
type Facts struct {
	Config    *config.Config
	ConfigErr string
	// Status, Peers and Inspect are the agent's answers (nil: the agent
	// did not answer; AgentErr says why).
	Status   *api.Status
	Peers    []api.Peer
	Inspect  *api.Inspect
	AgentErr string
	Kernel   KernelFacts
	Paths    []PathFacts
	// PathsNote says why there are no Paths ("" when probed).
	PathsNote string
	// Members are what the gossip layer knows of each member's clock and
	// keys; nil while the agent does not serve it (see ClusterInfo).
	Members []MemberInfo
}

// KernelFacts is what doctor read from the kernel.
type KernelFacts struct {
	// Release is the kernel release (uname -r).
	Release string
	// Features are the device kinds probed in a scratch namespace.
	Features []Feature
	// Iptables is the backend the iptables command uses: "nf_tables" or
	// "legacy" ("" when unknown, IptablesErr says why); NftRules and
	// LegacyRules count the rules each backend holds in the host's
	// namespace (-1: not read).
	Iptables    string
	IptablesErr string
	NftRules    int
	LegacyRules int
	// ForwardPolicy is the filter FORWARD chain's policy (ACCEPT, DROP).
	ForwardPolicy string
	// Conntrack: the module is loaded; count and max of its table.
	Conntrack      bool
	ConntrackCount int
	ConntrackMax   int
	// BrNetfilter: the module is loaded; CallIptables its
	// bridge-nf-call-iptables ("0", "1").
	BrNetfilter  bool
	CallIptables string
	// Links are the host namespace's links.
	Links []Link
	// Chains are the VXMESH-* chains, per table.
	Chains map[string][]string
	// EtcNetns are /etc/netns/NAME directories holding a file vxmesh wrote.
	EtcNetns []EtcNetns
	// Namespaces are the named namespaces holding a vxmesh-owned link
	// whose host end is in this host's namespace.
	Namespaces []NamedNetns
	// Errors are what could not be read, one sentence each.
	Errors []string
}

// Feature is one kernel feature, probed.
type Feature struct {
	Name string
	OK   bool
	Err  string
}

// Link is one link of the host namespace.
type Link struct {
	Name  string
	Kind  string // vxlan, bridge, veth, …
	Alias string
	MTU   int
	// Master is the bridge it is enslaved to ("" for none).
	Master string
	// VXLANPort and VNI of a vxlan link.
	VXLANPort int
	VNI       int
	// External marks a vxlan link in external (collect metadata) mode,
	// which takes every VNI on its port.
	External bool
	// Addrs are its IPv4/IPv6 addresses.
	Addrs []netip.Prefix
	// TxChecksum is the tx checksum offload state (nil: not read);
	// Driver its ethtool driver name.
	TxChecksum *bool
	Driver     string
}

// EtcNetns is one /etc/netns/NAME directory vxmesh wrote into.
type EtcNetns struct {
	Name string
	// NetnsExists: /run/netns/NAME exists.
	NetnsExists bool
}

// NamedNetns is a named namespace with a vxmesh container link attached to
// this host.
type NamedNetns struct {
	Name string
	// Containers are the containers its vxmesh link aliases name.
	Containers []string
}

// PathFacts are the probes from this host to one peer.
type PathFacts struct {
	Peer    string
	Address netip.Addr
	// GossipTCP and GossipUDP probe the memberlist port.
	GossipPort int
	GossipTCP  Probe
	GossipUDP  Probe
	Overlays   []OverlayPath
}

// OverlayPath is the probe of one overlay network's VXLAN path to a peer.
type OverlayPath struct {
	Network string
	VNI     int
	Port    int
	// MTU is the overlay's MTU: the inner packets that must fit.
	MTU int
	// Reach is a small VXLAN echo's outcome.
	Reach Probe
	// Largest is the largest inner packet (IP length) that came back, 0
	// when none did or it was not probed.
	Largest int
}

// Probe is the outcome of one reachability probe.
type Probe struct {
	Done bool   // probed at all
	OK   bool   // an answer came back
	Info string // what was seen: "answered in 0.3ms", "timeout after 1s", "refused"
}

// MemberInfo is what the gossip layer knows of one member beyond the
// peers API: its clock (as carried in its messages) and its keys.
type MemberInfo struct {
	Name string
	// ClockOffset is the member's clock minus ours, as seen in its last
	// message (valid when HaveClock).
	ClockOffset time.Duration
	HaveClock   bool
	// KeyFingerprints are the fingerprints of the member's gossip keys
	// (KeyFingerprint), the encrypting one first; nil when not known.
	KeyFingerprints []string
}
