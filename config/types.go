// Package config holds the host configuration of a vxmesh agent: the YAML
// schema of ../CONTRACT.md as Go types, its defaults, and strict validation
// whose errors name the file, line, column and field.
//
// The package is pure: it never touches the kernel. Values that have a
// syntax of their own (addresses, prefixes, durations, port specs, extra
// hosts) are typed here and parse themselves through encoding.TextUnmarshaler,
// so a loaded Config holds checked values, not strings.
package config

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"
)

// Defaults for fields the YAML may leave out.
const (
	DefaultStateDir   = "/var/lib/vxmesh"
	DefaultSocket     = "/run/vxmesh/vxmesh.sock"
	DefaultBindPort   = 7946
	DefaultReapAfter  = 60 * time.Second
	DefaultDriver     = DriverBridge
	DefaultVXLANPort  = 4789
	DefaultBridgeMTU  = 1500
	MaxVNI            = 1<<24 - 1
	MaxDeviceNameLen  = 15 // IFNAMSIZ - 1
	VXLANOverheadIPv4 = 50
	VXLANOverheadIPv6 = 70
)

// Network drivers.
const (
	DriverBridge  = "bridge"
	DriverOverlay = "overlay"
	DriverMacvlan = "macvlan"
	DriverIPvlan  = "ipvlan"
)

// Container modes besides a list of networks.
const (
	ModeHost      = "host"
	ModeNone      = "none"
	ModeContainer = "container:" // prefix; followed by the other container's name
)

// Config is one host's configuration, as read from its YAML file.
type Config struct {
	// Host identifies this host in the cluster.
	Host Host `yaml:"host"`
	// StateDir keeps what must survive a restart (allocations, run-time
	// containers, chosen ports). Default DefaultStateDir. A relative path is
	// relative to the config file's directory (Load makes it so).
	StateDir string `yaml:"state_dir"`
	// API is the agent's local control socket.
	API API `yaml:"api"`
	// Metrics is the optional Prometheus endpoint.
	Metrics Metrics `yaml:"metrics"`
	// Docker is the optional Docker network and IPAM plugin.
	Docker Docker `yaml:"docker"`
	// Cluster configures gossip with the other hosts.
	Cluster Cluster `yaml:"cluster"`
	// Networks are the networks this host takes part in.
	Networks []Network `yaml:"networks"`
	// Containers are the containers (named network namespaces) this host runs.
	Containers []Container `yaml:"containers"`

	// File is the path the config was loaded from, for messages.
	File string `yaml:"-"`

	// pos records where each field stands in File (nil for a config built
	// in code), so checks after loading can still name lines.
	pos *positions
}

// Host identifies this host.
type Host struct {
	// Name is unique in the cluster (ignoring case), a DNS name. Required.
	Name string `yaml:"name"`
	// Address is the underlay address: gossip and VXLAN source (VTEP).
	// IPv4 or IPv6 (unicast, no zone), unique in the cluster, outside every
	// bridge and overlay subnet. Required.
	Address netip.Addr `yaml:"address"`
}

// API configures the agent's HTTP API on a unix socket.
type API struct {
	// Socket is the unix socket path, at most 107 bytes. Default
	// DefaultSocket; a relative path is relative to the config file's
	// directory.
	Socket string `yaml:"socket"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is a host:port to serve /metrics on ("127.0.0.1:9469",
	// ":9469"); empty means off.
	Listen string `yaml:"listen"`
}

// Cluster configures gossip.
type Cluster struct {
	// BindPort is the memberlist port (TCP and UDP) on Host.Address,
	// 1..65535. Default DefaultBindPort.
	BindPort int `yaml:"bind_port"`
	// Join lists peers as "IP" or "IP:PORT" ("[IPv6]:PORT"); a missing port
	// means BindPort. Each must be of Host.Address's family. Default: none
	// (the first host of a cluster).
	Join []JoinAddr `yaml:"join"`
	// SecretFile names a file holding one or more base64 gossip keys, one per
	// line, each decoding to 16, 24 or 32 bytes. The first is used to encrypt;
	// all are accepted to decrypt (which is how keys are rotated). Blank
	// lines and lines starting with '#' are skipped. A relative path is
	// relative to the config file's directory. Optional: without it gossip
	// is neither encrypted nor authenticated.
	SecretFile string `yaml:"secret_file"`
	// ReapAfter is how long a silent host's endpoints stay programmed, a Go
	// duration ("60s", "2m") more than 0. Default DefaultReapAfter.
	ReapAfter Duration `yaml:"reap_after"`

	// Keys are the decoded keys of SecretFile, filled by validation.
	Keys [][]byte `yaml:"-"`
}

// Network is one network this host takes part in.
type Network struct {
	// Name is unique on the host (and, for overlays, means the same network
	// on every host): up to 64 letters, digits, '_', '.' and '-', starting
	// with a letter or digit. Required.
	Name string `yaml:"name"`
	// Driver is bridge, overlay, macvlan or ipvlan. Default bridge.
	Driver string `yaml:"driver"`
	// Subnet is the network's IPv4 prefix: a network address (host bits
	// zero), /30 or larger, overlapping no other network of the host.
	// Required unless Subnet6 is set (an IPv6-only network).
	Subnet netip.Prefix `yaml:"subnet"`
	// Gateway is the address on the host side, inside Subnet and neither
	// its network nor its broadcast address. Default: first address of
	// Subnet.
	Gateway netip.Addr `yaml:"gateway"`
	// IPRange is where this host allocates addresses from: a network
	// address inside Subnet. Default: the whole subnet (bridge, macvlan) or
	// a block claimed through gossip (overlay). Static addresses (Container.IP)
	// may lie outside it, which is how they avoid dynamic ones.
	IPRange netip.Prefix `yaml:"ip_range"`
	// Subnet6 is the network's IPv6 prefix (dual-stack, or IPv6 only
	// without Subnet): a network address, /126 or larger, overlapping no
	// other network of the host. Optional.
	Subnet6 netip.Prefix `yaml:"subnet6"`
	// Gateway6 is the IPv6 address on the host side, inside Subnet6 and not
	// its network address (the subnet-router anycast address). Default:
	// first address of Subnet6.
	Gateway6 netip.Addr `yaml:"gateway6"`
	// IPRange6 is where this host allocates IPv6 addresses from, as
	// IPRange for IPv4: a network address inside Subnet6.
	IPRange6 netip.Prefix `yaml:"ip_range6"`
	// Bridge is the bridge device name (bridge and overlay only), at most
	// 15 bytes, unique on the host. Default BridgeName(), which SetDefaults
	// fills in.
	Bridge string `yaml:"bridge"`
	// Internal means no outbound NAT and no published ports.
	Internal bool `yaml:"internal"`
	// MTU of the bridge and container interfaces, 68..65535. Default
	// DefaultBridgeMTU for bridge networks; 0 (derived) for overlays (the
	// underlay MTU minus the VXLAN overhead) and macvlan/ipvlan (the
	// parent's).
	MTU int `yaml:"mtu"`
	// VNI is the VXLAN network identifier (overlay only), 1..MaxVNI, unique
	// in the cluster. Default DefaultVNI(Name).
	VNI uint32 `yaml:"vni"`
	// VXLANPort is the VXLAN UDP port (overlay only), 1..65535. Default
	// DefaultVXLANPort.
	VXLANPort int `yaml:"vxlan_port"`
	// Parent is the parent link of a macvlan or ipvlan network. Required for
	// those drivers, refused for the others.
	Parent string `yaml:"parent"`
}

// Container is one container: a named network namespace and its interfaces.
type Container struct {
	// Name is the container's DNS name on its networks; unique on the host
	// (ignoring case) and, for overlay networks, across the cluster.
	// Required.
	Name string `yaml:"name"`
	// Netns is the named network namespace to use (no '/', no spaces),
	// unique on the host. Default: Name (SetDefaults fills it in, except for
	// mode host and container:OTHER, which may not set it).
	Netns string `yaml:"netns"`
	// Networks the container is attached to, one interface each (eth0, eth1…
	// in this order). Exclusive with Mode.
	Networks []string `yaml:"networks"`
	// Mode is host, none or container:OTHER (share OTHER's namespace, and
	// with it its hostname, DNS settings and hosts file). Exclusive with
	// Networks. Default: none when Networks is empty.
	Mode string `yaml:"mode"`
	// IP holds static addresses per network name; each network must be one
	// of Networks, the address inside its subnet, not its gateway and not
	// another container's.
	IP map[string]netip.Addr `yaml:"ip"`
	// IP6 holds static IPv6 addresses per network name, as IP does for
	// IPv4: inside the network's Subnet6, not its Gateway6, not another
	// container's.
	IP6 map[string]netip.Addr `yaml:"ip6"`
	// Aliases are extra DNS names on the container's networks.
	Aliases []string `yaml:"aliases"`
	// Hostname goes to /etc/netns/NAME/hostname. Default: Name.
	Hostname string `yaml:"hostname"`
	// DNS servers to forward to; default: the host's resolvers.
	DNS []netip.Addr `yaml:"dns"`
	// DNSSearch domains for resolv.conf.
	DNSSearch []string `yaml:"dns_search"`
	// DNSOptions are resolv.conf options (e.g. "ndots:2"), like --dns-option.
	DNSOptions []string `yaml:"dns_options"`
	// ExtraHosts are "NAME:IP" lines for /etc/hosts, like --add-host.
	ExtraHosts []HostEntry `yaml:"extra_hosts"`
	// Links are legacy `--link NAME[:ALIAS]` entries: the linked container's
	// current addresses (both families) go into this container's hosts file
	// under NAME and ALIAS. The linked container must share a network with
	// this one (on an overlay it may run on another host). DNS is the
	// recommended way; links exist for old tutorials and compose files.
	Links []LinkSpec `yaml:"links"`
	// Publish lists published ports in `docker run -p` syntax. A host port
	// may be published once per address and protocol on the host (0.0.0.0
	// overlaps every address), not on the agent's own ports (gossip, VXLAN,
	// metrics), not on loopback host addresses, and only from a
	// non-internal bridge or overlay network (an IPv6 host address needs a
	// network with Subnet6).
	Publish []PortSpec `yaml:"publish"`
	// PublishAll publishes every port in Expose on a random host port (-P).
	PublishAll bool `yaml:"publish_all"`
	// Expose lists ports ("80", "53/udp", "8000-8010"; YAML integers too)
	// for PublishAll.
	Expose []ExposeSpec `yaml:"expose"`
}

// NetnsName is the container's namespace name: Netns, or Name when unset.
func (c *Container) NetnsName() string {
	if c.Netns != "" {
		return c.Netns
	}
	return c.Name
}

// HostnameOrName is the container's hostname: Hostname, or Name when unset.
func (c *Container) HostnameOrName() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	return c.Name
}

// JoinsContainer reports the other container's name for mode container:OTHER.
func (c *Container) JoinsContainer() (string, bool) {
	if len(c.Mode) > len(ModeContainer) && c.Mode[:len(ModeContainer)] == ModeContainer {
		return c.Mode[len(ModeContainer):], true
	}
	return "", false
}

// DefaultVNI derives a stable VNI from a network name (FNV-1a, folded into
// 1..MaxVNI), so the same name gives the same VNI on every host.
func DefaultVNI(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()%MaxVNI + 1
}

// BridgeName is the bridge device of the network: Bridge if set, else
// "br-NAME" for bridge networks and "vxb-NAME" for overlays, shortened with a
// hash when the name would pass the kernel's 15 bytes.
func (n *Network) BridgeName() string {
	if n.Bridge != "" {
		return n.Bridge
	}
	prefix := "br-"
	if n.Driver == DriverOverlay {
		prefix = "vxb-"
	}
	return ShortName(prefix, n.Name)
}

// VXLANName is the VXLAN device of an overlay network: "vx-VNI".
func (n *Network) VXLANName() string {
	return ShortName("vx-", uitoa(uint64(n.VNI)))
}

// ShortName returns prefix+name when it fits a device name, otherwise
// prefix plus a stable hash of name.
func ShortName(prefix, name string) string {
	if len(prefix)+len(name) <= MaxDeviceNameLen {
		return prefix + name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	b := fmt.Sprintf("%08x", h.Sum32())
	keep := MaxDeviceNameLen - len(prefix) - len(b) - 1
	if keep < 0 {
		keep = 0
	}
	if keep > len(name) {
		keep = len(name)
	}
	return prefix + name[:keep] + "-" + b
}

func uitoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// Duration is a time.Duration written as Go duration text ("60s", "2m").
type Duration time.Duration

// UnmarshalText parses a Go duration; negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return errDuration(string(b))
	}
	if v < 0 {
		return errNegativeDuration(string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as Go duration text.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// NetworkByName returns the named network, or nil.
func (c *Config) NetworkByName(name string) *Network {
	for i := range c.Networks {
		if c.Networks[i].Name == name {
			return &c.Networks[i]
		}
	}
	return nil
}

// ContainerByName returns the named container, or nil.
func (c *Config) ContainerByName(name string) *Container {
	for i := range c.Containers {
		if c.Containers[i].Name == name {
			return &c.Containers[i]
		}
	}
	return nil
}
