package dockerbackend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/dockerplugin"
)

// fakeAttacher keeps attachments and reserved addresses like the agent.
type fakeAttacher struct {
	mu       sync.Mutex
	nets     []config.Network
	att      map[api.AttachmentKey]api.Attachment
	reqs     map[api.AttachmentKey]api.AttachRequest
	reserved map[netip.Addr]bool
	calls    []string
}

func newFakeAttacher() *fakeAttacher {
	return &fakeAttacher{
		nets: []config.Network{
			{Name: "mesh", Driver: config.DriverOverlay, Subnet: netip.MustParsePrefix("10.200.0.0/16")},
			{Name: "web", Subnet: netip.MustParsePrefix("172.26.0.0/16"), Gateway: netip.MustParseAddr("172.26.0.254")},
			{Name: "quiet", Driver: config.DriverBridge, Subnet: netip.MustParsePrefix("172.27.0.0/24"), Internal: true},
			{Name: "mv", Driver: config.DriverMacvlan, Subnet: netip.MustParsePrefix("192.168.50.0/24"), Parent: "eth0"},
		},
		att:      map[api.AttachmentKey]api.Attachment{},
		reqs:     map[api.AttachmentKey]api.AttachRequest{},
		reserved: map[netip.Addr]bool{},
	}
}

func (f *fakeAttacher) Attach(_ context.Context, req api.AttachRequest) (api.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("Attach %s reserve=%v name=%s ports=%d", req.Key(), req.Reserve, req.Name, len(req.Ports)))
	if err := req.Validate(); err != nil {
		return api.Attachment{}, err
	}
	a := api.Attachment{AttachmentKey: req.Key(), Name: req.Name, Network: req.Network, MAC: req.MAC, State: "ok"}
	if a.MAC == "" {
		a.MAC = "02:42:0a:c8:00:05"
	}
	if !req.Reserve {
		a.HostPeer = "vxd" + req.ID[:4]
	}
	f.att[req.Key()] = a
	f.reqs[req.Key()] = req
	return a, nil
}

func (f *fakeAttacher) Detach(_ context.Context, req api.DetachRequest) (api.Detached, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Detach "+req.AttachmentKey.String())
	_, ok := f.att[req.AttachmentKey]
	delete(f.att, req.AttachmentKey)
	delete(f.reqs, req.AttachmentKey)
	return api.Detached{Existed: ok}, nil
}

func (f *fakeAttacher) Attachments(runtime string) []api.Attachment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Attachment
	for _, a := range f.att {
		if runtime == "" || a.Runtime == runtime {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakeAttacher) ReserveAddress(_ context.Context, network string, want netip.Addr, v6 bool) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !want.IsValid() {
		want = netip.MustParseAddr("10.200.7.1")
		for f.reserved[want] {
			want = want.Next()
		}
	}
	if f.reserved[want] {
		return netip.Addr{}, fmt.Errorf("%s is taken", want)
	}
	f.reserved[want] = true
	return want, nil
}

func (f *fakeAttacher) ReleaseAddress(_ context.Context, network string, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.reserved, addr)
	return nil
}

func (f *fakeAttacher) Networks() []config.Network {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nets)
}

// fakeEngine names containers: every endpoint is one of container
// ctrID, named after the endpoint's first two digits (one name per
// container in a real engine; the tests of two endpoints use one name).
// noID answers the name and err, as when the container list fails.
type fakeEngine struct {
	err  error
	noID bool
}

const ctrID = "c0ffee" + "1111111111111111111111111111111111111111111111111111111111"

func (e fakeEngine) Container(_ context.Context, _, endpointID string) (string, string, error) {
	switch {
	case e.noID:
		return "", "web-" + endpointID[:2], e.err
	case e.err != nil:
		return "", "", e.err
	}
	return ctrID, "web-" + endpointID[:2], nil
}

const (
	netA = "aaaa000000000000000000000000000000000000000000000000000000000001"
	ep1  = "e1e1000000000000000000000000000000000000000000000000000000000001"
	ep2  = "e2e2000000000000000000000000000000000000000000000000000000000002"
)

func TestNetworks(t *testing.T) {
	b, err := New(newFakeAttacher(), t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := b.Networks(context.Background())
	want := []dockerplugin.Network{
		{Name: "mesh", Driver: "overlay", Subnet: netip.MustParsePrefix("10.200.0.0/16"), Gateway: netip.MustParseAddr("10.200.0.1")},
		{Name: "web", Driver: "bridge", Subnet: netip.MustParsePrefix("172.26.0.0/16"), Gateway: netip.MustParseAddr("172.26.0.254")},
		{Name: "quiet", Driver: "bridge", Subnet: netip.MustParsePrefix("172.27.0.0/24"), Gateway: netip.MustParseAddr("172.27.0.1"), Internal: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("networks\n got %+v\nwant %+v", got, want)
	}
	if err := b.BindNetwork(context.Background(), netA, "mv"); err == nil || !strings.Contains(err.Error(), "macvlan") {
		t.Errorf("binding a macvlan network: %v", err)
	}
	if err := b.BindNetwork(context.Background(), netA, "nope"); err == nil {
		t.Error("binding an unknown network succeeded")
	}
}

// TestLifecycle drives one endpoint through every call Docker makes, with
// an agent restart (a new Backend over the same state dir) in the middle.
func TestLifecycle(t *testing.T) {
	byEndpoint := api.AttachmentKey{Runtime: api.RuntimeDocker, ID: ep1, IfName: IfName}
	tests := []struct {
		name     string
		engine   Engine
		wantName string
		aliases  []string
		key      api.AttachmentKey
		peer     string
	}{
		{"engine names", fakeEngine{}, "web-e1", []string{"c0ffee111111"}, api.AttachmentKey{Runtime: api.RuntimeDocker, ID: ctrID, IfName: "eth0"}, "vxdc0ff"},
		{"engine names, no ID", fakeEngine{noID: true, err: errors.New("list: down")}, "web-e1", nil, byEndpoint, "vxde1e1"},
		{"engine fails", fakeEngine{err: errors.New("down")}, "docker-e1e100000000", nil, byEndpoint, "vxde1e1"},
		{"no engine", nil, "docker-e1e100000000", nil, byEndpoint, "vxde1e1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			fa := newFakeAttacher()
			b, err := New(fa, dir, tt.engine, nil)
			if err != nil {
				t.Fatal(err)
			}
			must(t, b.BindNetwork(ctx, netA, "mesh"))
			must(t, b.BindNetwork(ctx, netA, "mesh")) // Docker retries
			if err := b.BindNetwork(ctx, netA, "web"); err == nil {
				t.Error("rebinding to another network succeeded")
			}
			addr, err := b.ReserveAddress(ctx, dockerplugin.AddressRequest{Network: "mesh"})
			must(t, err)
			mac, err := b.CreateEndpoint(ctx, dockerplugin.Endpoint{DockerNetwork: netA, EndpointID: ep1, Addr: netip.PrefixFrom(addr, 16)})
			must(t, err)
			if mac != nil {
				t.Errorf("mac %s answered; Docker chose none and the veth keeps the agent's", mac)
			}
			key := tt.key
			if len(fa.att) != 0 {
				t.Errorf("create endpoint attached: %v", fa.att)
			}

			// The agent restarts between CreateEndpoint and Join.
			b, err = New(fa, dir, tt.engine, nil)
			must(t, err)
			j, err := b.Join(ctx, dockerplugin.JoinRequest{DockerNetwork: netA, EndpointID: ep1, SandboxKey: "/var/run/docker/netns/abc"})
			must(t, err)
			if want := (dockerplugin.Joined{Name: tt.peer, Gateway: netip.MustParseAddr("10.200.0.1")}); j != want {
				t.Errorf("joined %+v, want %+v", j, want)
			}
			r := fa.reqs[key]
			if r.Reserve || r.Name != tt.wantName || !slices.Equal(r.Aliases, tt.aliases) || r.Netns != "/var/run/docker/netns/abc" ||
				r.MAC != "" || r.IP != addr.String() || r.Placement != api.PlacementHost || r.DNSMode != api.DNSNone {
				t.Errorf("join's request %+v", r)
			}

			ports := []dockerplugin.PortBinding{
				{Proto: "tcp", Port: 80, HostPort: 8080, HostPortEnd: 8080},
				{Proto: "udp", Port: 53, HostIP: netip.MustParseAddr("198.18.0.1")},
			}
			must(t, b.PublishPorts(ctx, netA, ep1, ports))
			wantPorts := []api.PortRequest{{Proto: "tcp", HostPort: 8080, ContainerPort: 80}, {Proto: "udp", HostIP: "198.18.0.1", ContainerPort: 53}}
			if got := fa.reqs[key].Ports; !reflect.DeepEqual(got, wantPorts) {
				t.Errorf("ports %+v, want %+v", got, wantPorts)
			}
			if err := b.PublishPorts(ctx, netA, ep1, []dockerplugin.PortBinding{{Proto: "sctp", Port: 9}}); err == nil {
				t.Error("sctp accepted")
			}

			b, err = New(fa, dir, tt.engine, nil) // and again after Join
			must(t, err)
			must(t, b.PublishPorts(ctx, netA, ep1, nil))
			if got := fa.reqs[key].Ports; len(got) != 0 {
				t.Errorf("ports after revoke: %+v", got)
			}
			must(t, b.Leave(ctx, netA, ep1))
			if _, ok := fa.att[key]; ok {
				t.Error("attachment left after Leave")
			}
			must(t, b.DeleteEndpoint(ctx, netA, ep1))
			must(t, b.DeleteEndpoint(ctx, netA, ep1)) // twice
			must(t, b.Leave(ctx, netA, ep1))
			must(t, b.ReleaseAddress(ctx, "mesh", addr))
			must(t, b.UnbindNetwork(ctx, netA))
			must(t, b.UnbindNetwork(ctx, netA))
			if len(fa.reserved) != 0 || len(fa.att) != 0 {
				t.Errorf("left: reserved %v, attachments %v", fa.reserved, fa.att)
			}
			st, err := loadState(filepath.Join(dir, StateFile))
			must(t, err)
			if len(st.Networks) != 0 || len(st.Endpoints) != 0 {
				t.Errorf("state left: %+v", st)
			}
		})
	}
}

// TestContainerOnTwoNetworks joins one container to two Docker networks:
// one vxmesh container keyed by the container ID, eth0 and eth1; a third
// Docker network on a vxmesh network it is on already is refused; the
// interface name of a network it left is given to the next.
func TestContainerOnTwoNetworks(t *testing.T) {
	ctx := context.Background()
	fa := newFakeAttacher()
	b, err := New(fa, t.TempDir(), fakeEngine{}, nil)
	must(t, err)
	const netB, netC = "bbbb", "cccc"
	const ep3 = "e3e3000000000000000000000000000000000000000000000000000000000003"
	must(t, b.BindNetwork(ctx, netA, "mesh"))
	must(t, b.BindNetwork(ctx, netB, "web"))
	must(t, b.BindNetwork(ctx, netC, "mesh"))
	join := func(network, ep, addr string) error {
		if _, err := b.CreateEndpoint(ctx, dockerplugin.Endpoint{DockerNetwork: network, EndpointID: ep, Addr: netip.MustParsePrefix(addr)}); err != nil {
			return err
		}
		_, err := b.Join(ctx, dockerplugin.JoinRequest{DockerNetwork: network, EndpointID: ep, SandboxKey: "/run/docker/netns/x"})
		return err
	}
	must(t, join(netA, ep1, "10.200.7.1/16"))
	must(t, join(netB, ep2, "172.26.0.9/16"))
	key := func(ifname string) api.AttachmentKey {
		return api.AttachmentKey{Runtime: api.RuntimeDocker, ID: ctrID, IfName: ifname}
	}
	if fa.reqs[key("eth0")].Network != "mesh" || fa.reqs[key("eth1")].Network != "web" || len(fa.att) != 2 {
		t.Fatalf("attachments %v", slices.Collect(maps.Keys(fa.att)))
	}
	if err := join(netC, ep3, "10.200.7.3/16"); err == nil || !strings.Contains(err.Error(), `on vxmesh network "mesh" already`) {
		t.Errorf("a second interface on mesh: %v", err)
	}
	must(t, b.DeleteEndpoint(ctx, netC, ep3))
	must(t, b.Leave(ctx, netA, ep1))
	must(t, b.DeleteEndpoint(ctx, netA, ep1))
	if _, ok := fa.att[key("eth0")]; ok || len(fa.att) != 1 {
		t.Errorf("after leaving mesh: %v", slices.Collect(maps.Keys(fa.att)))
	}
	must(t, join(netC, ep3, "10.200.7.3/16"))
	if fa.reqs[key("eth0")].Network != "mesh" {
		t.Errorf("eth0 not given again: %v", slices.Collect(maps.Keys(fa.att)))
	}
}

func TestEndpointErrors(t *testing.T) {
	ctx := context.Background()
	fa := newFakeAttacher()
	b, err := New(fa, t.TempDir(), nil, nil)
	must(t, err)
	docker := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 9}
	if _, err := b.CreateEndpoint(ctx, dockerplugin.Endpoint{DockerNetwork: netA, EndpointID: ep1, Addr: netip.MustParsePrefix("10.200.7.1/16")}); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("endpoint on an unbound network: %v", err)
	}
	if _, err := b.Join(ctx, dockerplugin.JoinRequest{DockerNetwork: netA, EndpointID: ep2, SandboxKey: "/x"}); err == nil || !strings.Contains(err.Error(), "unknown endpoint") {
		t.Errorf("join of an unknown endpoint: %v", err)
	}
	if err := b.PublishPorts(ctx, netA, ep2, []dockerplugin.PortBinding{{Proto: "tcp", Port: 80}}); err == nil {
		t.Error("ports of an unknown endpoint accepted")
	}
	must(t, b.PublishPorts(ctx, netA, ep2, nil))

	// An internal network: no gateway, Docker adds no docker_gwbridge.
	must(t, b.BindNetwork(ctx, netA, "quiet"))
	mac, err := b.CreateEndpoint(ctx, dockerplugin.Endpoint{DockerNetwork: netA, EndpointID: ep2, Addr: netip.MustParsePrefix("172.27.0.9/24"), MAC: docker})
	must(t, err)
	if mac.String() != docker.String() {
		t.Errorf("Docker's MAC answered as %s", mac)
	}
	j, err := b.Join(ctx, dockerplugin.JoinRequest{DockerNetwork: netA, EndpointID: ep2, SandboxKey: "/x"})
	must(t, err)
	if !j.Internal || j.Gateway.IsValid() {
		t.Errorf("internal join %+v", j)
	}
	if r := fa.reqs[api.AttachmentKey{Runtime: api.RuntimeDocker, ID: ep2, IfName: IfName}]; r.MAC != docker.String() {
		t.Errorf("Docker's MAC not asked for at Join: %+v", r)
	}
}

func TestReserveRange(t *testing.T) {
	ctx := context.Background()
	fa := newFakeAttacher()
	b, err := New(fa, t.TempDir(), nil, nil)
	must(t, err)
	rng := netip.MustParsePrefix("10.200.0.0/30")
	var got []netip.Addr
	for range 3 {
		a, err := b.ReserveAddress(ctx, dockerplugin.AddressRequest{Network: "mesh", Range: rng})
		if err != nil {
			got = append(got, netip.Addr{})
			if !strings.Contains(err.Error(), "no free address in ip range 10.200.0.0/30") {
				t.Errorf("full range: %v", err)
			}
			continue
		}
		got = append(got, a)
	}
	// .0 is the subnet's own address, .1 the gateway.
	want := []netip.Addr{netip.MustParseAddr("10.200.0.2"), netip.MustParseAddr("10.200.0.3"), {}}
	if !slices.Equal(got, want) {
		t.Errorf("range allocations %v, want %v", got, want)
	}
}

// waitingAttacher fails reservations with ErrIPAMWait a few times.
type waitingAttacher struct {
	*fakeAttacher
	waits int
}

func (w *waitingAttacher) ReserveAddress(ctx context.Context, network string, want netip.Addr, v6 bool) (netip.Addr, error) {
	if w.waits > 0 {
		w.waits--
		return netip.Addr{}, fmt.Errorf("reserve an address on %q: %w", network, overlaystep.ErrIPAMWait)
	}
	return w.fakeAttacher.ReserveAddress(ctx, network, want, v6)
}

func TestReserveWaitsForIPAM(t *testing.T) {
	w := &waitingAttacher{fakeAttacher: newFakeAttacher(), waits: 2}
	b, err := New(w, t.TempDir(), nil, nil)
	must(t, err)
	a, err := b.ReserveAddress(context.Background(), dockerplugin.AddressRequest{Network: "mesh"})
	if err != nil || !a.IsValid() || w.waits != 0 {
		t.Errorf("reserve after the IPAM settled: %v %v (waits left %d)", a, err, w.waits)
	}
	w.waits = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := b.ReserveAddress(ctx, dockerplugin.AddressRequest{Network: "mesh"}); !errors.Is(err, overlaystep.ErrIPAMWait) {
		t.Errorf("reserve past the deadline: %v", err)
	}
}

func TestStateDirMadeOnWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	b, err := New(newFakeAttacher(), dir, nil, nil)
	must(t, err)
	must(t, b.BindNetwork(context.Background(), netA, "mesh"))
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Error(err)
	}
}

func TestBadStateFile(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, StateFile), []byte("{nope"), 0o600))
	if _, err := New(newFakeAttacher(), dir, nil, nil); err == nil || !strings.Contains(err.Error(), "decode docker plugin state") {
		t.Errorf("bad state file: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
