package dockerbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/dockerplugin"
)

// IfName is the key's interface name of every Docker attachment: Docker's
// DstPrefix, which it completes to eth0, eth1… in the sandbox.
const IfName = "eth"

// maxRangeTries bounds the search of an --ip-range for a free address.
const maxRangeTries = 1 << 16

// nameTimeout bounds the engine lookup of a container's name in Join; the
// fallback name is used after it.
const nameTimeout = 3 * time.Second

// Engine names the container behind a Docker endpoint, from the engine's
// API. It is optional: without it attachments get names from endpoint IDs.
type Engine interface {
	// Container returns the container's ID (empty when the engine does
	// not say yet) and name.
	Container(ctx context.Context, dockerNetwork, endpointID string) (id, name string, err error)
}

// Backend is dockerplugin.Backend over the agent's attach path.
type Backend struct {
	att    pass.Attacher
	path   string
	engine Engine
	log    *slog.Logger

	mu sync.Mutex
	st state
}

var _ dockerplugin.Backend = (*Backend)(nil)

// New returns a backend over att keeping its file in stateDir; engine and
// log may be nil.
func New(att pass.Attacher, stateDir string, engine Engine, log *slog.Logger) (*Backend, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(stateDir, StateFile)
	st, err := loadState(path)
	if err != nil {
		return nil, err
	}
	return &Backend{att: att, path: path, engine: engine, log: log, st: st}, nil
}

// Networks lists the agent's bridge and overlay networks (macvlan and
// ipvlan children cannot be handed to Docker as a veth end).
func (b *Backend) Networks(context.Context) ([]dockerplugin.Network, error) {
	var out []dockerplugin.Network
	for _, n := range b.att.Networks() {
		if d, ok := pluginNetwork(n); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// pluginNetwork converts a config network, if Docker can use it.
func pluginNetwork(n config.Network) (dockerplugin.Network, bool) {
	driver := n.Driver
	if driver == "" {
		driver = config.DefaultDriver
	}
	if driver != config.DriverBridge && driver != config.DriverOverlay {
		return dockerplugin.Network{}, false
	}
	gw := n.Gateway
	if !gw.IsValid() && n.Subnet.IsValid() {
		gw = n.Subnet.Masked().Addr().Next()
	}
	return dockerplugin.Network{Name: n.Name, Driver: driver, Subnet: n.Subnet.Masked(), Gateway: gw, Internal: n.Internal}, true
}

// network finds a usable network by name.
func (b *Backend) network(name string) (dockerplugin.Network, error) {
	for _, n := range b.att.Networks() {
		if n.Name == name {
			if d, ok := pluginNetwork(n); ok {
				return d, nil
			}
			return dockerplugin.Network{}, fmt.Errorf("vxmesh network %q is a %s network: Docker can use bridge and overlay networks", name, n.Driver)
		}
	}
	return dockerplugin.Network{}, fmt.Errorf("vxmesh network %q is no longer in the agent's config", name)
}

// update changes the state under the lock and saves it.
func (b *Backend) update(fn func(*state)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(&b.st)
	return b.st.save(b.path)
}

// endpoint returns a copy of an endpoint's record.
func (b *Backend) endpoint(id string) (endpoint, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.st.Endpoints[id]
	e.Aliases = append([]string(nil), e.Aliases...)
	e.Ports = append([]api.PortRequest(nil), e.Ports...)
	return e, ok
}

// BindNetwork records a Docker network's vxmesh network.
func (b *Backend) BindNetwork(_ context.Context, dockerID, network string) error {
	if _, err := b.network(network); err != nil {
		return err
	}
	b.mu.Lock()
	prev, ok := b.st.Networks[dockerID]
	b.mu.Unlock()
	if ok && prev == network {
		return nil
	}
	if ok {
		return fmt.Errorf("docker network %.12s is already vxmesh network %q", dockerID, prev)
	}
	return b.update(func(st *state) { st.Networks[dockerID] = network })
}

// UnbindNetwork forgets a Docker network.
func (b *Backend) UnbindNetwork(_ context.Context, dockerID string) error {
	b.mu.Lock()
	_, ok := b.st.Networks[dockerID]
	b.mu.Unlock()
	if !ok {
		return nil
	}
	return b.update(func(st *state) { delete(st.Networks, dockerID) })
}

// ReserveAddress holds an address through the agent's IPAM; with a range
// and no wish it tries the range's addresses in order.
func (b *Backend) ReserveAddress(ctx context.Context, req dockerplugin.AddressRequest) (netip.Addr, error) {
	if req.Want.IsValid() || !req.Range.IsValid() {
		return b.reserve(ctx, req.Network, req.Want, req.V6)
	}
	n, err := b.network(req.Network)
	if err != nil {
		return netip.Addr{}, err
	}
	r := req.Range.Masked()
	var last error
	tries := 0
	for a := r.Addr(); r.Contains(a) && tries < maxRangeTries; a = a.Next() {
		if skipInRange(n, r, a) {
			continue
		}
		tries++
		got, err := b.reserve(ctx, req.Network, a, req.V6)
		if err == nil {
			return got, nil
		}
		if ctx.Err() != nil {
			return netip.Addr{}, ctx.Err()
		}
		last = err
	}
	return netip.Addr{}, fmt.Errorf("no free address in ip range %s (last: %v)", r, last)
}

// ipamWait bounds how long a reservation waits for the overlay's address
// block (a fresh agent that has not heard the cluster yet), within the
// call's own deadline.
const ipamWait = 20 * time.Second

// reserve asks the agent's IPAM, waiting while the overlay's cluster IPAM
// has no block yet: Docker's call then succeeds a moment later instead of
// failing `docker run`.
func (b *Backend) reserve(ctx context.Context, network string, want netip.Addr, v6 bool) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, ipamWait)
	defer cancel()
	for {
		a, err := b.att.ReserveAddress(ctx, network, want, v6)
		if err == nil || !errors.Is(err, overlaystep.ErrIPAMWait) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// skipInRange is true for the addresses never handed out: the subnet's
// network and broadcast addresses, the gateway.
func skipInRange(n dockerplugin.Network, r netip.Prefix, a netip.Addr) bool {
	if a == n.Gateway || a == n.Gateway6 {
		return true
	}
	sub := n.Subnet
	if a.Is6() {
		sub = n.Subnet6
	}
	if !sub.IsValid() {
		return a == r.Addr()
	}
	return a == sub.Masked().Addr() || (a.Is4() && a == lastAddr(sub))
}

// lastAddr is an IPv4 prefix's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ReleaseAddress gives an address back to the agent's IPAM.
func (b *Backend) ReleaseAddress(ctx context.Context, network string, addr netip.Addr) error {
	return b.att.ReleaseAddress(ctx, network, addr)
}

// fallbackName is an endpoint's DNS name when the engine does not say.
func fallbackName(endpointID string) string {
	return "docker-" + endpointID[:min(12, len(endpointID))]
}

// request is the attach request of an endpoint record.
func request(id string, e endpoint) api.AttachRequest {
	name := e.Name
	if name == "" {
		name = fallbackName(id)
	}
	k := keyOf(id, e)
	req := api.AttachRequest{
		Runtime: k.Runtime, ID: k.ID, Name: name, Aliases: e.Aliases,
		Network: e.Network, Netns: e.SandboxKey, IfName: k.IfName,
		Placement: api.PlacementHost, MAC: e.MAC,
		Ports: e.Ports, DNSMode: api.DNSNone,
	}
	switch {
	case e.Addr.IsValid():
		req.IP = e.Addr.Addr().String()
	case e.Addr6.IsValid():
		req.IP = e.Addr6.Addr().String()
	}
	return req
}

// CreateEndpoint records the endpoint; the attachment is made at Join.
// Not earlier, because the attachment's name is the container's, which
// the engine can tell only once the endpoint is stored (after this call),
// and the attach path keeps an attachment's name. The address is held
// already (IPAM's RequestAddress came first). The MAC is Docker's when it
// chose one; else none is answered and the veth keeps the MAC the agent
// gives it at Join (Docker sets a MAC only when it has one).
func (b *Backend) CreateEndpoint(_ context.Context, ep dockerplugin.Endpoint) (net.HardwareAddr, error) {
	b.mu.Lock()
	network, ok := b.st.Networks[ep.DockerNetwork]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("docker network %.12s is not bound to a vxmesh network (create it again with -d vxmesh)", ep.DockerNetwork)
	}
	if _, err := b.network(network); err != nil {
		return nil, err
	}
	e := endpoint{DockerNetwork: ep.DockerNetwork, Network: network, Addr: ep.Addr, Addr6: ep.Addr6}
	if ep.MAC != nil {
		e.MAC = ep.MAC.String()
	}
	if err := b.update(func(st *state) { st.Endpoints[ep.EndpointID] = e }); err != nil {
		return nil, err
	}
	return ep.MAC, nil
}

// names asks the engine for the container's ID and name: the name is the
// DNS name, the short ID an alias (as Docker's own DNS answers both), the
// ID keys the attachment. A name without an ID (the container list did not
// answer) is still used.
func (b *Backend) names(ctx context.Context, dockerNetwork, endpointID string) (id, name string, aliases []string) {
	if b.engine == nil {
		return "", "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, nameTimeout)
	defer cancel()
	id, name, err := b.engine.Container(ctx, dockerNetwork, endpointID)
	if name == "" {
		b.log.Warn("docker container name unknown: the endpoint ID names it", "endpoint", fallbackName(endpointID), "err", err)
		return "", "", nil
	}
	if err != nil || id == "" {
		b.log.Warn("docker container ID unknown: the endpoint ID keys its attachment", "container", name, "err", err)
		return "", name, nil
	}
	if len(id) >= 12 {
		aliases = []string{id[:12]}
	}
	return id, name, aliases
}

// keyOf is the attachment key of an endpoint: the container's ID and the
// endpoint's eth<N> when the engine named the container, so that a
// container on several vxmesh networks is one vxmesh container (one DNS
// name, one interface per network), as it is one Docker container, and
// `vxmesh endpoints` and `vxmesh inspect` show the engine's container ID;
// else the endpoint's ID and "eth".
func keyOf(endpointID string, e endpoint) api.AttachmentKey {
	if e.ContainerID != "" && e.IfName != "" {
		return api.AttachmentKey{Runtime: api.RuntimeDocker, ID: e.ContainerID, IfName: e.IfName}
	}
	return api.AttachmentKey{Runtime: api.RuntimeDocker, ID: endpointID, IfName: IfName}
}

// claimIfName gives endpoint endpointID of container id the first eth<N>
// no other joined endpoint of the container holds, and records it. N
// follows the order of the container's vxmesh networks, as Docker's eth<N>
// does when the container is on vxmesh networks only. A second Docker
// network bound to the same vxmesh network is refused: one container has
// one interface per vxmesh network.
func (b *Backend) claimIfName(endpointID, id string, e *endpoint) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	used := map[string]bool{}
	for other, o := range b.st.Endpoints {
		if other == endpointID || o.ContainerID != id || o.IfName == "" {
			continue
		}
		if o.Network == e.Network {
			return fmt.Errorf("container %.12s is on vxmesh network %q already (docker network %.12s): one interface per vxmesh network", id, e.Network, o.DockerNetwork)
		}
		used[o.IfName] = true
	}
	e.ContainerID = id
	if cur, ok := b.st.Endpoints[endpointID]; ok && cur.ContainerID == id && cur.IfName != "" {
		e.IfName = cur.IfName // Join again: the same key
	} else {
		for n := 0; ; n++ {
			if name := fmt.Sprintf("%s%d", IfName, n); !used[name] {
				e.IfName = name
				break
			}
		}
	}
	b.st.Endpoints[endpointID] = *e
	return b.st.save(b.path)
}

// Join makes the endpoint's veth and answers the container end's name.
func (b *Backend) Join(ctx context.Context, req dockerplugin.JoinRequest) (dockerplugin.Joined, error) {
	e, ok := b.endpoint(req.EndpointID)
	if !ok {
		return dockerplugin.Joined{}, fmt.Errorf("unknown endpoint (was it created before the agent lost %s?)", b.path)
	}
	n, err := b.network(e.Network)
	if err != nil {
		return dockerplugin.Joined{}, err
	}
	id, name, aliases := b.names(ctx, req.DockerNetwork, req.EndpointID)
	if name != "" {
		e.Name, e.Aliases = name, aliases
	}
	if id != "" {
		if err := b.claimIfName(req.EndpointID, id, &e); err != nil {
			return dockerplugin.Joined{}, err
		}
	}
	e.SandboxKey = req.SandboxKey
	a, err := b.att.Attach(ctx, request(req.EndpointID, e))
	if err != nil {
		return dockerplugin.Joined{}, err
	}
	if a.HostPeer == "" {
		return dockerplugin.Joined{}, fmt.Errorf("agent made no interface for Docker to move (attachment %s)", a.AttachmentKey)
	}
	if err := b.update(func(st *state) { st.Endpoints[req.EndpointID] = e }); err != nil {
		return dockerplugin.Joined{}, err
	}
	j := dockerplugin.Joined{Name: a.HostPeer, Internal: n.Internal}
	if !n.Internal {
		j.Gateway = n.Gateway
	}
	return j, nil
}

// PublishPorts records the ports and, on a joined endpoint, puts them in
// force.
func (b *Backend) PublishPorts(ctx context.Context, dockerNetwork, endpointID string, ports []dockerplugin.PortBinding) error {
	e, ok := b.endpoint(endpointID)
	if !ok {
		if len(ports) == 0 {
			return nil // unpublishing what is gone
		}
		return fmt.Errorf("unknown endpoint %.12s", endpointID)
	}
	reqs, err := portRequests(ports)
	if err != nil {
		return err
	}
	e.Ports = reqs
	if e.SandboxKey != "" {
		if _, err := b.att.Attach(ctx, request(endpointID, e)); err != nil {
			return err
		}
	}
	return b.update(func(st *state) { st.Endpoints[endpointID] = e })
}

// portRequests converts Docker's bindings.
func portRequests(ports []dockerplugin.PortBinding) ([]api.PortRequest, error) {
	var out []api.PortRequest
	for _, p := range ports {
		if p.Proto != "tcp" && p.Proto != "udp" {
			return nil, fmt.Errorf("port %d/%s: vxmesh publishes tcp and udp only", p.Port, p.Proto)
		}
		r := api.PortRequest{Proto: p.Proto, HostPort: p.HostPort, HostPortEnd: p.HostPortEnd, ContainerPort: p.Port}
		if r.HostPortEnd == r.HostPort {
			r.HostPortEnd = 0
		}
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			r.HostIP = p.HostIP.String()
		}
		out = append(out, r)
	}
	return out, nil
}

// detach removes the endpoint's attachment (also when it is gone).
func (b *Backend) detach(ctx context.Context, endpointID string, e endpoint) error {
	_, err := b.att.Detach(ctx, api.DetachRequest{AttachmentKey: keyOf(endpointID, e), Network: e.Network})
	return err
}

// Leave removes the veth and the published ports; the record stays until
// DeleteEndpoint.
func (b *Backend) Leave(ctx context.Context, _, endpointID string) error {
	e, ok := b.endpoint(endpointID)
	if !ok {
		return nil
	}
	if err := b.detach(ctx, endpointID, e); err != nil {
		return err
	}
	// The interface name is free for the container's next network.
	e.SandboxKey, e.Ports, e.IfName = "", nil, ""
	return b.update(func(st *state) { st.Endpoints[endpointID] = e })
}

// DeleteEndpoint removes the attachment and forgets the endpoint.
func (b *Backend) DeleteEndpoint(ctx context.Context, _, endpointID string) error {
	e, ok := b.endpoint(endpointID)
	if !ok {
		return nil
	}
	if err := b.detach(ctx, endpointID, e); err != nil {
		return err
	}
	return b.update(func(st *state) { delete(st.Endpoints, endpointID) })
}
