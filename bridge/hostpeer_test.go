package bridge

import (
	"testing"
)

// TestHostPlaced: a host-placed container (Docker) gets a veth whose
// container end waits in the host namespace under its HostPeer name, with
// the MAC recorded; the next pass writes nothing; removing the container
// removes the pair.
func TestHostPlaced(t *testing.T) {
	g := newRig(t)
	want := testState()
	want.Containers = []Container{{Name: "d1", Netns: "docker-ep1", HostPlaced: true, Interfaces: []Interface{
		{Network: "web", IfName: "eth", Addr: pfx("10.1.0.5/24"), Gateway: addr("10.1.0.1"), MTU: 1500, HostPeer: "vc-ep1"},
	}}}
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	host := HostVethName("docker-ep1", "web")
	h, p, br := g.k.link("", host), g.k.link("", "vc-ep1"), g.k.link("", "br-web")
	if h == nil || p == nil || br == nil {
		t.Fatalf("host end %v, container end %v, bridge %v: want all in the host namespace", h, p, br)
	}
	if p.Kind != "veth" || p.ParentIndex != h.Index || h.MasterIndex != br.Index {
		t.Errorf("pair %+v / %+v: want a veth pair, the host end on br-web", h, p)
	}
	if _, ours := isContainerAlias(p.Alias); !ours {
		t.Errorf("container end alias %q is not ours", p.Alias)
	}
	if mac := g.rec.MACs[MACKey("docker-ep1", "web")]; mac == "" || mac != p.MAC.String() {
		t.Errorf("recorded MAC %q, container end has %s", mac, p.MAC)
	}
	if len(g.rec.Namespaces) != 0 || len(g.rec.CreatedNetns) != 0 {
		t.Errorf("record %+v: a host-placed container's namespace is the runtime's", g.rec)
	}
	before := g.k.Writes()
	g.pass(t, want)
	if w := g.k.Writes() - before; w != 0 {
		t.Errorf("second pass made %d writes, want 0", w)
	}
	want.Containers = nil
	g.pass(t, want)
	if g.k.link("", host) != nil || g.k.link("", "vc-ep1") != nil {
		t.Errorf("after removal the pair is still there")
	}
}

// TestRuntimeNetnsByPath: a container whose namespace is a runtime's (by
// path) gets its interface inside it, under the runtime's name; the
// namespace is never created (a missing one is the container's error) nor
// deleted, and no name files are written.
func TestRuntimeNetnsByPath(t *testing.T) {
	g := newRig(t)
	const ns = "/run/netns/cni-1234"
	want := testState()
	want.Containers = []Container{{Name: "pod1", Netns: ns, Interfaces: []Interface{
		{Network: "web", IfName: "net1", Addr: pfx("10.1.0.9/24"), Gateway: addr("10.1.0.1"), MTU: 1500},
	}, Files: map[string][]byte{FileHostname: []byte("pod1\n")}}}
	res := g.pass(t, want)
	if err := res.Containers["pod1"]; err == nil || g.k.NetnsExists(ns) {
		t.Fatalf("missing runtime namespace: err %v, created %v; want an error and no namespace", err, g.k.NetnsExists(ns))
	}
	g.k.setNS(ns)
	if res := g.pass(t, want); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if l := g.k.link(ns, "net1"); l == nil || l.Kind != "veth" {
		t.Fatalf("net1 in %s: %+v", ns, l)
	}
	if len(g.rec.CreatedNetns) != 0 {
		t.Errorf("record claims %v as created", g.rec.CreatedNetns)
	}
	want.Containers = nil
	g.pass(t, want)
	if !g.k.NetnsExists(ns) || g.k.link(ns, "net1") != nil || g.k.link("", HostVethName(ns, "web")) != nil {
		t.Errorf("after removal: namespace kept %v, net1 %v, host end %v; want the namespace alone left",
			g.k.NetnsExists(ns), g.k.link(ns, "net1"), g.k.link("", HostVethName(ns, "web")))
	}
}
