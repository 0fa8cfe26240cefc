package dockerplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
)

// maxBody bounds a request body; libnetwork's largest (CreateNetwork with
// many aux addresses, a sandbox's labels) are a few KiB.
const maxBody = 1 << 20

// addressSpace is the one address space we report: pools are cluster-wide
// and chosen by network, so Docker's local/global split means nothing here.
const addressSpace = "vxmesh"

// dstPrefix is the name prefix Docker gives the moved interface (eth0, ...).
const dstPrefix = "eth"

// Plugin answers Docker's network and IPAM driver calls from a Backend.
type Plugin struct {
	backend Backend
	log     *slog.Logger
	mux     *http.ServeMux
}

// New returns a plugin over backend; log may be nil.
func New(backend Backend, log *slog.Logger) *Plugin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{backend: backend, log: log, mux: http.NewServeMux()}
	routes := map[string]http.HandlerFunc{
		"Plugin.Activate":                           handle(p, p.activate),
		"NetworkDriver.GetCapabilities":             handle(p, p.capabilities),
		"NetworkDriver.CreateNetwork":               handle(p, p.createNetwork),
		"NetworkDriver.DeleteNetwork":               handle(p, p.deleteNetwork),
		"NetworkDriver.CreateEndpoint":              handle(p, p.createEndpoint),
		"NetworkDriver.DeleteEndpoint":              handle(p, p.deleteEndpoint),
		"NetworkDriver.EndpointOperInfo":            handle(p, p.endpointOperInfo),
		"NetworkDriver.Join":                        handle(p, p.join),
		"NetworkDriver.Leave":                       handle(p, p.leave),
		"NetworkDriver.ProgramExternalConnectivity": handle(p, p.programExternal),
		"NetworkDriver.RevokeExternalConnectivity":  handle(p, p.revokeExternal),
		"NetworkDriver.DiscoverNew":                 handle(p, p.discover),
		"NetworkDriver.DiscoverDelete":              handle(p, p.discover),
		"IpamDriver.GetCapabilities":                handle(p, p.ipamCapabilities),
		"IpamDriver.GetDefaultAddressSpaces":        handle(p, p.addressSpaces),
		"IpamDriver.RequestPool":                    handle(p, p.requestPool),
		"IpamDriver.ReleasePool":                    handle(p, p.releasePool),
		"IpamDriver.RequestAddress":                 handle(p, p.requestAddress),
		"IpamDriver.ReleaseAddress":                 handle(p, p.releaseAddress),
	}
	for name, h := range routes {
		p.mux.Handle("POST /"+name, h)
	}
	p.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusNotFound, errorResponse{Err: "unknown call " + r.Method + " " + r.URL.Path})
	})
	return p
}

// ServeHTTP serves the protocol; unknown calls get 404, which Docker reads
// as "not implemented".
func (p *Plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// badRequest marks an error in what Docker sent (400), as opposed to one
// in carrying it out (500).
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }
func (e badRequest) Unwrap() error { return e.err }

// bad wraps a formatted message as a badRequest.
func bad(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

// handle adapts one call: decode Req, run fn, encode its answer or error.
func handle[Req, Resp any](p *Plugin, fn func(context.Context, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call := r.URL.Path[1:]
		var req Req
		if err := decode(http.MaxBytesReader(w, r.Body, maxBody), &req); err != nil {
			p.fail(w, call, badRequest{fmt.Errorf("decode %s: %w", call, err)})
			return
		}
		resp, err := fn(r.Context(), req)
		if err != nil {
			p.fail(w, call, err)
			return
		}
		p.log.Debug("docker plugin call", "call", call)
		write(w, http.StatusOK, resp)
	}
}

// decode reads one JSON value; an empty body or "null" leaves v zero
// (Docker sends "null" for calls without arguments).
func decode(r io.Reader, v any) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	return json.Unmarshal(body, v)
}

// fail answers an error the way Docker's plugin client reads it.
func (p *Plugin) fail(w http.ResponseWriter, call string, err error) {
	status := http.StatusInternalServerError
	if errors.As(err, new(badRequest)) {
		status = http.StatusBadRequest
	}
	p.log.Warn("docker plugin call failed", "call", call, "status", status, "err", err)
	write(w, status, errorResponse{Err: err.Error()})
}

// write encodes v as the answer.
func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// empty is the request of calls without arguments and the answer "{}".
type empty struct{}

func (p *Plugin) activate(context.Context, empty) (activateResponse, error) {
	return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
}

func (p *Plugin) capabilities(context.Context, empty) (capabilitiesResponse, error) {
	return capabilitiesResponse{Scope: "local", ConnectivityScope: "global"}, nil
}

func (p *Plugin) createNetwork(ctx context.Context, req createNetworkRequest) (empty, error) {
	if req.NetworkID == "" {
		return empty{}, bad("create network: no NetworkID")
	}
	name, err := genericOption(req.Options, OptNetwork)
	if err != nil {
		return empty{}, badRequest{err}
	}
	nets, err := p.backend.Networks(ctx)
	if err != nil {
		return empty{}, fmt.Errorf("list vxmesh networks: %w", err)
	}
	n, err := chooseNetwork(nets, name, req.IPv4Data, req.IPv6Data)
	if err != nil {
		return empty{}, err
	}
	if err := p.backend.BindNetwork(ctx, req.NetworkID, n.Name); err != nil {
		return empty{}, fmt.Errorf("bind docker network %.12s to vxmesh network %q: %w", req.NetworkID, n.Name, err)
	}
	return empty{}, nil
}

func (p *Plugin) deleteNetwork(ctx context.Context, req networkRequest) (empty, error) {
	if req.NetworkID == "" {
		return empty{}, bad("delete network: no NetworkID")
	}
	if err := p.backend.UnbindNetwork(ctx, req.NetworkID); err != nil {
		return empty{}, fmt.Errorf("unbind docker network %.12s: %w", req.NetworkID, err)
	}
	return empty{}, nil
}

// checkEndpoint requires both IDs of an endpoint call.
func checkEndpoint(call, network, endpoint string) error {
	if network == "" || endpoint == "" {
		return bad("%s: NetworkID and EndpointID are required", call)
	}
	return nil
}

func (p *Plugin) createEndpoint(ctx context.Context, req createEndpointRequest) (createEndpointResponse, error) {
	if err := checkEndpoint("create endpoint", req.NetworkID, req.EndpointID); err != nil {
		return createEndpointResponse{}, err
	}
	ep, err := endpointOf(req)
	if err != nil {
		return createEndpointResponse{}, err
	}
	mac, err := p.backend.CreateEndpoint(ctx, ep)
	if err != nil {
		return createEndpointResponse{}, fmt.Errorf("create endpoint %.12s: %w", req.EndpointID, err)
	}
	// libnetwork refuses an answer that changes what it supplied: only a
	// MAC it left empty may come back.
	if ep.MAC == nil && len(mac) > 0 {
		return createEndpointResponse{Interface: &endpointInterface{MacAddress: mac.String()}}, nil
	}
	return createEndpointResponse{}, nil
}

// endpointOf checks and converts CreateEndpoint's interface.
func endpointOf(req createEndpointRequest) (Endpoint, error) {
	ep := Endpoint{DockerNetwork: req.NetworkID, EndpointID: req.EndpointID}
	iface := req.Interface
	if iface == nil {
		iface = &endpointInterface{}
	}
	var err error
	if iface.Address != "" {
		if ep.Addr, err = netip.ParsePrefix(iface.Address); err != nil || !ep.Addr.Addr().Is4() {
			return Endpoint{}, bad("create endpoint: address %q is not an IPv4 CIDR", iface.Address)
		}
	}
	if iface.AddressIPv6 != "" {
		if ep.Addr6, err = netip.ParsePrefix(iface.AddressIPv6); err != nil || !ep.Addr6.Addr().Is6() || ep.Addr6.Addr().Is4In6() {
			return Endpoint{}, bad("create endpoint: address %q is not an IPv6 CIDR", iface.AddressIPv6)
		}
	}
	if !ep.Addr.IsValid() && !ep.Addr6.IsValid() {
		return Endpoint{}, bad("create endpoint: no address: create the network with --ipam-driver vxmesh")
	}
	if iface.MacAddress != "" {
		if ep.MAC, err = net.ParseMAC(iface.MacAddress); err != nil || len(ep.MAC) != 6 {
			return Endpoint{}, bad("create endpoint: MAC %q is not an Ethernet address", iface.MacAddress)
		}
	}
	return ep, nil
}

func (p *Plugin) deleteEndpoint(ctx context.Context, req endpointRequest) (empty, error) {
	if err := checkEndpoint("delete endpoint", req.NetworkID, req.EndpointID); err != nil {
		return empty{}, err
	}
	if err := p.backend.DeleteEndpoint(ctx, req.NetworkID, req.EndpointID); err != nil {
		return empty{}, fmt.Errorf("delete endpoint %.12s: %w", req.EndpointID, err)
	}
	return empty{}, nil
}

func (p *Plugin) endpointOperInfo(_ context.Context, req endpointRequest) (operInfoResponse, error) {
	if err := checkEndpoint("endpoint info", req.NetworkID, req.EndpointID); err != nil {
		return operInfoResponse{}, err
	}
	// Docker shows nothing of a remote driver's map that it can use (it
	// type-asserts libnetwork's own Go types), so the agent's views
	// (`vxmesh endpoints`, `vxmesh port`) are where the details live.
	return operInfoResponse{Value: map[string]any{}}, nil
}

func (p *Plugin) join(ctx context.Context, req joinRequest) (joinResponse, error) {
	if err := checkEndpoint("join", req.NetworkID, req.EndpointID); err != nil {
		return joinResponse{}, err
	}
	if req.SandboxKey == "" {
		return joinResponse{}, bad("join: no SandboxKey")
	}
	j, err := p.backend.Join(ctx, JoinRequest{DockerNetwork: req.NetworkID, EndpointID: req.EndpointID, SandboxKey: req.SandboxKey})
	if err != nil {
		return joinResponse{}, fmt.Errorf("join endpoint %.12s: %w", req.EndpointID, err)
	}
	if j.Name == "" {
		return joinResponse{}, fmt.Errorf("join endpoint %.12s: backend made no interface", req.EndpointID)
	}
	resp := joinResponse{InterfaceName: interfaceName{SrcName: j.Name, DstPrefix: dstPrefix}}
	if j.Internal {
		// No default route, and no docker_gwbridge in its place.
		resp.DisableGatewayService = true
		return resp, nil
	}
	if j.Gateway.IsValid() {
		resp.Gateway = j.Gateway.String()
	}
	if j.Gateway6.IsValid() {
		resp.GatewayIPv6 = j.Gateway6.String()
	}
	if resp.Gateway == "" && resp.GatewayIPv6 == "" {
		resp.DisableGatewayService = true
	}
	return resp, nil
}

func (p *Plugin) leave(ctx context.Context, req endpointRequest) (empty, error) {
	if err := checkEndpoint("leave", req.NetworkID, req.EndpointID); err != nil {
		return empty{}, err
	}
	if err := p.backend.Leave(ctx, req.NetworkID, req.EndpointID); err != nil {
		return empty{}, fmt.Errorf("leave endpoint %.12s: %w", req.EndpointID, err)
	}
	return empty{}, nil
}

func (p *Plugin) programExternal(ctx context.Context, req externalConnectivityRequest) (empty, error) {
	if err := checkEndpoint("publish ports", req.NetworkID, req.EndpointID); err != nil {
		return empty{}, err
	}
	ports, err := portBindings(req.Options)
	if err != nil {
		return empty{}, badRequest{err}
	}
	if err := p.backend.PublishPorts(ctx, req.NetworkID, req.EndpointID, ports); err != nil {
		return empty{}, fmt.Errorf("publish ports of endpoint %.12s: %w", req.EndpointID, err)
	}
	return empty{}, nil
}

func (p *Plugin) revokeExternal(ctx context.Context, req endpointRequest) (empty, error) {
	if err := checkEndpoint("unpublish ports", req.NetworkID, req.EndpointID); err != nil {
		return empty{}, err
	}
	if err := p.backend.PublishPorts(ctx, req.NetworkID, req.EndpointID, nil); err != nil {
		return empty{}, fmt.Errorf("unpublish ports of endpoint %.12s: %w", req.EndpointID, err)
	}
	return empty{}, nil
}

// discover acknowledges node discovery: vxmesh finds its peers by gossip.
func (p *Plugin) discover(context.Context, discoveryRequest) (empty, error) {
	return empty{}, nil
}

func (p *Plugin) ipamCapabilities(context.Context, empty) (ipamCapabilitiesResponse, error) {
	// Pools are named by config and addresses kept by the agent's state,
	// so nothing needs replaying after a dockerd restart.
	return ipamCapabilitiesResponse{}, nil
}

func (p *Plugin) addressSpaces(context.Context, empty) (addressSpacesResponse, error) {
	return addressSpacesResponse{LocalDefaultAddressSpace: addressSpace, GlobalDefaultAddressSpace: addressSpace}, nil
}

func (p *Plugin) requestPool(ctx context.Context, req requestPoolRequest) (requestPoolResponse, error) {
	nets, err := p.backend.Networks(ctx)
	if err != nil {
		return requestPoolResponse{}, fmt.Errorf("list vxmesh networks: %w", err)
	}
	return choosePool(nets, req)
}

func (p *Plugin) releasePool(_ context.Context, req poolRequest) (empty, error) {
	// Pools are the config's networks: nothing to give back.
	if _, err := parsePoolID(req.PoolID); err != nil {
		return empty{}, badRequest{err}
	}
	return empty{}, nil
}

// poolNetworkOf resolves a pool ID to its network.
func (p *Plugin) poolNetworkOf(ctx context.Context, id string) (poolID, Network, error) {
	pid, err := parsePoolID(id)
	if err != nil {
		return poolID{}, Network{}, badRequest{err}
	}
	nets, err := p.backend.Networks(ctx)
	if err != nil {
		return poolID{}, Network{}, fmt.Errorf("list vxmesh networks: %w", err)
	}
	n, err := findNetwork(nets, pid.Network)
	if err != nil {
		return poolID{}, Network{}, err
	}
	if !subnetOf(n, pid.V6).IsValid() {
		return poolID{}, Network{}, fmt.Errorf("vxmesh network %q has no IPv6 subnet", n.Name)
	}
	return pid, n, nil
}

// parseAddrArg parses an address Docker passed ("" is none); Docker 20.10
// sends it bare, but a CIDR is accepted too.
func parseAddrArg(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, bad("address %q is not an IP address", s)
	}
	return pfx.Addr().Unmap(), nil
}

func (p *Plugin) requestAddress(ctx context.Context, req requestAddressRequest) (requestAddressResponse, error) {
	pid, n, err := p.poolNetworkOf(ctx, req.PoolID)
	if err != nil {
		return requestAddressResponse{}, err
	}
	want, err := parseAddrArg(req.Address)
	if err != nil {
		return requestAddressResponse{}, err
	}
	subnet := subnetOf(n, pid.V6)
	if req.Options[optRequestAddressType] == optGateway {
		gw, err := gatewayAddress(n, pid.V6, want)
		if err != nil {
			return requestAddressResponse{}, err
		}
		return requestAddressResponse{Address: gw.String()}, nil
	}
	if want.IsValid() {
		if !subnet.Contains(want) {
			return requestAddressResponse{}, fmt.Errorf("address %s is not in vxmesh network %q's subnet %s", want, n.Name, subnet)
		}
		if want == gatewayOf(n, pid.V6) {
			return requestAddressResponse{}, fmt.Errorf("address %s is vxmesh network %q's gateway", want, n.Name)
		}
	}
	addr, err := p.backend.ReserveAddress(ctx, AddressRequest{Network: n.Name, Want: want, Range: pid.Range, V6: pid.V6})
	if err != nil {
		return requestAddressResponse{}, fmt.Errorf("reserve an address in vxmesh network %q: %w", n.Name, err)
	}
	return requestAddressResponse{Address: netip.PrefixFrom(addr, subnet.Bits()).String()}, nil
}

func (p *Plugin) releaseAddress(ctx context.Context, req releaseAddressRequest) (empty, error) {
	pid, n, err := p.poolNetworkOf(ctx, req.PoolID)
	if err != nil {
		return empty{}, err
	}
	addr, err := parseAddrArg(req.Address)
	if err != nil {
		return empty{}, err
	}
	if !addr.IsValid() {
		return empty{}, bad("release address: no Address")
	}
	if addr == gatewayOf(n, pid.V6) {
		return empty{}, nil // the network's, never reserved
	}
	if err := p.backend.ReleaseAddress(ctx, n.Name, addr); err != nil {
		return empty{}, fmt.Errorf("release %s in vxmesh network %q: %w", addr, n.Name, err)
	}
	return empty{}, nil
}
