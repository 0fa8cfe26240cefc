package dockertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// twoNetConfig is the host config of TestContainerOnTwoNetworks: overlays
// "a" and "b".
func twoNetConfig(h *nstest.Host, peer string, e *Engine) string {
	return engineAgentConfig(h, peer, e, "  - {name: a, driver: overlay, subnet: 10.210.0.0/16}\n  - {name: b, driver: overlay, subnet: 10.211.0.0/16}\n")
}

// TestContainerOnTwoNetworks puts one container on two vxmesh Docker
// networks (docker run --network a, then docker network connect b): it
// gets an address on each and reaches peers on another engine on both by
// IP and name, they reach it; docker network disconnect, and then docker
// rm, remove exactly its endpoint on that network.
func TestContainerOnTwoNetworks(t *testing.T) {
	Require(t)
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	agents, engines := twoEngines(t, tp, twoNetConfig)
	a, b := engines[0], engines[1]
	for _, e := range engines {
		for _, n := range []string{"a", "b"} {
			e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "--ipam-opt", "vxmesh.network="+n, "-o", "vxmesh.network="+n, n)
		}
	}
	// Docker's embedded DNS forwards names it does not know to the
	// container's servers in order; each gateway resolver answers the
	// names of its network.
	dns := []string{"--dns", "10.210.0.1", "--dns", "10.211.0.1"}
	multi := strings.TrimSpace(a.MustDocker(t, append(append([]string{"run", "-d", "--network", "a"}, dns...), "--name", "multi", Image, "sleep", "3600")...))
	a.MustDocker(t, "network", "connect", "b", "multi")
	b.MustDocker(t, append(append([]string{"run", "-d", "--network", "a"}, dns...), "--name", "peera", Image, "sleep", "3600")...)
	b.MustDocker(t, append(append([]string{"run", "-d", "--network", "b"}, dns...), "--name", "peerb", Image, "sleep", "3600")...)

	ipOn := func(e *Engine, ctr, network string) string {
		t.Helper()
		ip := strings.TrimSpace(e.MustDocker(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", ctr))
		if ip == "" || ip == "<no value>" {
			t.Fatalf("%s has no address on %s", ctr, network)
		}
		return ip
	}
	ma, mb := ipOn(a, "multi", "a"), ipOn(a, "multi", "b")
	pa, pb := ipOn(b, "peera", "a"), ipOn(b, "peerb", "b")
	if !strings.HasPrefix(ma, "10.210.") || !strings.HasPrefix(mb, "10.211.") {
		t.Fatalf("multi's addresses: a %s, b %s", ma, mb)
	}
	out := a.MustDocker(t, "exec", "multi", "ip", "-o", "-4", "addr", "show")
	for _, want := range []string{"eth0", "eth1", ma + "/16", mb + "/16"} {
		if !strings.Contains(out, want) {
			t.Errorf("multi's interfaces lack %q:\n%s", want, out)
		}
	}
	ping := func(e *Engine, from, to string) error {
		if out, err := e.Docker(nil, "exec", from, "ping", "-c1", "-W1", to); err != nil {
			return fmt.Errorf("%s -> %s: %v\n%s", from, to, err, out)
		}
		return nil
	}
	reach := func(stage string, pairs [][3]any) {
		t.Helper()
		nstest.Eventually(t, 30*time.Second, func() error {
			for _, p := range pairs {
				if err := ping(p[0].(*Engine), p[1].(string), p[2].(string)); err != nil {
					return fmt.Errorf("%s: %w", stage, err)
				}
			}
			return nil
		})
	}
	reach("connected to a and b", [][3]any{
		{a, "multi", pa}, {a, "multi", "peera"}, {a, "multi", pb}, {a, "multi", "peerb"},
		{b, "peera", ma}, {b, "peera", "multi"}, {b, "peerb", mb}, {b, "peerb", "multi"},
	})
	// One vxmesh container, keyed by the engine's ID, on both networks.
	assertRuntimeID(t, agents[0], a, "multi", "a", multi)
	assertRuntimeID(t, agents[0], a, "multi", "b", multi)

	// disconnect b: exactly multi's endpoint on b goes.
	before := endpointSet(t, agents[1])
	a.MustDocker(t, "network", "disconnect", "b", "multi")
	nh := tp.Hosts[0].Handle(t)
	gone := bridge.HostVethName("docker-"+multi, "b")
	kept := bridge.HostVethName("docker-"+multi, "a")
	nstest.Eventually(t, 20*time.Second, func() error {
		after := endpointSet(t, agents[1])
		want := map[string]bool{}
		for k := range before {
			if k != "multi/b/"+mb {
				want[k] = true
			}
		}
		if d := setDiff(want, after); d != "" {
			return fmt.Errorf("endpoints host B sees after disconnect b: %s", d)
		}
		if _, err := nh.LinkByName(gone); err == nil {
			return fmt.Errorf("veth %s of multi on b left", gone)
		}
		if _, err := nh.LinkByName(kept); err != nil {
			return fmt.Errorf("veth %s of multi on a: %v", kept, err)
		}
		return nil
	})
	reach("disconnected from b", [][3]any{{a, "multi", pa}, {a, "multi", "peera"}, {b, "peera", "multi"}})
	if err := ping(b, "peerb", mb); err == nil {
		t.Errorf("peerb still reaches multi's old address %s on b", mb)
	}
	// docker network rm b on engine A: no endpoint of A's on b is left.
	a.MustDocker(t, "network", "rm", "b")

	// docker rm: multi's endpoint on a goes, the peers stay.
	a.MustDocker(t, "rm", "-f", "multi")
	nstest.Eventually(t, 20*time.Second, func() error {
		after := endpointSet(t, agents[1])
		want := map[string]bool{}
		for k := range before {
			if !strings.HasPrefix(k, "multi/") {
				want[k] = true
			}
		}
		if d := setDiff(want, after); d != "" {
			return fmt.Errorf("endpoints host B sees after rm multi: %s", d)
		}
		links, err := nh.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if n := l.Attrs().Name; strings.HasPrefix(n, "vh") || strings.HasPrefix(n, "vc") {
				return fmt.Errorf("veth %s left on host A", n)
			}
		}
		data, err := os.ReadFile(filepath.Join(agents[0].dir, "state", "docker.json"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), `"endpoints": {}`) {
			return fmt.Errorf("docker.json of host A after rm:\n%s", data)
		}
		return nil
	})
	reach("peers after rm", [][3]any{{b, "peera", pa}, {b, "peerb", pb}})
}

// endpointSet is "container/network/ip" of every endpoint agent ag knows.
func endpointSet(t *testing.T, ag *agent) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps, err := api.NewClient(ag.sock).Endpoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, ep := range eps {
		out[ep.Container+"/"+ep.Network+"/"+ep.IP] = true
	}
	return out
}

// setDiff lists what is only in want (-) or only in got (+).
func setDiff(want, got map[string]bool) string {
	var d []string
	for k := range want {
		if !got[k] {
			d = append(d, "-"+k)
		}
	}
	for k := range got {
		if !want[k] {
			d = append(d, "+"+k)
		}
	}
	return strings.Join(d, " ")
}
