package dockertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// Real vxmesh agents next to real engines: one agent process per lab host,
// its docker.plugin_socket in that host's engine plugin directory.

// vxmeshBinary builds ./cmd/vxmesh into the test's temporary directory
// (the build cache makes a second build a link).
func vxmeshBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vxmesh")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vxmesh/vxmesh/cmd/vxmesh").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vxmesh: %v\n%s", err, out)
	}
	return bin
}

// agent is one vxmesh agent process in a lab host.
type agent struct {
	host, dir, cfg, sock, bin string
	cmd                       *exec.Cmd
	done                      chan error
	log                       *os.File
}

// agentConfig is the host config of a two-engine test: overlay "mesh".
func agentConfig(h *nstest.Host, peer string, e *Engine) string {
	return engineAgentConfig(h, peer, e, "  - {name: mesh, driver: overlay, subnet: 10.200.0.0/16}\n")
}

// engineAgentConfig is the host config of an agent serving engine e's
// plugin, joining peer, with the given network list entries.
func engineAgentConfig(h *nstest.Host, peer string, e *Engine, networks string) string {
	return fmt.Sprintf(`host: {name: %s, address: %s}
state_dir: DIR/state
api: {socket: DIR/vxmesh.sock}
docker: {plugin_socket: %s, engine_socket: %s}
cluster: {join: [%s], reap_after: 10s}
networks:
%s`, h.Name, h.Addr, e.PluginSocket("vxmesh"), e.Socket(), peer, networks)
}

// startAgent runs the agent of host h; stop (registered by the caller
// before the engines, so it runs after their cleanup) ends it.
func startAgent(t *testing.T, h *nstest.Host, config string) *agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "vxt-dka-")
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{host: h.NS, dir: dir, cfg: filepath.Join(dir, "host.yaml"), sock: filepath.Join(dir, "vxmesh.sock"), bin: vxmeshBinary(t)}
	if err := os.WriteFile(a.cfg, []byte(strings.ReplaceAll(config, "DIR", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	return a
}

func (a *agent) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(a.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	a.log = log
	a.cmd = exec.Command("nsenter", "--net=/run/netns/"+a.host, a.bin, "agent", "--config", a.cfg, "--cleanup-on-exit")
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.done = make(chan error, 1)
	go func() { a.done <- a.cmd.Wait() }()
	nstest.Eventually(t, 20*time.Second, func() error {
		if _, err := os.Stat(a.sock); err != nil {
			return fmt.Errorf("agent in %s: no API socket yet: %v\n%s", a.host, err, a.logTail())
		}
		return nil
	})
}

// stop ends the agent with SIGTERM (SIGKILL after 20 s); cleanup removes
// what it made, else it keeps the kernel state for the next agent.
func (a *agent) stop(cleanup bool) error {
	if a.cmd == nil || a.cmd.Process == nil {
		return nil
	}
	if !cleanup {
		// A restart that keeps state: SIGKILL is the plain crash; the
		// contract's SIGTERM without --cleanup-on-exit is the same here.
		a.cmd.Process.Signal(syscall.SIGKILL)
	} else {
		a.cmd.Process.Signal(syscall.SIGTERM)
	}
	var err error
	select {
	case err = <-a.done:
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		err = <-a.done
	}
	a.cmd = nil
	a.log.Close()
	if cleanup {
		os.RemoveAll(a.dir)
	}
	if err != nil && cleanup {
		return fmt.Errorf("agent in %s: %v", a.host, err)
	}
	return nil
}

func (a *agent) logTail() string {
	data, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// twoEngines starts, on each of tp's two hosts, a dockerd with the busybox
// image and a vxmesh agent (config from config, joining the other host)
// serving its plugin socket. Each agent stops after its dockerd (whose
// cleanup removes the containers through it) and before the engine's
// mounts go: its bound plugin socket keeps the engine's directory busy.
func twoEngines(t *testing.T, tp *nstest.Topology, config func(h *nstest.Host, peer string, e *Engine) string) ([]*agent, []*Engine) {
	t.Helper()
	var agents []*agent
	var engines []*Engine
	for i, h := range tp.Hosts {
		e := Start(t, h.NS)
		e.ImportBusybox(t)
		engines = append(engines, e)
		ag := startAgent(t, h, config(h, tp.Hosts[1-i].Addr.String(), e))
		agents = append(agents, ag)
		e.OnClose(func() {
			if err := ag.stop(true); err != nil {
				t.Error(err)
			}
		})
	}
	return agents, engines
}
