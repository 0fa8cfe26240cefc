package dockerplugin

import "encoding/json"

// The JSON shapes of libnetwork's remote driver and remote IPAM protocols,
// as dockerd 20.10 sends and reads them (libnetwork docs/remote.md,
// docs/ipam.md and the api packages of drivers/remote and ipams/remote).
// Field names are the JSON keys: Go's default encoding, no tags.

// Option keys libnetwork puts into the Options maps it sends.
const (
	// optGeneric holds the -o driver options of `docker network create` as
	// a string map.
	optGeneric = "com.docker.network.generic"
	// optPortMap holds the -p bindings as a list of wirePortBinding.
	optPortMap = "com.docker.network.portmap"
	// (com.docker.network.endpoint.exposedports, next to it, lists EXPOSE
	// as [{"Proto": 6, "Port": 80}]; -P turns those into bindings with
	// HostPort 0 already, so we do not read it.)
	// optGateway is the key of the gateway in RequestPool's Data and the
	// value of RequestAddressType when Docker asks for a gateway.
	optGateway = "com.docker.network.gateway"
	// optRequestAddressType says what an address is for.
	optRequestAddressType = "RequestAddressType"

	// OptNetwork names the vxmesh network, as a driver option
	// (-o vxmesh.network=NAME) or an IPAM option (--ipam-opt).
	OptNetwork = "vxmesh.network"
)

// contentType is what Docker's plugin helpers answer with.
const contentType = "application/vnd.docker.plugins.v1+json"

// errorResponse is the error body Docker's plugin client reads from any
// non-200 answer, for network and IPAM calls alike.
type errorResponse struct {
	Err string
}

// activateResponse answers /Plugin.Activate.
type activateResponse struct {
	Implements []string
}

// --- network driver ---

// capabilitiesResponse answers /NetworkDriver.GetCapabilities.
type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}

// ipamData is one entry of CreateNetwork's IPv4Data or IPv6Data. Pool and
// Gateway are CIDR strings ("10.200.0.1/16"); AuxAddresses maps names given
// with --aux-address to CIDR strings.
type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]string
}

// createNetworkRequest is /NetworkDriver.CreateNetwork.
type createNetworkRequest struct {
	NetworkID string
	// Options holds optGeneric (the -o map), com.docker.network.enable_ipv6
	// and, with --internal, com.docker.network.internal.
	Options  map[string]json.RawMessage
	IPv4Data []ipamData
	IPv6Data []ipamData
}

// networkRequest is /NetworkDriver.DeleteNetwork.
type networkRequest struct {
	NetworkID string
}

// endpointInterface is the interface part of CreateEndpoint: addresses as
// CIDR strings, MAC as "02:42:...".
type endpointInterface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

// createEndpointRequest is /NetworkDriver.CreateEndpoint.
type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]json.RawMessage
}

// createEndpointResponse answers CreateEndpoint. Interface stays nil unless
// we supply something Docker left empty (only the MAC, here).
type createEndpointResponse struct {
	Interface *endpointInterface `json:",omitempty"`
}

// endpointRequest is DeleteEndpoint, EndpointOperInfo, Leave and
// RevokeExternalConnectivity.
type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

// operInfoResponse answers EndpointOperInfo with an arbitrary map.
type operInfoResponse struct {
	Value map[string]any
}

// joinRequest is /NetworkDriver.Join. SandboxKey is the path of the
// container's network namespace as dockerd sees it (under its exec root,
// in dockerd's mount namespace).
type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]json.RawMessage
}

// interfaceName names the interface Docker moves into the sandbox.
type interfaceName struct {
	SrcName   string
	DstPrefix string
}

// joinResponse answers Join. (The protocol also has StaticRoutes,
// [{"Destination": CIDR, "RouteType": 0|1, "NextHop": IP}]; the gateway is
// all a vxmesh network needs.)
type joinResponse struct {
	InterfaceName         interfaceName
	Gateway               string `json:",omitempty"`
	GatewayIPv6           string `json:",omitempty"`
	DisableGatewayService bool   `json:",omitempty"`
}

// externalConnectivityRequest is /NetworkDriver.ProgramExternalConnectivity:
// Options are the sandbox's labels, holding optPortMap and optExposedPorts.
type externalConnectivityRequest struct {
	NetworkID  string
	EndpointID string
	Options    map[string]json.RawMessage
}

// wirePortBinding is libnetwork's types.PortBinding as JSON: Proto is the
// IP protocol number (6 tcp, 17 udp, 132 sctp); IP and HostIP are strings
// ("" when unset); HostPort 0 asks for a random port, HostPort..HostPortEnd
// for one port out of a range.
type wirePortBinding struct {
	Proto       int
	IP          string
	Port        int
	HostIP      string
	HostPort    int
	HostPortEnd int
}

// discoveryRequest is DiscoverNew and DiscoverDelete; type 1 is node
// discovery with {"Address": ..., "self": bool}.
type discoveryRequest struct {
	DiscoveryType int
	DiscoveryData json.RawMessage
}

// --- IPAM driver ---

// ipamCapabilitiesResponse answers /IpamDriver.GetCapabilities.
type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

// addressSpacesResponse answers /IpamDriver.GetDefaultAddressSpaces.
type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

// requestPoolRequest is /IpamDriver.RequestPool: Pool is --subnet, SubPool
// --ip-range, Options --ipam-opt; V6 asks for an IPv6 pool.
type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

// requestPoolResponse answers RequestPool. Data may hold optGateway.
type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string `json:",omitempty"`
}

// poolRequest is /IpamDriver.ReleasePool.
type poolRequest struct {
	PoolID string
}

// requestAddressRequest is /IpamDriver.RequestAddress: Address is the
// wanted address ("" for any), without a prefix length.
type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

// requestAddressResponse answers RequestAddress with a CIDR string.
type requestAddressResponse struct {
	Address string
	Data    map[string]string `json:",omitempty"`
}

// releaseAddressRequest is /IpamDriver.ReleaseAddress.
type releaseAddressRequest struct {
	PoolID  string
	Address string
}
