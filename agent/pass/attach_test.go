package pass

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
)

func TestBuildAttachments(t *testing.T) {
	cfg := mustParse(t, `
networks:
  - name: web
    subnet: 10.1.0.0/24
  - name: db
    subnet: 10.2.0.0/24
containers:
  - name: a
    networks: [web]
`)
	st := NewState()
	st.Attachments = []api.AttachRequest{
		{Runtime: api.RuntimeCNI, ID: "c1", Name: "pod1", Network: "web", Netns: "/run/netns/cni-1", IfName: "eth0",
			Ports: []api.PortRequest{{Proto: "tcp", HostPort: 8080, ContainerPort: 80}}},
		{Runtime: api.RuntimeCNI, ID: "c2", Name: "pod2", Network: "web", Netns: "/run/netns/cni-2", IfName: "net1", IP: "10.1.0.77"},
		{Runtime: api.RuntimeCNI, ID: "c1", Name: "pod1", Network: "db", Netns: "/run/netns/cni-1", IfName: "eth1"},
		{Runtime: api.RuntimeCNI, ID: "c3", Name: "a", Network: "web", Netns: "/run/netns/cni-3", IfName: "eth0"},
	}
	d := buildDesired(cfg, nil, st, nil)
	tests := []struct {
		name, netns string
		ifnames     []string
		addr        string // of the first interface, "" for any
		ports       int
		err         bool
	}{
		{"pod1", "/run/netns/cni-1", []string{"eth0", "eth1"}, "", 1, false},
		{"pod2", "/run/netns/cni-2", []string{"net1"}, "10.1.0.77/24", 0, false},
	}
	for _, tt := range tests {
		v := d.Container(tt.name)
		if v == nil {
			t.Fatalf("no view of %s", tt.name)
		}
		if v.Err != nil || v.Source != api.RuntimeCNI || v.Netns != tt.netns || !v.IsAttached() {
			t.Fatalf("%s: err %v source %q netns %q attached %v", tt.name, v.Err, v.Source, v.Netns, v.IsAttached())
		}
		var names []string
		for _, ifc := range v.Interfaces {
			names = append(names, ifc.IfName)
		}
		if !slices.Equal(names, tt.ifnames) {
			t.Errorf("%s: interfaces %v, want %v", tt.name, names, tt.ifnames)
		}
		if tt.addr != "" && v.Interfaces[0].Addr != netip.MustParsePrefix(tt.addr) {
			t.Errorf("%s: address %v, want %s", tt.name, v.Interfaces[0].Addr, tt.addr)
		}
		if len(v.Spec.Publish) != tt.ports {
			t.Errorf("%s: %d ports, want %d", tt.name, len(v.Spec.Publish), tt.ports)
		}
	}
	// The runtime's namespace gets no name files; a name the config holds
	// is a conflict of the attachment, not of the config's container.
	for _, bc := range d.Bridge.Containers {
		if bc.Netns[0] == '/' && bc.Files != nil {
			t.Errorf("%s: name files for a runtime namespace", bc.Name)
		}
	}
	var shadowed *ContainerView
	for _, v := range d.Containers {
		if v.Spec.Name == "a" && v.IsAttached() {
			shadowed = v
		}
	}
	if shadowed == nil || shadowed.Err == nil || d.Container("a").Err != nil {
		t.Errorf("attachment named like a config container: want it refused, the config's kept")
	}
}

func TestPortSpecString(t *testing.T) {
	tests := []struct {
		p    api.PortRequest
		want string
	}{
		{api.PortRequest{Proto: "tcp", ContainerPort: 80}, "80/tcp"},
		{api.PortRequest{Proto: "tcp", HostPort: 8080, ContainerPort: 80}, "8080:80/tcp"},
		{api.PortRequest{Proto: "udp", HostIP: "198.18.0.1", HostPort: 53, ContainerPort: 53}, "198.18.0.1:53:53/udp"},
		{api.PortRequest{Proto: "tcp", HostIP: "198.18.0.1", ContainerPort: 80}, "198.18.0.1::80/tcp"},
		{api.PortRequest{Proto: "tcp", HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80}, "8000-8010:80/tcp"},
	}
	for _, tt := range tests {
		if got := PortSpecString(tt.p); got != tt.want {
			t.Errorf("PortSpecString(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestBuildDockerAttachment: Docker's CreateEndpoint (Reserve) holds an
// address without a veth; its Join (host placement) makes a veth whose
// container end waits in the host namespace, under the same address.
func TestBuildDockerAttachment(t *testing.T) {
	cfg := mustParse(t, "networks:\n  - name: web\n    subnet: 10.1.0.0/24\n")
	st := NewState()
	req := api.AttachRequest{Runtime: api.RuntimeDocker, ID: "ep1", Name: "web1", Network: "web", IfName: "eth", Placement: api.PlacementHost, Reserve: true}
	st.Attachments = []api.AttachRequest{req}
	d := buildDesired(cfg, nil, st, nil)
	v := d.Container("web1")
	if v == nil || v.Err != nil || len(v.Interfaces) != 1 || len(d.Bridge.Containers) != 0 {
		t.Fatalf("reserve: view %+v, %d bridge containers; want an address and no veth", v, len(d.Bridge.Containers))
	}
	reserved := v.Interfaces[0].Addr
	st.Allocations = d.Allocations
	req.Reserve = false
	st.Attachments = []api.AttachRequest{req}
	d = buildDesired(cfg, nil, st, nil)
	if len(d.Bridge.Containers) != 1 {
		t.Fatalf("join: %d bridge containers, want 1", len(d.Bridge.Containers))
	}
	bc := d.Bridge.Containers[0]
	ifc := bc.Interfaces[0]
	if !bc.HostPlaced || ifc.HostPeer != HostPeerName(bc.Netns, "web") || len(ifc.HostPeer) > 15 || ifc.Addr != reserved || bc.Netns != "docker-ep1" {
		t.Errorf("join: %+v; want host placed, peer %s, address %s", bc, HostPeerName(bc.Netns, "web"), reserved)
	}
}
