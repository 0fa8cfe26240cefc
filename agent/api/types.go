// Package api holds the JSON types of the agent's HTTP API (served on its
// unix socket) and a typed client for them, which the CLI uses.
//
// Routes (all JSON):
//
//	GET    /v1/status                       Status
//	GET    /v1/networks                     []Network
//	GET    /v1/endpoints[?network=N]        []Endpoint (local and remote)
//	GET    /v1/peers                        []Peer
//	GET    /v1/inspect                      Inspect (kernel state, read back)
//	GET    /v1/containers                   []Container
//	GET    /v1/containers/{name}            Container
//	POST   /v1/containers                   ContainerSpec -> Container (201)
//	DELETE /v1/containers/{name}            Removed
//	GET    /v1/containers/{name}/exec       ExecInfo
//	GET    /v1/containers/{name}/ports      Ports
//
// Errors are 4xx/5xx with an Error body: 400 bad request (the message
// names the field), 404 unknown container or network, 409 a name,
// address or host port already taken (by another container or a host
// process) or a container the config owns, 500 the kernel refused (the
// agent has undone the attempt).
package api

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/vxmesh/vxmesh/config"
)

// DefaultSocket is where the agent listens unless told otherwise.
const DefaultSocket = config.DefaultSocket

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "VXMESH_SOCKET"

// Status is this host's view: GET /v1/status.
type Status struct {
	Host    string `json:"host"`
	Address string `json:"address"`
	// Config is the config file the agent runs.
	Config string `json:"config"`
	// Peers are the cluster members as gossip sees them (empty on a single
	// host).
	Peers []Peer `json:"peers"`
	// Overlay are the overlay networks' VXLAN sides; Gossip the cluster
	// counters (absent without a cluster).
	Overlay    []OverlayStatus `json:"overlay,omitempty"`
	Gossip     *GossipStatus   `json:"gossip,omitempty"`
	Networks   []Network       `json:"networks"`
	Endpoints  EndpointCounts  `json:"endpoints"`
	Containers []Container     `json:"containers"`
	// Conflicts are problems between inputs (a run-time container shadowed
	// by the config, an address claimed twice), one sentence each.
	Conflicts []string `json:"conflicts"`
	// LastReconcile is when the last pass finished; LastError its error.
	LastReconcile time.Time `json:"last_reconcile"`
	LastError     string    `json:"last_error,omitempty"`
	// DNS counts the embedded DNS server's queries since the agent started.
	DNS DNSStats `json:"dns"`
}

// DNSStats are the embedded DNS server's counters (see docs/dns.md).
type DNSStats struct {
	// Attached counts the container namespaces it listens in.
	Attached int `json:"attached"`
	// Queries received.
	Queries uint64 `json:"queries"`
	// Local answered from the container's view (names, PTR, NODATA).
	Local uint64 `json:"local"`
	// NXDomain answered NXDOMAIN from the view, never forwarded (names on
	// other networks, removed containers).
	NXDomain uint64 `json:"nxdomain"`
	// Forwarded answered with an upstream's answer.
	Forwarded uint64 `json:"forwarded"`
	// Failed answered SERVFAIL: no upstream answered usefully in time.
	Failed uint64 `json:"failed"`
	// Rejected answered FORMERR, NOTIMP, REFUSED or BADVERS.
	Rejected uint64 `json:"rejected"`
	// Dropped got no answer (garbage, over the in-flight limit).
	Dropped uint64 `json:"dropped"`
	// TCPRetries are upstream answers truncated over UDP, asked again over
	// TCP.
	TCPRetries uint64 `json:"tcp_retries"`
}

// Peer is one cluster member: GET /v1/peers (and Status.Peers).
type Peer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is alive, suspect, dead or left.
	State string `json:"state"`
	// Records counts the member's live records in the gossip table.
	Records int `json:"records"`
	// LastSeen is when the member was last known alive.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// ReapAt is when a dead or departed member's records go.
	ReapAt time.Time `json:"reap_at,omitzero"`
	// Self marks this host.
	Self bool `json:"self,omitempty"`
	// KeyFingerprints are the fingerprints (config.KeyFingerprint) of the
	// member's gossip keys, the encrypting one first, as it announces them;
	// absent when unknown (no encryption, or an agent before they were
	// announced).
	KeyFingerprints []string `json:"key_fingerprints,omitempty"`
	// ClockOffsetMS is the member's clock minus this host's in
	// milliseconds, measured by gossip's probes; absent until measured.
	ClockOffsetMS *int64 `json:"clock_offset_ms,omitempty"`
}

// OverlayStatus is one overlay network's VXLAN side on this host.
type OverlayStatus struct {
	Network string `json:"network"`
	VXLAN   string `json:"vxlan"`
	VNI     uint32 `json:"vni"`
	Port    int    `json:"port"`
	MTU     int    `json:"mtu"`
	// RemoteEndpoints are the other hosts' endpoints programmed here;
	// Expected the kernel entries they need (FDB, neighbour, flood list)
	// and Programmed how many of those the last sync found or wrote.
	RemoteEndpoints int `json:"remote_endpoints"`
	Expected        int `json:"expected"`
	Programmed      int `json:"programmed"`
	// Synced is false until gossip is ready (see docs/overlay.md).
	Synced bool   `json:"synced"`
	Error  string `json:"error,omitempty"`
}

// GossipStatus are this host's gossip counters.
type GossipStatus struct {
	// Ready is false until this host has heard the cluster.
	Ready   bool `json:"ready"`
	Members int  `json:"members"`
	// Rejected counts refused messages (the three below);
	// InvalidRecords records of a known kind with bad fields.
	Rejected             uint64 `json:"rejected"`
	RejectedVTEP         uint64 `json:"rejected_vtep"`
	RejectedUnknownOwner uint64 `json:"rejected_unknown_owner"`
	RejectedMalformed    uint64 `json:"rejected_malformed"`
	InvalidRecords       uint64 `json:"invalid_records"`
	// Conflicts counts records the gossip table shadows.
	Conflicts     int `json:"conflicts"`
	LocalRecords  int `json:"local_records"`
	RemoteRecords int `json:"remote_records"`
	// KeyFingerprints name this host's gossip keys, the encrypting one
	// first (never the keys); absent without encryption.
	KeyFingerprints []string `json:"key_fingerprints,omitempty"`
}

// EndpointCounts counts endpoints on this host and on the others.
type EndpointCounts struct {
	Local  int `json:"local"`
	Remote int `json:"remote"`
}

// Network is one network on this host: GET /v1/networks.
type Network struct {
	Name    string `json:"name"`
	Driver  string `json:"driver"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway,omitempty"`
	IPRange string `json:"ip_range,omitempty"`
	// Subnet6, Gateway6 and IPRange6 are the IPv6 side (dual stack).
	Subnet6  string `json:"subnet6,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	IPRange6 string `json:"ip_range6,omitempty"`
	Internal bool   `json:"internal"`
	MTU      int    `json:"mtu,omitempty"`
	VNI      uint32 `json:"vni,omitempty"`
	// Device is the network's kernel device on this host: the bridge, or
	// the parent link of a macvlan/ipvlan network.
	Device string `json:"device"`
	// VXLAN is an overlay's VXLAN device, VXLANPort its UDP port.
	VXLAN     string `json:"vxlan,omitempty"`
	VXLANPort int    `json:"vxlan_port,omitempty"`
}

// Endpoint is one container interface: GET /v1/endpoints.
type Endpoint struct {
	Container string `json:"container"`
	Network   string `json:"network"`
	Host      string `json:"host"`
	IP        string `json:"ip"`
	// IP6 is the endpoint's IPv6 address on a network with subnet6.
	IP6 string `json:"ip6,omitempty"`
	MAC string `json:"mac,omitempty"`
	// VTEP is the underlay address of the host (overlay networks).
	VTEP string `json:"vtep,omitempty"`
	// Interface is the name inside the container (eth0…); HostInterface
	// the host end of its veth.
	Interface     string `json:"interface,omitempty"`
	HostInterface string `json:"host_interface,omitempty"`
	Netns         string `json:"netns,omitempty"`
	Local         bool   `json:"local"`
	// Runtime and RuntimeID name the container runtime that attached the
	// container (RuntimeCNI, RuntimeDocker) and its container ID there;
	// empty for vxmesh's own containers.
	Runtime   string `json:"runtime,omitempty"`
	RuntimeID string `json:"runtime_id,omitempty"`
	// Note says why a remote endpoint is not programmed on this host
	// (an address conflict, a dead host's stale record).
	Note string `json:"note,omitempty"`
}

// Container states.
const (
	StateOK      = "ok"      // as configured
	StatePending = "pending" // not reconciled yet
	StateError   = "error"   // see Error; retried with backoff
	StateHost    = "host"    // mode host: nothing of its own
)

// Container sources.
const (
	SourceConfig = "config"
	SourceAPI    = "api"
)

// Container is one container and how it is doing.
type Container struct {
	Name     string   `json:"name"`
	Netns    string   `json:"netns,omitempty"`
	Mode     string   `json:"mode,omitempty"`
	Networks []string `json:"networks,omitempty"`
	Source   string   `json:"source"`
	State    string   `json:"state"`
	Error    string   `json:"error,omitempty"`
	// Endpoints are its interfaces.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Ports are its published ports as the last pass put them in force.
	Ports []PortMapping `json:"ports,omitempty"`
}

// PortMapping is one published port: traffic to HostIP:HostPort goes to
// ContainerIP:ContainerPort.
type PortMapping struct {
	Proto string `json:"proto"`
	// HostIP is "" for every address of the host.
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      uint16 `json:"host_port"`
	ContainerIP   string `json:"container_ip"`
	ContainerPort uint16 `json:"container_port"`
}

// Ports are a container's published ports: GET /v1/containers/{name}/ports.
type Ports struct {
	Container string `json:"container"`
	// Ports are the mappings in force, sorted; empty while the container
	// is pending or when its ports are refused.
	Ports []PortMapping `json:"ports"`
	// Error says why the container's ports are refused (all of them: a
	// container gets every mapping it asks for or none).
	Error string `json:"error,omitempty"`
}

// ExecInfo tells `vxmesh exec` where a container lives:
// GET /v1/containers/{name}/exec.
type ExecInfo struct {
	Container string `json:"container"`
	// Netns is the namespace name ("" for mode host); NetnsPath the file
	// to setns(2) into.
	Netns     string `json:"netns,omitempty"`
	NetnsPath string `json:"netns_path"`
	// EtcDir holds the name files to bind-mount over /etc ("" for none).
	EtcDir string `json:"etc_dir,omitempty"`
}

// Removed answers DELETE /v1/containers/{name}.
type Removed struct {
	Removed string `json:"removed"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// ContainerSpec is a container as the API takes it (POST /v1/containers)
// and keeps it in the state file: the YAML fields of a config container,
// with the same names, as strings.
type ContainerSpec struct {
	Name       string            `json:"name"`
	Netns      string            `json:"netns,omitempty"`
	Networks   []string          `json:"networks,omitempty"`
	Mode       string            `json:"mode,omitempty"`
	IP         map[string]string `json:"ip,omitempty"`
	IP6        map[string]string `json:"ip6,omitempty"`
	Links      []string          `json:"links,omitempty"`
	Aliases    []string          `json:"aliases,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	DNS        []string          `json:"dns,omitempty"`
	DNSSearch  []string          `json:"dns_search,omitempty"`
	DNSOptions []string          `json:"dns_options,omitempty"`
	ExtraHosts []string          `json:"extra_hosts,omitempty"`
	Publish    []string          `json:"publish,omitempty"`
	PublishAll bool              `json:"publish_all,omitempty"`
	Expose     []string          `json:"expose,omitempty"`
}

// ToConfig parses the spec's strings into a config container. The error
// names the field, as "ip.web: ...".
func (s ContainerSpec) ToConfig() (config.Container, error) {
	c := config.Container{
		Name: s.Name, Netns: s.Netns, Networks: s.Networks, Mode: s.Mode,
		Aliases: s.Aliases, Hostname: s.Hostname, DNSSearch: s.DNSSearch, DNSOptions: s.DNSOptions,
		PublishAll: s.PublishAll,
	}
	if len(s.IP) > 0 {
		c.IP = map[string]netip.Addr{}
		for net, ip := range s.IP {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return c, fmt.Errorf("ip.%s: %q is not an IP address", net, ip)
			}
			c.IP[net] = a
		}
	}
	if len(s.IP6) > 0 {
		c.IP6 = map[string]netip.Addr{}
		for net, ip := range s.IP6 {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return c, fmt.Errorf("ip6.%s: %q is not an IP address", net, ip)
			}
			c.IP6[net] = a
		}
	}
	for i, l := range s.Links {
		ls, err := config.ParseLinkSpec(l)
		if err != nil {
			return c, fmt.Errorf("links[%d]: %v", i, err)
		}
		c.Links = append(c.Links, ls)
	}
	for i, d := range s.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return c, fmt.Errorf("dns[%d]: %q is not an IP address", i, d)
		}
		c.DNS = append(c.DNS, a)
	}
	for i, h := range s.ExtraHosts {
		e, err := config.ParseHostEntry(h)
		if err != nil {
			return c, fmt.Errorf("extra_hosts[%d]: %v", i, err)
		}
		c.ExtraHosts = append(c.ExtraHosts, e)
	}
	for i, p := range s.Publish {
		ps, err := config.ParsePortSpec(p)
		if err != nil {
			return c, fmt.Errorf("publish[%d]: %v", i, err)
		}
		c.Publish = append(c.Publish, ps)
	}
	for i, p := range s.Expose {
		e, err := config.ParseExposeSpec(p)
		if err != nil {
			return c, fmt.Errorf("expose[%d]: %v", i, err)
		}
		c.Expose = append(c.Expose, e)
	}
	return c, nil
}

// SpecFromConfig writes a config container as a spec.
func SpecFromConfig(c config.Container) ContainerSpec {
	s := ContainerSpec{
		Name: c.Name, Netns: c.Netns, Networks: c.Networks, Mode: c.Mode,
		Aliases: c.Aliases, Hostname: c.Hostname, DNSSearch: c.DNSSearch, DNSOptions: c.DNSOptions,
		PublishAll: c.PublishAll,
	}
	if len(c.IP) > 0 {
		s.IP = map[string]string{}
		for net, ip := range c.IP {
			s.IP[net] = ip.String()
		}
	}
	if len(c.IP6) > 0 {
		s.IP6 = map[string]string{}
		for net, ip := range c.IP6 {
			s.IP6[net] = ip.String()
		}
	}
	for _, l := range c.Links {
		s.Links = append(s.Links, l.String())
	}
	for _, d := range c.DNS {
		s.DNS = append(s.DNS, d.String())
	}
	for _, h := range c.ExtraHosts {
		s.ExtraHosts = append(s.ExtraHosts, h.String())
	}
	for _, p := range c.Publish {
		s.Publish = append(s.Publish, p.String())
	}
	for _, e := range c.Expose {
		b, _ := e.MarshalText()
		s.Expose = append(s.Expose, string(b))
	}
	return s
}
