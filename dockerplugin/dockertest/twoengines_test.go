package dockertest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestTwoEnginesOneNetwork is issue 15's acceptance test: two lab hosts,
// each with a vxmesh agent and a dockerd whose plugin directory holds that
// agent's plugin socket; one Docker network on both engines is vxmesh's
// overlay "mesh".
func TestTwoEnginesOneNetwork(t *testing.T) {
	Require(t)
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	agents, engines := twoEngines(t, tp, agentConfig)
	a, b := engines[0], engines[1]
	for _, e := range engines {
		e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "-o", "vxmesh.network=mesh", "mesh")
	}
	id1 := strings.TrimSpace(a.MustDocker(t, "run", "-d", "--network", "mesh", "--dns", "10.200.0.1", "--name", "web1", "-p", "8080:80", Image,
		"sh", "-c", "mkdir -p /www && echo hello-from-web1 > /www/index.html && httpd -f -p 80 -h /www"))
	id2 := strings.TrimSpace(b.MustDocker(t, "run", "-d", "--network", "mesh", "--dns", "10.200.0.1", "--name", "web2", Image, "sleep", "3600"))
	ip1 := strings.TrimSpace(a.MustDocker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web1"))
	ip2 := strings.TrimSpace(b.MustDocker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web2"))
	if ip1 == ip2 || ip1 == "" {
		t.Fatalf("addresses %q and %q: want two different ones", ip1, ip2)
	}

	reach := func(stage string) {
		t.Helper()
		nstest.Eventually(t, 20*time.Second, func() error {
			if out, err := b.Docker(nil, "exec", "web2", "ping", "-c1", "-W1", ip1); err != nil {
				return fmt.Errorf("%s: web2 -> web1 %s: %v\n%s", stage, ip1, err, out)
			}
			if out, err := a.Docker(nil, "exec", "web1", "ping", "-c1", "-W1", ip2); err != nil {
				return fmt.Errorf("%s: web1 -> web2 %s: %v\n%s", stage, ip2, err, out)
			}
			if out, err := b.Docker(nil, "exec", "web2", "ping", "-c1", "-W1", "web1"); err != nil {
				return fmt.Errorf("%s: web2 -> web1 by name: %v\n%s", stage, err, out)
			}
			// -p 8080:80 on engine A answers from host B.
			if out, err := nstest.RunIn(tp.Hosts[1].NS, "wget", "-q", "-O-", "-T", "2", "http://"+tp.Hosts[0].Addr.String()+":8080/"); err != nil || !strings.Contains(out, "hello-from-web1") {
				return fmt.Errorf("%s: host B -> A:8080: %v\n%s", stage, err, out)
			}
			return nil
		})
	}
	reach("start")
	// vxmesh endpoints and inspect name the engine's container IDs.
	assertRuntimeID(t, agents[0], a, "web1", "mesh", id1)
	assertRuntimeID(t, agents[1], b, "web2", "mesh", id2)

	// dockerd restarts (--live-restore): nothing is lost.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	reach("after dockerd restart")

	// The agent restarts: it adopts the endpoints it made for Docker.
	if err := agents[0].stop(false); err != nil {
		t.Fatal(err)
	}
	agents[0].start(t)
	reach("after agent restart")

	// docker network rm removes exactly what was made.
	a.MustDocker(t, "rm", "-f", "web1")
	b.MustDocker(t, "rm", "-f", "web2")
	for _, e := range engines {
		e.MustDocker(t, "network", "rm", "mesh")
	}
	for i, h := range tp.Hosts {
		nh := h.Handle(t)
		nstest.Eventually(t, 20*time.Second, func() error {
			links, err := nh.LinkList()
			if err != nil {
				return err
			}
			for _, l := range links {
				if n := l.Attrs().Name; strings.HasPrefix(n, "vh") || strings.HasPrefix(n, "vc") {
					return fmt.Errorf("%s: veth %s left after docker rm and network rm", h.Name, n)
				}
			}
			data, err := os.ReadFile(filepath.Join(agents[i].dir, "state", "docker.json"))
			if err != nil {
				return err
			}
			if !strings.Contains(string(data), `"networks": {}`) || !strings.Contains(string(data), `"endpoints": {}`) {
				return fmt.Errorf("%s: docker.json after network rm:\n%s", h.Name, data)
			}
			return nil
		})
	}
}

// TestAttachSideBySide measures what docs/benchmarks.md reports: the time
// of `docker run --rm IMAGE true` on a vxmesh bridge network (through the
// agent) and on Docker's own bridge network, on the same engine, in turns.
func TestAttachSideBySide(t *testing.T) {
	Require(t)
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	e := Start(t, h.NS)
	e.ImportBusybox(t)
	// A vxmesh bridge network against Docker's: one host, like for like.
	ag := startAgent(t, h, fmt.Sprintf(`host: {name: %s, address: %s}
state_dir: DIR/state
api: {socket: DIR/vxmesh.sock}
docker: {plugin_socket: %s, engine_socket: %s}
networks:
  - {name: web, driver: bridge, subnet: 172.30.0.0/24}
`, h.Name, h.Addr, e.PluginSocket("vxmesh"), e.Socket()))
	e.OnClose(func() {
		if err := ag.stop(true); err != nil {
			t.Error(err)
		}
	})
	e.MustDocker(t, "network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "-o", "vxmesh.network=web", "--subnet", "172.30.0.0/24", "vweb")
	e.MustDocker(t, "network", "create", "-d", "bridge", "--subnet", "172.31.0.0/24", "dbr")
	const runs = 10
	times := map[string][]time.Duration{}
	for i := 0; i < runs; i++ {
		for _, net := range []string{"vweb", "dbr"} {
			start := time.Now()
			e.MustDocker(t, "run", "--rm", "--network", net, Image, "true")
			times[net] = append(times[net], time.Since(start))
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("docker run --rm (attach, run, detach), %d runs each, p50: vxmesh %v, docker bridge %v, ratio %.2f; load %s",
		runs, p50(times["vweb"]), p50(times["dbr"]), float64(p50(times["vweb"]))/float64(p50(times["dbr"])), strings.TrimSpace(string(load)))
	e.MustDocker(t, "network", "rm", "vweb", "dbr")
}
