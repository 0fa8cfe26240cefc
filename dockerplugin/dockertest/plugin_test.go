package dockertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/dockerplugin"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// vethBackend is the simplest real Backend: one network "mesh" on a
// bridge in the host namespace, addresses counted up, a veth per joined
// endpoint. It proves the protocol path; the agent provides the real one.
type vethBackend struct {
	h      *netlink.Handle // the host namespace = dockerd's
	bridge string
	mesh   dockerplugin.Network

	mu    sync.Mutex
	bound map[string]string
	next  netip.Addr
	held  map[netip.Addr]bool
	ports map[string][]dockerplugin.PortBinding
}

func (b *vethBackend) Networks(context.Context) ([]dockerplugin.Network, error) {
	return []dockerplugin.Network{b.mesh}, nil
}

func (b *vethBackend) BindNetwork(_ context.Context, id, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bound[id] = name
	return nil
}

func (b *vethBackend) UnbindNetwork(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.bound, id)
	return nil
}

func (b *vethBackend) ReserveAddress(_ context.Context, req dockerplugin.AddressRequest) (netip.Addr, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := req.Want
	if !a.IsValid() {
		a, b.next = b.next, b.next.Next()
	}
	if b.held[a] {
		return netip.Addr{}, fmt.Errorf("%s is taken", a)
	}
	b.held[a] = true
	return a, nil
}

func (b *vethBackend) ReleaseAddress(_ context.Context, _ string, a netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.held, a)
	return nil
}

func (b *vethBackend) CreateEndpoint(_ context.Context, ep dockerplugin.Endpoint) (net.HardwareAddr, error) {
	if ep.MAC != nil {
		return ep.MAC, nil
	}
	ip := ep.Addr.Addr().As4()
	return net.HardwareAddr{0x02, 0x42, ip[0], ip[1], ip[2], ip[3]}, nil
}

// hostEnd names the host end of an endpoint's veth.
func hostEnd(ep string) string { return "vh" + ep[:min(8, len(ep))] }

func (b *vethBackend) DeleteEndpoint(ctx context.Context, network, ep string) error {
	return b.Leave(ctx, network, ep)
}

func (b *vethBackend) Join(_ context.Context, req dockerplugin.JoinRequest) (dockerplugin.Joined, error) {
	br, err := b.h.LinkByName(b.bridge)
	if err != nil {
		return dockerplugin.Joined{}, fmt.Errorf("find bridge: %w", err)
	}
	name := hostEnd(req.EndpointID)
	peer := "vc" + req.EndpointID[:min(8, len(req.EndpointID))]
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index, MTU: 1500}, PeerName: peer}
	if err := b.h.LinkAdd(veth); err != nil && !errors.Is(err, os.ErrExist) {
		return dockerplugin.Joined{}, fmt.Errorf("add veth %s: %w", name, err)
	}
	if err := b.h.LinkSetUp(veth); err != nil {
		return dockerplugin.Joined{}, fmt.Errorf("set %s up: %w", name, err)
	}
	return dockerplugin.Joined{Name: peer, Gateway: b.mesh.Gateway}, nil
}

func (b *vethBackend) Leave(_ context.Context, _, ep string) error {
	l, err := b.h.LinkByName(hostEnd(ep))
	if err != nil {
		return nil // gone already
	}
	return b.h.LinkDel(l)
}

func (b *vethBackend) PublishPorts(_ context.Context, _, ep string, ports []dockerplugin.PortBinding) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ports[ep] = ports
	return nil
}

// recorder keeps every call dockerd made, with its body, in order.
type recorder struct {
	next  http.Handler
	mu    sync.Mutex
	calls []string
	log   []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.calls = append(r.calls, req.URL.Path[1:])
	r.log = append(r.log, req.URL.Path+" "+strings.TrimSpace(string(body)))
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// TestPluginWithRealDockerd drives the adapter with a real dockerd: the
// contract's `docker network create`, a container with -p on it, and the
// network's removal reach the handlers, and the container gets eth0 with
// its address and a default route through the network's gateway.
func TestPluginWithRealDockerd(t *testing.T) {
	Require(t)
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	nh := h.Handle(t)

	// The network's bridge holds the gateway before Docker hears of the
	// network, as the agent's does: its route is what would make
	// libnetwork's pool overlap check loop.
	b, rec := newVethPlugin(t, nh)

	e := Start(t, h.NS)
	e.ServePlugin(t, "vxmesh", rec)
	e.ImportBusybox(t)
	defer func() {
		for _, l := range rec.log {
			t.Logf("dockerd called %s", l)
		}
	}()

	e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "-o", "vxmesh.network=mesh", "mesh")
	t.Logf("docker network inspect mesh:\n%s", e.MustDocker(t, "network", "inspect", "mesh"))
	out := e.MustDocker(t, "run", "--rm", "--network", "mesh", "-p", "8080:80", "-p", "53/udp", "--name", "web1", Image,
		"sh", "-c", "ip -o -4 addr show; ip route; ping -c1 -W3 10.200.0.1")
	t.Logf("container:\n%s", out)
	for _, want := range []string{"eth0", "inet 10.200.5.10/16", "default via 10.200.0.1 dev eth0", "1 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q", want)
		}
	}
	b.mu.Lock()
	var published []dockerplugin.PortBinding
	for _, p := range b.ports {
		published = append(published, p...)
	}
	b.mu.Unlock()
	t.Logf("ports published while it ran (revoked after): %+v", published)

	nstest.Eventually(t, 10*time.Second, func() error {
		links, err := nh.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if n := l.Attrs().Name; strings.HasPrefix(n, "vh") || strings.HasPrefix(n, "vc") || n == "docker_gwbridge" {
				return fmt.Errorf("link %s still in the host namespace", n)
			}
		}
		return nil
	})
	e.MustDocker(t, "network", "rm", "mesh")

	// With --subnet (libnetwork skips its overlap check for a pool the
	// user chose) inspect shows the real subnet, and the gateway only when
	// --gateway is given too: Docker shows the user's IPAM config.
	e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "--subnet", "10.200.0.0/16", "mesh2")
	if out := e.MustDocker(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "mesh2"); strings.TrimSpace(out) != "10.200.0.0/16" {
		t.Errorf("mesh2 made with --subnet: IPAM config %q", out)
	}
	out = e.MustDocker(t, "run", "--rm", "--network", "mesh2", Image, "sh", "-c", "ip route; ping -c1 -W3 10.200.0.1")
	if !strings.Contains(out, "default via 10.200.0.1 dev eth0") || !strings.Contains(out, "1 packets received") {
		t.Errorf("container on mesh2:\n%s", out)
	}
	e.MustDocker(t, "network", "rm", "mesh2")

	seen := rec.seen()
	for _, want := range []string{
		"Plugin.Activate", "NetworkDriver.GetCapabilities", "IpamDriver.GetDefaultAddressSpaces",
		"IpamDriver.RequestPool", "NetworkDriver.CreateNetwork", "IpamDriver.RequestAddress",
		"NetworkDriver.CreateEndpoint", "NetworkDriver.Join", "NetworkDriver.ProgramExternalConnectivity",
		"NetworkDriver.RevokeExternalConnectivity", "NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint",
		"IpamDriver.ReleaseAddress", "NetworkDriver.DeleteNetwork", "IpamDriver.ReleasePool",
	} {
		if !slices.Contains(seen, want) {
			t.Errorf("dockerd never called %s (calls: %v)", want, seen)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bound) != 0 || len(b.held) != 0 {
		t.Errorf("left bound %v, held %v", b.bound, b.held)
	}
}

// newVethPlugin builds the bridge and the backend of TestPluginWithRealDockerd
// in host h and returns them with a recorder in front of the adapter.
func newVethPlugin(t *testing.T, nh *netlink.Handle) (*vethBackend, *recorder) {
	t.Helper()
	mesh := dockerplugin.Network{Name: "mesh", Driver: "overlay",
		Subnet: netip.MustParsePrefix("10.200.0.0/16"), Gateway: netip.MustParseAddr("10.200.0.1")}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-mesh"}}
	if err := nh.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.200.0.1/16")
	if err := nh.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	b := &vethBackend{h: nh, bridge: "vxb-mesh", mesh: mesh, bound: map[string]string{},
		next: netip.MustParseAddr("10.200.5.10"), held: map[netip.Addr]bool{}, ports: map[string][]dockerplugin.PortBinding{}}
	return b, &recorder{next: dockerplugin.New(b, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

// TestDockerdRestartKeepsAttachment restarts dockerd (--live-restore) under
// a running container on a vxmesh network: the container keeps eth0, and
// the test records which plugin calls a restart makes.
func TestDockerdRestartKeepsAttachment(t *testing.T) {
	Require(t)
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	nh := h.Handle(t)
	_, rec := newVethPlugin(t, nh)
	e := Start(t, h.NS)
	e.ServePlugin(t, "vxmesh", rec)
	e.ImportBusybox(t)
	e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "-o", "vxmesh.network=mesh", "mesh")
	e.MustDocker(t, "run", "-d", "--network", "mesh", "-p", "8080:80", "-p", "80", "--name", "web1", Image, "sleep", "600")
	t.Logf("docker port web1: %q", e.MustDocker(t, "port", "web1"))
	before := len(rec.seen())

	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	out := e.MustDocker(t, "exec", "web1", "sh", "-c", "ip -o -4 addr show eth0; ping -c1 -W3 10.200.0.1")
	if !strings.Contains(out, "10.200.5.10/16") || !strings.Contains(out, "1 packets received") {
		t.Errorf("after dockerd restart:\n%s", out)
	}
	t.Logf("plugin calls during the restart: %v", rec.seen()[before:])
	e.MustDocker(t, "rm", "-f", "web1")
	e.MustDocker(t, "network", "rm", "mesh")
}

// TestEmbeddedDNSForwardsToGateway checks the path cross-host names take:
// Docker's embedded DNS (127.0.0.11) answers for its own engine's
// containers and forwards other names to the container's --dns server; a
// resolver on the network's gateway address (here dnsmasq standing in for
// vxmesh's) then answers names from other hosts.
func TestEmbeddedDNSForwardsToGateway(t *testing.T) {
	Require(t)
	nstest.RequireTool(t, "dnsmasq")
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	nh := h.Handle(t)
	_, rec := newVethPlugin(t, nh)

	dir := t.TempDir()
	dnsmasq := exec.Command("nsenter", "--net=/run/netns/"+h.NS, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--listen-address=10.200.0.1", "--bind-interfaces", "--address=/db-on-h2/10.200.9.9", "--pid-file="+dir+"/pid", "--log-facility=-")
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsmasq.Process.Kill(); dnsmasq.Wait() })

	e := Start(t, h.NS)
	e.ServePlugin(t, "vxmesh", rec)
	e.ImportBusybox(t)
	e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "-o", "vxmesh.network=mesh", "mesh")
	e.MustDocker(t, "run", "-d", "--network", "mesh", "--name", "web1", Image, "sleep", "600")
	out := e.MustDocker(t, "run", "--rm", "--network", "mesh", "--dns", "10.200.0.1", Image, "sh", "-c",
		"cat /etc/resolv.conf; nslookup -type=a web1; nslookup -type=a db-on-h2")
	t.Logf("container:\n%s", out)
	for _, want := range []string{"nameserver 127.0.0.11", "Address: 10.200.5.10", "Address: 10.200.9.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("lookups lack %q", want)
		}
	}
	e.MustDocker(t, "rm", "-f", "web1")
	e.MustDocker(t, "network", "rm", "mesh")
}
