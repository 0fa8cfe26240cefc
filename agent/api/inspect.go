package api

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Inspect is the kernel state vxmesh made on one host, read back from the
// kernel (not from the desired state), each piece tied to the container,
// network or peer host that caused it: GET /v1/inspect.
type Inspect struct {
	Host    string `json:"host"`
	Address string `json:"address,omitempty"`
	// ReadAt is when the kernel was read.
	ReadAt time.Time `json:"read_at"`
	// Bridges are the bridges of our networks with their ports, as
	// `brctl show` lists them.
	Bridges []InspectBridge `json:"bridges"`
	// VXLANs are the VXLAN devices of our overlay networks with their FDB
	// and neighbour entries.
	VXLANs []InspectVXLAN `json:"vxlans"`
	// Iptables are our chains (VXMESH-*) and the jumps into them from the
	// built-in chains, table by table.
	Iptables []InspectChain `json:"iptables"`
	// Containers are the container namespaces as seen from inside.
	Containers []InspectContainer `json:"containers"`
	// Problems are what the agent wants but the kernel lacks, and what
	// could not be read.
	Problems []string `json:"problems,omitempty"`
}

// Cause ties a piece of kernel state to what made vxmesh create it.
// It is embedded in every inspected item, so its fields appear inline.
type Cause struct {
	// Container is the local or remote container it belongs to.
	Container string `json:"container,omitempty"`
	// Network is the network it belongs to.
	Network string `json:"network,omitempty"`
	// Host is the peer host behind a remote entry.
	Host string `json:"host,omitempty"`
	// Unknown marks state the agent's current view does not explain:
	// stale, or made by someone else. vxmesh removes stale entries of its
	// own on the next pass and never touches what is not its own.
	Unknown bool `json:"unknown,omitempty"`
	// Note says more, in words.
	Note string `json:"note,omitempty"`
}

// String describes the cause in one phrase, e.g. "web2 on mesh, host h2",
// "peer h2 on mesh: flood list…", "UNKNOWN: not in the agent's view…".
func (c Cause) String() string {
	var parts []string
	who := ""
	switch {
	case c.Container != "":
		who = c.Container
		if c.Network != "" {
			who += " on " + c.Network
		}
		if c.Host != "" {
			who += ", host " + c.Host
		}
	case c.Host != "":
		who = "peer " + c.Host
		if c.Network != "" {
			who += " on " + c.Network
		}
	case c.Network != "":
		who = "network " + c.Network
	}
	if who != "" {
		parts = append(parts, who)
	}
	if c.Note != "" {
		parts = append(parts, c.Note)
	}
	s := strings.Join(parts, ": ")
	if c.Unknown {
		if s == "" {
			return "UNKNOWN"
		}
		return "UNKNOWN: " + s
	}
	return s
}

// InspectBridge is one bridge of ours.
type InspectBridge struct {
	Name string `json:"name"`
	// ID is the bridge id as brctl prints it: priority and MAC
	// ("8000.06cd9936a3c5"); empty when the kernel did not say.
	ID string `json:"id"`
	// STP is the bridge's spanning tree state (vxmesh leaves it off).
	STP   bool   `json:"stp"`
	MAC   string `json:"mac"`
	MTU   int    `json:"mtu"`
	Up    bool   `json:"up"`
	Alias string `json:"alias,omitempty"`
	// Addrs are the bridge's addresses (IPv6 link-local ones left out).
	Addrs []string `json:"addrs"`
	// Gateway is the network's gateway address, which Addrs should hold.
	Gateway string `json:"gateway,omitempty"`
	// Driver is the network's driver (bridge or overlay).
	Driver string        `json:"driver,omitempty"`
	Ports  []InspectPort `json:"ports"`
	Cause
}

// InspectPort is one interface enslaved to a bridge.
type InspectPort struct {
	Name string `json:"name"`
	// Kind is the link kind: veth, vxlan…
	Kind    string `json:"kind"`
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu"`
	Up      bool   `json:"up"`
	Hairpin bool   `json:"hairpin,omitempty"`
	Alias   string `json:"alias,omitempty"`
	Cause
}

// InspectVXLAN is one VXLAN device of ours, as `ip -d link show` describes
// it, with its entries.
type InspectVXLAN struct {
	Name     string `json:"name"`
	VNI      uint32 `json:"vni"`
	Local    string `json:"local"`
	Port     int    `json:"dstport"`
	Learning bool   `json:"learning"`
	Proxy    bool   `json:"proxy"`
	L2Miss   bool   `json:"l2miss,omitempty"`
	L3Miss   bool   `json:"l3miss,omitempty"`
	MTU      int    `json:"mtu"`
	MAC      string `json:"mac"`
	Master   string `json:"master,omitempty"`
	Up       bool   `json:"up"`
	Alias    string `json:"alias,omitempty"`
	// FDB are its entries as `bridge fdb show dev NAME` prints them: the
	// device's own (self) and the bridge's for the port (master).
	FDB []InspectFDB `json:"fdb"`
	// Neigh are its entries as `ip neigh show dev NAME` prints them.
	Neigh []InspectNeigh `json:"neigh"`
	Cause
}

// InspectFDB is one FDB entry of a VXLAN device.
type InspectFDB struct {
	// Line is the entry as `bridge fdb show dev DEV` prints it.
	Line string `json:"line"`
	MAC  string `json:"mac"`
	// Dst is the remote VTEP (self entries).
	Dst string `json:"dst,omitempty"`
	// Self marks the VXLAN device's own table; Master names the bridge
	// whose table the entry is in otherwise.
	Self   bool   `json:"self,omitempty"`
	Master string `json:"master,omitempty"`
	// State is "permanent", "static", "stale" or "" (dynamic).
	State string `json:"state,omitempty"`
	Cause
}

// InspectNeigh is one neighbour entry of a VXLAN device.
type InspectNeigh struct {
	// Line is the entry as `ip neigh show dev DEV` prints it.
	Line  string `json:"line"`
	IP    string `json:"ip"`
	MAC   string `json:"mac,omitempty"`
	State string `json:"state"`
	Cause
}

// InspectChain is one iptables chain: one of ours, or a built-in chain
// with only the jumps into ours.
type InspectChain struct {
	// Family is "ipv6" for an ip6tables chain, "" for iptables.
	Family string `json:"family,omitempty"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	// Builtin marks a built-in chain (only our jumps are listed).
	Builtin bool          `json:"builtin,omitempty"`
	Rules   []InspectRule `json:"rules"`
}

// InspectRule is one rule.
type InspectRule struct {
	// Rule is the rule as `iptables -t TABLE -S` prints it ("-A CHAIN …").
	Rule string `json:"rule"`
	Cause
}

// InspectContainer is one container namespace, read from inside.
type InspectContainer struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	// Runtime and RuntimeID name the runtime that attached the container
	// (cni, docker) and its container ID there; empty for vxmesh's own.
	Runtime   string `json:"runtime,omitempty"`
	RuntimeID string `json:"runtime_id,omitempty"`
	// Exists tells whether the namespace is there.
	Exists bool `json:"exists"`
	// SharedBy are the containers in mode container:NAME that share it.
	SharedBy   []string           `json:"shared_by,omitempty"`
	Interfaces []InspectInterface `json:"interfaces"`
	// Routes are its main routing table as `ip route` prints it.
	Routes []string `json:"routes"`
	// EtcDir holds its name files; Files says which are present.
	EtcDir string          `json:"etc_dir,omitempty"`
	Files  map[string]bool `json:"files,omitempty"`
}

// InspectInterface is one interface inside a container namespace.
type InspectInterface struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"`
	MAC   string   `json:"mac,omitempty"`
	MTU   int      `json:"mtu"`
	Up    bool     `json:"up"`
	Addrs []string `json:"addrs"`
	// Peer is the host end of a veth (or the parent of a macvlan child).
	Peer  string `json:"peer,omitempty"`
	Alias string `json:"alias,omitempty"`
	Cause
}

// Inspect reads back the kernel state the agent made.
func (c *Client) Inspect(ctx context.Context) (*Inspect, error) {
	var out Inspect
	return &out, c.do(ctx, http.MethodGet, "/v1/inspect", nil, &out)
}
