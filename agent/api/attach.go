package api

// Attachments: how a container runtime (the CNI plugin, the Docker plugin)
// puts a container it owns on a vxmesh network. The runtime owns the
// container and its network namespace; the agent owns everything on the
// network side: the address (cluster-wide IPAM on overlays), the veth and
// its host end, gossip, DNS, published ports, MTU. Both plugins are thin
// adapters that turn their protocol into these requests.
//
// Routes (all JSON):
//
//	POST /v1/attachments                AttachRequest -> Attachment (201 new, 200 the same request again)
//	POST /v1/attachments/check          AttachRequest -> Attachment; 409 drift, 404 unknown
//	POST /v1/attachments/detach         DetachRequest -> Detached (200 also when nothing was attached)
//	POST /v1/attachments/gc             GCRequest -> GCResult
//	GET  /v1/attachments[?runtime=R]    []Attachment
//	GET  /v1/attachments/status?network=N  AttachStatus
//
// An attachment is keyed by (Runtime, ID, IfName): one container may be on
// several vxmesh networks, one interface each, as CNI calls the plugin once
// per network with a different CNI_IFNAME.
//
// Two placements serve the two runtimes:
//
//   - PlacementNetns (CNI): the runtime has made the namespace; the agent
//     creates the veth with its container end directly in Netns, named
//     IfName, with MAC, address, routes and MTU, and serves DNS on
//     127.0.0.11 inside it.
//   - PlacementHost (Docker's Join): the agent creates the veth in its own
//     namespace and answers the container end's name (Attachment.HostPeer);
//     the runtime moves it into its sandbox and renames it (Docker's
//     InterfaceName{SrcName, DstPrefix}), and sets the address itself from
//     Attachment.IPs. Docker runs its own resolver on 127.0.0.11 and
//     forwards to Attachment.DNS.Nameservers, so DNSMode is DNSNone.
//
// Docker's CreateEndpoint comes before Join and already wants the address:
// it sends an AttachRequest with Reserve set (no veth yet, IP and MAC
// allocated and held under the key), then the same key again without
// Reserve at Join. The cluster-wide IPAM is the same path in both cases.

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Runtimes that attach containers.
const (
	RuntimeCNI    = "cni"
	RuntimeDocker = "docker"
)

// Placements of a veth's container end.
const (
	// PlacementNetns creates the container end inside AttachRequest.Netns
	// under AttachRequest.IfName (CNI).
	PlacementNetns = "netns"
	// PlacementHost leaves the container end in the agent's namespace for
	// the runtime to move (Docker).
	PlacementHost = "host"
)

// DNS modes of an attachment.
const (
	// DNSEmbedded: the agent answers on 127.0.0.11 inside the container's
	// namespace (the default).
	DNSEmbedded = "embedded"
	// DNSNone: the runtime resolves itself (Docker's embedded DNS) and
	// forwards to Attachment.DNS.Nameservers.
	DNSNone = "none"
)

// AttachRequest asks the agent to attach a runtime's container to one
// network: POST /v1/attachments (and /check with the same body).
type AttachRequest struct {
	// Runtime is RuntimeCNI or RuntimeDocker.
	Runtime string `json:"runtime"`
	// ID is the runtime's container ID (CNI_CONTAINERID; Docker's endpoint
	// ID).
	ID string `json:"id"`
	// Name is the container's DNS name on the network (K8S_POD_NAME, the
	// container name, else the ID).
	Name string `json:"name"`
	// Aliases are extra DNS names on the network.
	Aliases []string `json:"aliases,omitempty"`
	// Network names a network of the agent's config.
	Network string `json:"network"`
	// Netns is the path of the container's network namespace file
	// (CNI_NETNS; Docker's SandboxKey), as the agent's mount namespace
	// sees it.
	Netns string `json:"netns,omitempty"`
	// IfName is the interface name inside the container (CNI_IFNAME).
	// With PlacementHost it is the prefix the runtime names it by
	// (Docker's DstPrefix, "eth").
	IfName string `json:"ifname"`
	// Placement is PlacementNetns (default) or PlacementHost.
	Placement string `json:"placement,omitempty"`
	// Reserve allocates and holds the address only (Docker's
	// CreateEndpoint); a later request with the same key and no Reserve
	// makes the veth.
	Reserve bool `json:"reserve,omitempty"`
	// IP and MAC ask for a static address or MAC ("" for the agent to
	// choose). IP is an address without prefix.
	IP  string `json:"ip,omitempty"`
	MAC string `json:"mac,omitempty"`
	// Ports are the ports to publish on the host.
	Ports []PortRequest `json:"ports,omitempty"`
	// DNSMode is DNSEmbedded (default) or DNSNone.
	DNSMode string `json:"dns_mode,omitempty"`
}

// PortRequest is one port to publish: HostIP:HostPort..HostPortEnd to
// ContainerPort. HostPort 0 picks a free port (docker run -p 80).
type PortRequest struct {
	Proto         string `json:"proto"`
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      uint16 `json:"host_port,omitempty"`
	HostPortEnd   uint16 `json:"host_port_end,omitempty"`
	ContainerPort uint16 `json:"container_port"`
}

// AttachmentKey names one attachment.
type AttachmentKey struct {
	Runtime string `json:"runtime"`
	ID      string `json:"id"`
	IfName  string `json:"ifname"`
}

// Key is the request's attachment key.
func (r AttachRequest) Key() AttachmentKey {
	return AttachmentKey{Runtime: r.Runtime, ID: r.ID, IfName: r.IfName}
}

// String is "runtime/id/ifname".
func (k AttachmentKey) String() string { return k.Runtime + "/" + k.ID + "/" + k.IfName }

// dnsName is what the embedded DNS answers for: a label or dotted labels.
var dnsName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9])?$`)

// Validate checks the request's fields without the agent's config, naming
// the field that is wrong.
func (r AttachRequest) Validate() error {
	switch r.Runtime {
	case RuntimeCNI, RuntimeDocker:
	default:
		return fmt.Errorf("runtime: %q is not %q or %q", r.Runtime, RuntimeCNI, RuntimeDocker)
	}
	if r.ID == "" {
		return fmt.Errorf("id: empty")
	}
	if r.Network == "" {
		return fmt.Errorf("network: empty")
	}
	if !dnsName.MatchString(r.Name) {
		return fmt.Errorf("name: %q is not a DNS name", r.Name)
	}
	for i, a := range r.Aliases {
		if !dnsName.MatchString(a) {
			return fmt.Errorf("aliases[%d]: %q is not a DNS name", i, a)
		}
	}
	if r.IfName == "" || len(r.IfName) > 15 {
		return fmt.Errorf("ifname: %q is not an interface name", r.IfName)
	}
	switch r.Placement {
	case "", PlacementNetns:
		if r.Netns == "" && !r.Reserve {
			return fmt.Errorf("netns: empty")
		}
	case PlacementHost:
	default:
		return fmt.Errorf("placement: %q is not %q or %q", r.Placement, PlacementNetns, PlacementHost)
	}
	switch r.DNSMode {
	case "", DNSEmbedded, DNSNone:
	default:
		return fmt.Errorf("dns_mode: %q is not %q or %q", r.DNSMode, DNSEmbedded, DNSNone)
	}
	if r.IP != "" {
		if _, err := netip.ParseAddr(r.IP); err != nil {
			return fmt.Errorf("ip: %q is not an IP address", r.IP)
		}
	}
	for i, p := range r.Ports {
		if err := p.validate(); err != nil {
			return fmt.Errorf("ports[%d]: %v", i, err)
		}
	}
	return nil
}

func (p PortRequest) validate() error {
	if p.Proto != "tcp" && p.Proto != "udp" {
		return fmt.Errorf("proto %q is not tcp or udp", p.Proto)
	}
	if p.ContainerPort == 0 {
		return fmt.Errorf("container_port: 0")
	}
	if p.HostPortEnd != 0 && p.HostPortEnd < p.HostPort {
		return fmt.Errorf("host_port_end %d below host_port %d", p.HostPortEnd, p.HostPort)
	}
	if p.HostIP != "" {
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			return fmt.Errorf("host_ip: %q is not an IP address", p.HostIP)
		}
	}
	return nil
}

// Attachment is one runtime attachment as the agent put it in force.
type Attachment struct {
	AttachmentKey
	Name    string `json:"name"`
	Network string `json:"network"`
	Netns   string `json:"netns,omitempty"`
	// Interface is the container end: its name in the container (IfName)
	// and MAC. HostInterface is the host end of the veth (on the
	// network's bridge).
	Interface     string `json:"interface"`
	MAC           string `json:"mac"`
	HostInterface string `json:"host_interface,omitempty"`
	// HostPeer is the container end's name in the agent's namespace, for
	// the runtime to move (PlacementHost only).
	HostPeer string `json:"host_peer,omitempty"`
	// IPs are the container's addresses with the network's prefix.
	IPs    []AttachIP    `json:"ips"`
	Routes []AttachRoute `json:"routes,omitempty"`
	MTU    int           `json:"mtu,omitempty"`
	DNS    AttachDNS     `json:"dns"`
	// Ports are the published ports in force.
	Ports []PortMapping `json:"ports,omitempty"`
	// State is StateOK, StatePending or StateError (see Error).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// AttachIP is one address of an attachment.
type AttachIP struct {
	// Address is the address with the network's prefix: 10.200.0.5/16.
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
}

// AttachRoute is one route inside the container.
type AttachRoute struct {
	// Dst is a prefix, 0.0.0.0/0 for the default route.
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
}

// AttachDNS is the resolver configuration the runtime should give the
// container.
type AttachDNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// DetachRequest removes one attachment: POST /v1/attachments/detach.
// Network is optional: when set, an attachment of the key on another
// network is left alone.
type DetachRequest struct {
	AttachmentKey
	Network string `json:"network,omitempty"`
}

// Detached answers a DetachRequest. Existed is false when there was
// nothing to remove (a second DEL, an agent that lost the container).
type Detached struct {
	Existed bool `json:"existed"`
}

// GCRequest removes a runtime's attachments on Network that are not in
// Keep: POST /v1/attachments/gc.
type GCRequest struct {
	Runtime string          `json:"runtime"`
	Network string          `json:"network"`
	Keep    []AttachmentKey `json:"keep"`
}

// GCResult lists what a GCRequest removed.
type GCResult struct {
	Removed []AttachmentKey `json:"removed"`
}

// AttachStatus tells whether the agent can attach to Network now:
// GET /v1/attachments/status?network=N.
type AttachStatus struct {
	Network string `json:"network"`
	Ready   bool   `json:"ready"`
	// Reason says why not ready (network unknown, gossip not synced yet).
	Reason string `json:"reason,omitempty"`
}
