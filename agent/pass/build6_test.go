package pass

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/gossip"
)

// TestBuildDualStack: IPv6 slots (static ip6, recorded under Key6, new
// from the subnet6 pool), no IPv4 on an IPv6-only network, each family's
// gateway on its first interface, and links resolved locally and from
// gossip, IPv4 first.
func TestBuildDualStack(t *testing.T) {
	cfg := mustParse(t, `
networks:
  - name: six
    subnet6: "fd00:6::/64"
  - name: dual
    subnet: 10.7.0.0/24
    subnet6: "fd00:7::/64"
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
    subnet6: "fd00:200::/64"
containers:
  - name: a
    networks: [six, dual, mesh]
    ip6: {six: "fd00:6::a"}
    links: ["b:bee", "r"]
  - name: b
    networks: [dual]
`)
	st := NewState()
	st.Allocations[Key6("dual")] = map[string]netip.Addr{"b": netip.MustParseAddr("fd00:7::b")}
	gv := &GossipView{Snapshot: gossip.Snapshot{Self: "h1", Endpoints: []gossip.Endpoint{
		{Host: "h2", Network: "mesh", Container: "r", IP: netip.MustParseAddr("fd00:200::5")},
		{Host: "h2", Network: "mesh", Container: "r", IP: netip.MustParseAddr("10.200.9.5")},
	}}}
	d := Build(&Snapshot{Config: cfg, State: st, Gossip: gv}, nil)
	a, b := d.Container("a"), d.Container("b")
	if a.Err != nil || b.Err != nil {
		t.Fatalf("errors: %v %v", a.Err, b.Err)
	}
	six, dual := a.Interfaces[0], a.Interfaces[1]
	if six.Addr.IsValid() || six.Addr6.String() != "fd00:6::a/64" || six.Gateway.IsValid() || six.Gateway6.String() != "fd00:6::1" {
		t.Errorf("a on six: %+v", six)
	}
	if !dual.Addr.IsValid() || !dual.Addr6.IsValid() || dual.Gateway.String() != "10.7.0.1" || dual.Gateway6.IsValid() {
		t.Errorf("a on dual (IPv4 default here, IPv6 default on six): %+v", dual)
	}
	if got := b.Interfaces[0].Addr6.String(); got != "fd00:7::b/64" {
		t.Errorf("b keeps its recorded IPv6 address: %s", got)
	}
	if _, ok := d.Allocations["six"]; ok {
		t.Errorf("IPv4 allocated on an IPv6-only network: %v", d.Allocations)
	}
	if _, static := d.Allocations[Key6("six")]["a"]; static {
		t.Errorf("static ip6 recorded as an allocation: %v", d.Allocations)
	}
	hosts := string(d.Bridge.Containers[0].Files[bridge.FileHosts])
	bv4, bv6 := b.Interfaces[0].Addr.Addr().String(), "fd00:7::b"
	for _, want := range []string{bv4 + "\tb bee", bv6 + "\tb bee", "10.200.9.5\tr", "fd00:200::5\tr", "fd00:6::a\ta"} {
		if !strings.Contains(hosts, want+"\n") && !strings.Contains(hosts, want+" ") {
			t.Errorf("hosts file lacks %q:\n%s", want, hosts)
		}
	}
	if strings.Index(hosts, bv4) > strings.Index(hosts, bv6) {
		t.Errorf("link addresses not IPv4 first:\n%s", hosts)
	}
}
