package dockerplugin

import (
	"context"
	"net"
	"net/netip"
)

// Backend is what the agent provides to the Docker plugin. Every method is
// idempotent (Docker retries, and replays after its own restarts) and keyed
// by Docker's IDs; the agent persists what it needs to answer after its
// own restart. Errors are shown to the Docker user, so they say what
// failed in user terms.
type Backend interface {
	// Networks lists the vxmesh networks Docker may use, from the agent's
	// last pass.
	Networks(ctx context.Context) ([]Network, error)

	// BindNetwork records that Docker network dockerID is the vxmesh
	// network named network. Binding the same pair again is a no-op.
	BindNetwork(ctx context.Context, dockerID, network string) error
	// UnbindNetwork forgets dockerID; unknown IDs are not an error.
	UnbindNetwork(ctx context.Context, dockerID string) error

	// ReserveAddress claims an address in a network, cluster-wide (the
	// same IPAM `vxmesh run` uses). It may wait for the network's address
	// block to settle, up to ctx's deadline.
	ReserveAddress(ctx context.Context, req AddressRequest) (netip.Addr, error)
	// ReleaseAddress gives an address back; an address not held is not an
	// error.
	ReleaseAddress(ctx context.Context, network string, addr netip.Addr) error

	// CreateEndpoint registers an endpoint (address, MAC) on a bound
	// network, without kernel state yet, and returns its MAC: ep.MAC when
	// Docker chose one, else one the agent chooses.
	CreateEndpoint(ctx context.Context, ep Endpoint) (net.HardwareAddr, error)
	// DeleteEndpoint forgets an endpoint and removes whatever Join and
	// PublishPorts left; unknown endpoints are not an error.
	DeleteEndpoint(ctx context.Context, dockerNetwork, endpointID string) error

	// Join creates the endpoint's veth pair: the host end plugged into the
	// network, the container end left in the agent's (= dockerd's) network
	// namespace under the returned name, for Docker to move into the
	// sandbox at sandboxKey.
	Join(ctx context.Context, req JoinRequest) (Joined, error)
	// Leave removes the veth pair (Docker has moved the container end back
	// or the sandbox is gone); a missing pair is not an error.
	Leave(ctx context.Context, dockerNetwork, endpointID string) error

	// PublishPorts makes ports the endpoint's published ports, replacing
	// any earlier list; an empty list unpublishes everything.
	PublishPorts(ctx context.Context, dockerNetwork, endpointID string, ports []PortBinding) error
}

// Network is what the plugin needs to know about one vxmesh network.
type Network struct {
	Name string
	// Driver is the config's driver (bridge, overlay, ...).
	Driver   string
	Subnet   netip.Prefix
	Gateway  netip.Addr
	Subnet6  netip.Prefix // invalid when the network has no IPv6
	Gateway6 netip.Addr
	// Internal networks get no gateway and no published ports.
	Internal bool
}

// AddressRequest asks for one address.
type AddressRequest struct {
	Network string
	// Want is the address asked for (--ip, --aux-address); invalid for any.
	Want netip.Addr
	// Range is where to allocate from (--ip-range); invalid for the
	// agent's own choice.
	Range netip.Prefix
	// V6 asks for an IPv6 address (from Subnet6).
	V6 bool
}

// Endpoint is a Docker endpoint as CreateEndpoint describes it.
type Endpoint struct {
	DockerNetwork string
	EndpointID    string
	// Addr and Addr6 carry the prefix length of the network.
	Addr  netip.Prefix
	Addr6 netip.Prefix
	// MAC is Docker's choice (--mac-address), nil when it left it to us.
	MAC net.HardwareAddr
}

// JoinRequest asks for an endpoint's interface.
type JoinRequest struct {
	DockerNetwork string
	EndpointID    string
	// SandboxKey is the container netns path in dockerd's mount namespace.
	SandboxKey string
}

// Joined is the interface Join made.
type Joined struct {
	// Name is the container end's name in the host namespace.
	Name string
	// Gateway and Gateway6 are the network's gateways (invalid on internal
	// networks or without IPv6).
	Gateway  netip.Addr
	Gateway6 netip.Addr
	// Internal: no default route, and Docker must not add docker_gwbridge.
	Internal bool
}

// PortBinding is one published port, as `docker run -p` asked for it.
type PortBinding struct {
	// Proto is "tcp", "udp" or "sctp".
	Proto string
	// Port is the container port.
	Port uint16
	// HostIP is the host address to listen on; invalid means all.
	HostIP netip.Addr
	// HostPort..HostPortEnd is the host port, or a range to pick one from;
	// 0 means a random port.
	HostPort    uint16
	HostPortEnd uint16
}
