package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/dockerplugin/dockerharness"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The docker area's world: two hosts as namespaces on a private underlay
// (lab/topo, namespaces "vxb-<id>-dk-*"), on each a vxmesh agent (the
// run's binary, in the host's namespace) serving the Docker plugin, and a
// dockerd inside the host's namespace and a private mount namespace
// (dockerplugin/dockerharness). Close takes it down in the order that
// leaves nothing: containers (through the plugin), dockerd, the agent,
// the engine's mounts and cgroups, then the namespaces.

// Networks of the docker area, on both hosts.
const (
	dkWeb      = "web"  // vxmesh bridge network
	dkMesh     = "mesh" // vxmesh overlay network
	dkWebNet   = "172.30.0.0/24"
	dkMeshNet  = "10.200.0.0/16"
	dkDockerBr = "dbr" // Docker's own bridge driver
	dkDockerNt = "172.31.0.0/24"
	dkSwarmOv  = "ov" // Swarm overlay
	dkSwarmNt  = "10.220.0.0/16"
	// dkSwarmPort keeps Swarm's VXLAN off vxmesh's 4789.
	dkSwarmPort = "4790"
	// dkGossipPort keeps vxmesh's memberlist off 7946, where Swarm's
	// NetworkDB gossips (a host runs both here).
	dkGossipPort = 7947
)

// dkHost is one host of the world.
type dkHost struct {
	h   *topo.Host
	eng *dockerharness.Engine
	ag  *dkAgent
}

// dockerWorld is the docker area's hosts.
type dockerWorld struct {
	tp    *topo.Topology
	hosts []*dkHost
}

// newDockerWorld builds the world; on error it removes what it made.
func (r *Runner) newDockerWorld(ctx context.Context) (w *dockerWorld, err error) {
	tp, err := topo.New(topo.Options{Prefix: NetnsPrefix + r.id + "-dk-", Hosts: 2})
	if err != nil {
		return nil, fmt.Errorf("build the docker hosts: %w", err)
	}
	w = &dockerWorld{tp: tp}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
			w = nil
		}
	}()
	for i, h := range tp.Hosts {
		if ctx.Err() != nil {
			return w, ctx.Err()
		}
		// Without --live-restore: Swarm refuses it (the baseline of the
		// overlay measures), and the bench restarts no dockerd.
		e, err := dockerharness.NewWithOptions(h.NS, dockerharness.Options{Swarm: true})
		if err != nil {
			return w, fmt.Errorf("dockerd in %s: %w", h.Name, err)
		}
		if err := recordEngine(r.dir, e.Dir); err != nil {
			e.Close()
			return w, err
		}
		dh := &dkHost{h: h, eng: e}
		w.hosts = append(w.hosts, dh)
		if err := e.ImportBusybox(); err != nil {
			return w, err
		}
		peer := tp.Hosts[1-i].Addr
		ag, err := startDkAgent(r.opts.Binary, filepath.Join(r.dir, "dk-"+h.Name), h, peer.String(), e)
		if err != nil {
			return w, err
		}
		dh.ag = ag
		// The agent stops once dockerd has removed the containers through
		// it, before the engine's mounts go (its socket keeps them busy).
		e.OnClose(func() {
			if err := ag.stop(); err != nil {
				r.logf("docker: %v", err)
			}
		})
	}
	for _, dh := range w.hosts {
		for _, args := range [][]string{
			{"network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "--ipam-opt", "vxmesh.network=" + dkWeb, "-o", "vxmesh.network=" + dkWeb, "--subnet", dkWebNet, "v" + dkWeb},
			{"network", "create", "-d", "vxmesh", "--ipam-driver", "vxmesh", "--ipam-opt", "vxmesh.network=" + dkMesh, "-o", "vxmesh.network=" + dkMesh, "--subnet", dkMeshNet, "v" + dkMesh},
			{"network", "create", "-d", "bridge", "--subnet", dkDockerNt, dkDockerBr},
		} {
			if _, err := dh.eng.DockerContext(ctx, nil, args...); err != nil {
				return w, err
			}
		}
	}
	// Host A probes its bridges' containers.
	if err := fastARP(tp.Hosts[0].NS); err != nil {
		return w, err
	}
	return w, nil
}

// Close removes everything of the world; every step runs.
func (w *dockerWorld) Close() error {
	var errs []error
	for _, dh := range w.hosts {
		if err := dh.eng.Close(); err != nil {
			errs = append(errs, fmt.Errorf("engine in %s: %w", dh.h.Name, err))
		}
		if dh.ag != nil {
			if err := dh.ag.stop(); err != nil { // if the engine's close did not
				errs = append(errs, err)
			}
		}
	}
	if err := w.tp.Teardown(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// docker runs the client against host i's engine.
func (w *dockerWorld) docker(ctx context.Context, i int, args ...string) (string, error) {
	out, err := w.hosts[i].eng.DockerContext(ctx, nil, args...)
	return strings.TrimSpace(out), err
}

// netnsOf is the path of a running container's network namespace,
// /proc/PID/ns/net: the bench opens its sockets there.
func (w *dockerWorld) netnsOf(ctx context.Context, i int, ctr string) (string, error) {
	out, err := w.docker(ctx, i, "inspect", "-f", "{{.State.Pid}}", ctr)
	if err != nil {
		return "", err
	}
	pid, err := strconv.Atoi(out)
	if err != nil || pid <= 0 {
		return "", fmt.Errorf("container %s has no pid (%q)", ctr, out)
	}
	ns := fmt.Sprintf("/proc/%d/ns/net", pid)
	if !netnsutil.Exists(ns) {
		return "", fmt.Errorf("container %s: %s is no network namespace", ctr, ns)
	}
	return ns, nil
}

// dkAgent is a vxmesh agent process in a host namespace.
type dkAgent struct {
	dir, sock string
	cmd       *exec.Cmd
	done      chan error
}

// dkAgentConfig is a docker host's config.
func dkAgentConfig(dir string, h *topo.Host, peer string, e *dockerharness.Engine) string {
	return fmt.Sprintf(`host: {name: %s, address: %s}
state_dir: %s/state
api: {socket: %s/vxmesh.sock}
docker: {plugin_socket: %s, engine_socket: %s}
cluster: {bind_port: %d, join: ["%s:%d"], reap_after: 10s}
networks:
  - {name: %s, driver: bridge, subnet: %s}
  - {name: %s, driver: overlay, subnet: %s}
`, h.Name, h.Addr, dir, dir, e.PluginSocket("vxmesh"), e.Socket(), dkGossipPort, peer, dkGossipPort, dkWeb, dkWebNet, dkMesh, dkMeshNet)
}

// startDkAgent runs the agent of h from bin with its files in dir and
// waits for its API socket.
func startDkAgent(bin, dir string, h *topo.Host, peer string, e *dockerharness.Engine) (*dkAgent, error) {
	if bin == "" {
		return nil, errors.New("no vxmesh binary to run the agents")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "host.yaml")
	if err := os.WriteFile(cfg, []byte(dkAgentConfig(dir, h, peer, e)), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	a := &dkAgent{dir: dir, sock: filepath.Join(dir, "vxmesh.sock"), done: make(chan error, 1)}
	a.cmd = exec.Command("nsenter", "--net="+netnsutil.Path(h.NS), bin, "agent", "--config", cfg, "--cleanup-on-exit")
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent in %s: %w", h.Name, err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(a.sock); err == nil {
			return a, nil
		}
		select {
		case err := <-a.done:
			a.done <- err
			a.cmd = nil
			return nil, fmt.Errorf("agent in %s exited: %v: %s", h.Name, err, a.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("agent in %s: no API socket after 30s: %s", h.Name, a.logTail())
		}
	}
}

// stop ends the agent (SIGTERM with --cleanup-on-exit: it removes what it
// made; SIGKILL after 20 s). A second stop does nothing.
func (a *dkAgent) stop() error {
	if a == nil || a.cmd == nil {
		return nil
	}
	cmd := a.cmd
	a.cmd = nil
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return nil
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("agent in %s ignored SIGTERM for 20s; killed", a.dir)
	}
}

// logTail is the end of the agent's log.
func (a *dkAgent) logTail() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// fastARP makes the namespace ns retry an unanswered ARP request every
// 10 ms instead of every second (neigh retrans_time_ms of its links):
// a probe that pings a container before it is attached would otherwise
// wait for the next 1 s retry, and every attach figure would be rounded up
// to whole seconds. ns is a probe: the host namespace of the bridge
// measures or a probe container's.
func fastARP(ns string) error {
	nh, err := topo.Handle(ns)
	if err != nil {
		return err
	}
	links, err := nh.LinkList()
	nh.Close()
	if err != nil {
		return fmt.Errorf("list links in %s: %w", ns, err)
	}
	return netnsutil.Do(ns, func() error {
		// Links only: "default" exists in the initial namespace alone.
		for _, l := range linkNames(links) {
			p := filepath.Join("/proc/sys/net/ipv4/neigh", l, "retrans_time_ms")
			if err := os.WriteFile(p, []byte("10"), 0o644); err != nil {
				return fmt.Errorf("faster ARP retries in %s: %w", ns, err)
			}
		}
		return nil
	})
}

// linkNames are the names of links, lo left out.
func linkNames(links []netlink.Link) []string {
	var out []string
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" {
			out = append(out, n)
		}
	}
	return out
}
