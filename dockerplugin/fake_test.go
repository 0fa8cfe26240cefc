package dockerplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// fakeBackend records calls and keeps just enough state to answer like the
// agent would: bindings, reserved addresses, endpoints, ports.
type fakeBackend struct {
	mu        sync.Mutex
	nets      []Network
	bound     map[string]string // docker network -> vxmesh network
	reserved  map[netip.Addr]string
	endpoints map[string]Endpoint
	joined    map[string]string // endpoint -> sandbox key
	ports     map[string][]PortBinding
	calls     []string
	failOn    string // a method name that returns an error
	next      netip.Addr
}

func newFake() *fakeBackend {
	return &fakeBackend{
		nets: []Network{
			{Name: "web", Driver: "bridge", Subnet: netip.MustParsePrefix("172.26.0.0/16"), Gateway: netip.MustParseAddr("172.26.0.1")},
			{Name: "mesh", Driver: "overlay", Subnet: netip.MustParsePrefix("10.200.0.0/16"), Gateway: netip.MustParseAddr("10.200.0.1"),
				Subnet6: netip.MustParsePrefix("fd00:200::/64"), Gateway6: netip.MustParseAddr("fd00:200::1")},
			{Name: "quiet", Driver: "bridge", Subnet: netip.MustParsePrefix("172.27.0.0/24"), Gateway: netip.MustParseAddr("172.27.0.1"), Internal: true},
		},
		bound:     map[string]string{},
		reserved:  map[netip.Addr]string{},
		endpoints: map[string]Endpoint{},
		joined:    map[string]string{},
		ports:     map[string][]PortBinding{},
	}
}

var errFake = errors.New("fake failure")

func (f *fakeBackend) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, call)
	if f.failOn != "" && strings.HasPrefix(call, f.failOn) {
		return errFake
	}
	return nil
}

func (f *fakeBackend) Networks(context.Context) ([]Network, error) {
	if err := f.record("Networks"); err != nil {
		return nil, err
	}
	return slices.Clone(f.nets), nil
}

func (f *fakeBackend) BindNetwork(_ context.Context, id, name string) error {
	if err := f.record("BindNetwork %s %s", id, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bound[id] = name
	return nil
}

func (f *fakeBackend) UnbindNetwork(_ context.Context, id string) error {
	if err := f.record("UnbindNetwork %s", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.bound, id)
	return nil
}

func (f *fakeBackend) ReserveAddress(_ context.Context, req AddressRequest) (netip.Addr, error) {
	if err := f.record("ReserveAddress %s want=%v range=%v v6=%v", req.Network, req.Want, req.Range, req.V6); err != nil {
		return netip.Addr{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := req.Want
	if !a.IsValid() {
		if !f.next.IsValid() {
			f.next = netip.MustParseAddr("10.200.5.10")
		}
		a, f.next = f.next, f.next.Next()
	}
	if _, taken := f.reserved[a]; taken {
		return netip.Addr{}, fmt.Errorf("address %s is taken", a)
	}
	f.reserved[a] = req.Network
	return a, nil
}

func (f *fakeBackend) ReleaseAddress(_ context.Context, network string, a netip.Addr) error {
	if err := f.record("ReleaseAddress %s %s", network, a); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.reserved, a)
	return nil
}

var fakeMAC = net.HardwareAddr{0x02, 0x42, 0x0a, 0xc8, 0x05, 0x0a}

func (f *fakeBackend) CreateEndpoint(_ context.Context, ep Endpoint) (net.HardwareAddr, error) {
	if err := f.record("CreateEndpoint %s %s %v %v %v", ep.DockerNetwork, ep.EndpointID, ep.Addr, ep.Addr6, ep.MAC); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bound[ep.DockerNetwork]; !ok {
		return nil, fmt.Errorf("docker network %s is not bound", ep.DockerNetwork)
	}
	f.endpoints[ep.EndpointID] = ep
	if ep.MAC != nil {
		return ep.MAC, nil
	}
	return fakeMAC, nil
}

func (f *fakeBackend) DeleteEndpoint(_ context.Context, network, id string) error {
	if err := f.record("DeleteEndpoint %s %s", network, id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.endpoints, id)
	return nil
}

func (f *fakeBackend) Join(_ context.Context, req JoinRequest) (Joined, error) {
	if err := f.record("Join %s %s %s", req.DockerNetwork, req.EndpointID, req.SandboxKey); err != nil {
		return Joined{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name, ok := f.bound[req.DockerNetwork]
	if !ok {
		return Joined{}, fmt.Errorf("docker network %s is not bound", req.DockerNetwork)
	}
	f.joined[req.EndpointID] = req.SandboxKey
	for _, n := range f.nets {
		if n.Name == name {
			return Joined{Name: "vxc" + req.EndpointID[:min(4, len(req.EndpointID))], Gateway: n.Gateway, Gateway6: n.Gateway6, Internal: n.Internal}, nil
		}
	}
	return Joined{}, fmt.Errorf("no network %s", name)
}

func (f *fakeBackend) Leave(_ context.Context, network, id string) error {
	if err := f.record("Leave %s %s", network, id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.joined, id)
	return nil
}

func (f *fakeBackend) PublishPorts(_ context.Context, network, id string, ports []PortBinding) error {
	if err := f.record("PublishPorts %s %s %v", network, id, ports); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ports) == 0 {
		delete(f.ports, id)
	} else {
		f.ports[id] = ports
	}
	return nil
}

// lastCall is the most recent recorded call other than Networks.
func (f *fakeBackend) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i] != "Networks" {
			return f.calls[i]
		}
	}
	return ""
}
