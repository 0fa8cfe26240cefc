package dnsstep

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
)

// TestGatewayListeners: a network with a Docker-attached container gets a
// listener on its gateway with the network's cluster-wide names; it goes
// with the last such container; a failing one does not fail the pass.
func TestGatewayListeners(t *testing.T) {
	cfg := mustParse(t, dnsStepConfig)
	st := pass.NewState()
	st.Attachments = []api.AttachRequest{{
		Runtime: api.RuntimeDocker, ID: "e1e1", Name: "dweb", Network: "mesh", IfName: "eth",
		Placement: api.PlacementHost, IP: "10.200.0.50", DNSMode: api.DNSNone, Netns: "/var/run/docker/netns/x",
	}}
	d := pass.Build(&pass.Snapshot{Config: cfg, State: st}, nil)
	d.Remote = []pass.RemoteEndpoint{{Network: "mesh", Container: "far", Host: "h2", IP: netip.MustParseAddr("10.200.1.5"), Names: []string{"far"}}}
	f := newFakeDNS()
	s := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.Attached(), "/var/run/docker/netns/x") {
		t.Error("a listener in the namespace of a container that Docker resolves for")
	}
	if got := f.addrs["gateway:mesh"]; got != netip.MustParsePrefix("10.200.0.1/16") {
		t.Fatalf("gateway listener %v, want 10.200.0.1 for 10.200.0.0/16 (all: %v)", got, f.Attached())
	}
	v := f.view("gateway:mesh")
	if recs(v, "far") != "10.200.1.5" || recs(v, "a") != "10.200.0.10" || recs(v, "dweb") != "10.200.0.50" {
		t.Errorf("gateway view: far %q, a %q, dweb %q", recs(v, "far"), recs(v, "a"), recs(v, "dweb"))
	}
	if recs(f.view("a"), "dweb") != "10.200.0.50" {
		t.Errorf("a's view lacks the docker container: %q", recs(f.view("a"), "dweb"))
	}
	if recs(v, "b") != "" {
		t.Errorf("b (on web only) visible at mesh's gateway: %q", recs(v, "b"))
	}
	if _, ok := f.addrs["gateway:web"]; ok {
		t.Error("web has no docker container but got a gateway listener")
	}

	// A failing listener (port 53 taken) is logged, not a pass error.
	f.fail["gateway:mesh"] = errors.New("address in use")
	delete(f.views, "gateway:mesh")
	if err := s.Apply(context.Background(), d); err != nil && f.views["gateway:mesh"].Records != nil {
		t.Errorf("apply: %v", err)
	}
	delete(f.fail, "gateway:mesh")

	// The docker container goes: so does the listener.
	d2 := pass.Build(&pass.Snapshot{Config: cfg, State: pass.NewState()}, nil)
	s.Apply(context.Background(), d2)
	s.Apply(context.Background(), d)
	s.Apply(context.Background(), d2)
	if slices.Contains(f.Attached(), "gateway:mesh") {
		t.Errorf("gateway listener left after the last docker container: %v", f.Attached())
	}
	s.Apply(context.Background(), d)
	if err := s.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.Attached(); len(got) != 0 {
		t.Errorf("after cleanup: %v", got)
	}
}

// TestGatewayOfMultiNetworkContainer: a Docker container on mesh and web
// makes both gateways answer the names of both networks (Docker's DNS
// stops at its first --dns server's NXDOMAIN).
func TestGatewayOfMultiNetworkContainer(t *testing.T) {
	cfg := mustParse(t, dnsStepConfig)
	st := pass.NewState()
	for i, n := range []string{"mesh", "web"} {
		st.Attachments = append(st.Attachments, api.AttachRequest{
			Runtime: api.RuntimeDocker, ID: "c0ffee", Name: "dweb", Network: n, IfName: []string{"eth0", "eth1"}[i],
			Placement: api.PlacementHost, DNSMode: api.DNSNone, Netns: "/var/run/docker/netns/x",
		})
	}
	d := pass.Build(&pass.Snapshot{Config: cfg, State: st}, nil)
	f := newFakeDNS()
	s := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{"gateway:mesh", "gateway:web"} {
		v := f.view(gw)
		if recs(v, "a") != "10.1.0.10 10.200.0.10" || recs(v, "b") != "10.1.0.11" || recs(v, "dweb") != "10.1.0.2 10.200.0.2" {
			t.Errorf("%s: a %q, b %q, dweb %q: want the names of mesh and web", gw, recs(v, "a"), recs(v, "b"), recs(v, "dweb"))
		}
	}
}
