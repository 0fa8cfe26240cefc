package explain

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/overlay"
)

// testCauses: a bridge network web, an overlay mesh; w1 on both, side
// sharing w1's namespace, bad failed to attach.
func testCauses() Causes {
	return Causes{
		Host: "h1", Address: netip.MustParseAddr("198.18.0.1"),
		Networks: []Network{
			{Name: "web", Driver: "bridge", Bridge: "br-web", Gateway: netip.MustParseAddr("10.61.0.1")},
			{Name: "mesh", Driver: "overlay", Bridge: "vxb-mesh", VXLAN: "vx-4200"},
			{Name: "lan", Driver: "macvlan"},
		},
		Containers: []Container{
			{Name: "w1", Netns: "ns-w1", Networks: []string{"web", "mesh"}},
			{Name: "side", Netns: "ns-w1", Joins: "w1"},
			{Name: "bad", Netns: "ns-bad", Failed: true, Networks: []string{"web"}},
			{Name: "gone", Netns: "ns-gone", Networks: []string{"web"}},
		},
	}
}

func TestCausesWanted(t *testing.T) {
	c := testCauses()
	if got := c.WantedBridges(); len(got) != 2 || !got["br-web"] || !got["vxb-mesh"] {
		t.Errorf("wanted bridges %v", got)
	}
	if got := c.WantedVXLANs(); len(got) != 1 || !got["vx-4200"] {
		t.Errorf("wanted vxlans %v", got)
	}
	got := c.Namespaces()
	if len(got) != 2 || got[0].Netns != "ns-w1" || !slices.Equal(got[0].SharedBy, []string{"side"}) || got[1].Container != "gone" {
		t.Errorf("namespaces %+v", got)
	}
}

// TestExplain: the kernel value becomes the answer: our bridges only,
// ports sorted, the VXLAN device and chains copied, each namespace with
// its interfaces' host peers, unreadable parts said in the routes, and
// problems read first, then what is missing.
func TestExplain(t *testing.T) {
	veth := bridge.HostVethName("ns-w1", "web")
	k := Kernel{
		ReadAt: time.Unix(1, 0),
		Links: []bridge.Link{
			{Name: "br-web", Index: 2, Kind: "bridge", Alias: "vxmesh:net=web", Addrs: []netip.Prefix{netip.MustParsePrefix("10.61.0.1/24")}},
			{Name: "zz", Index: 3, Kind: "veth", MasterIndex: 2},
			{Name: veth, Index: 4, Kind: "veth", MasterIndex: 2, Alias: "vxmesh:ctr=w1,net=web"},
			{Name: "docker0", Index: 5, Kind: "bridge"},
			{Name: "eth0", Index: 6, Kind: "device", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		},
		BridgeAttrs: map[int]bridge.BridgeAttrs{2: {ID: "8000.020000000001"}},
		VXLANs:      []overlay.InspectedVXLAN{{Name: "vx-4200", Alias: "vxmesh:vxlan net=mesh", FDB: []overlay.InspectedFDB{{Line: "l", MAC: "02:00:00:00:00:09", Self: true}}}},
		Chains:      []bridge.ChainRules{{Table: "nat", Chain: "VXMESH-DNAT", Rules: []string{}}},
		Namespaces: []bridge.Namespace{
			{Exists: true, EtcDir: "/etc/netns/ns-w1", Files: map[string]bool{"hosts": true},
				Links:     []bridge.Link{{Name: "eth0", Kind: "veth", ParentIndex: 4, Alias: "vxmesh:ctr=w1,net=web"}, {Name: "eth1", Kind: "veth", ParentIndex: 99}},
				Routes:    []string{"default via 10.61.0.1 dev eth0"},
				RoutesErr: errors.New("boom")},
			{},
		},
		Problems: []string{"read problem"},
	}
	in := Explain(k, testCauses())
	if in.Host != "h1" || in.Address != "198.18.0.1" || !in.ReadAt.Equal(k.ReadAt) {
		t.Errorf("header %+v", in)
	}
	if len(in.Bridges) != 1 || in.Bridges[0].ID != "8000.020000000001" || in.Bridges[0].Network != "web" || in.Bridges[0].Gateway != "10.61.0.1" {
		t.Fatalf("bridges %+v", in.Bridges)
	}
	if ps := in.Bridges[0].Ports; len(ps) != 2 || ps[0].Name != veth || ps[1].Name != "zz" || ps[0].Container != "w1" || !ps[1].Unknown {
		t.Errorf("ports %+v", ps)
	}
	if len(in.VXLANs) != 1 || in.VXLANs[0].Network != "mesh" || len(in.VXLANs[0].FDB) != 1 || !in.VXLANs[0].FDB[0].Unknown || in.VXLANs[0].Neigh == nil {
		t.Errorf("vxlans %+v", in.VXLANs)
	}
	if len(in.Iptables) != 1 || in.Iptables[0].Rules == nil {
		t.Errorf("iptables %+v", in.Iptables)
	}
	if len(in.Containers) != 2 {
		t.Fatalf("containers %+v", in.Containers)
	}
	w1 := in.Containers[0]
	if w1.Name != "w1" || !w1.Exists || w1.EtcDir != "/etc/netns/ns-w1" || !w1.Files["hosts"] || !slices.Equal(w1.SharedBy, []string{"side"}) {
		t.Errorf("w1 %+v", w1)
	}
	if len(w1.Interfaces) != 2 || w1.Interfaces[0].Peer != veth || w1.Interfaces[0].Network != "web" || w1.Interfaces[1].Peer != "" || !w1.Interfaces[1].Unknown {
		t.Errorf("w1 interfaces %+v", w1.Interfaces)
	}
	if want := []string{"(routes unreadable: boom)", "default via 10.61.0.1 dev eth0"}; !slices.Equal(w1.Routes, want) {
		t.Errorf("w1 routes %q, want %q", w1.Routes, want)
	}
	want := []string{"read problem", `container "gone": namespace "ns-gone" does not exist`, `network "mesh": bridge "vxb-mesh" not found`}
	if !slices.Equal(in.Problems, want) {
		t.Errorf("problems %q, want %q", in.Problems, want)
	}
}

// TestExplainUnreadable: links that cannot be read are said in the
// routes; nothing read yields empty lists, not nulls.
func TestExplainUnreadable(t *testing.T) {
	c := testCauses()
	in := Explain(Kernel{Namespaces: []bridge.Namespace{{Exists: true, LinksErr: errors.New("gone")}}}, c)
	if got := in.Containers[0].Routes; !slices.Equal(got, []string{"(links unreadable: gone)"}) || in.Containers[0].Interfaces == nil {
		t.Errorf("container %+v", in.Containers[0])
	}
	if in.Bridges == nil || in.VXLANs == nil || in.Iptables == nil {
		t.Errorf("nil lists: %+v", in)
	}
	if len(in.Containers) != 1 {
		t.Errorf("a namespace not read is left out: %+v", in.Containers)
	}
}
