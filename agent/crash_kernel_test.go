package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestCrashMidApply kills the real agent binary (SIGKILL, through the
// VXMESH_FAULT hook) at several points of its first pass, restarts it, and
// checks that it converges with nothing half-applied, and that a
// --cleanup-on-exit stop then leaves nothing: no namespace, link, chain or
// name file. For mid-fdb-sync the host also has an overlay network and a
// second host (its own agent, one container on the overlay), so the crash
// comes after the first of the entries for that container was written;
// the restarted agent must hold exactly its FDB, flood and neighbour
// entries.
func TestCrashMidApply(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nsenter", "iptables-save", "go")
	bin := nstest.BuildVxmesh(t)
	for _, point := range []string{
		bridge.FaultAfterNetnsCreate,
		bridge.FaultAfterVethCreate,
		bridge.FaultMidIptablesSync,
		FaultBeforeStateFlush,
		overlaystep.FaultMidFDBSync,
	} {
		t.Run(point, func(t *testing.T) {
			c := newCrashRig(t, bin, point == overlaystep.FaultMidFDBSync)
			// 1. Killed at the point.
			_, done, logs := c.start(point, false)
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !asExit(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("agent ended with %v, want killed at %s; log:\n%s", err, point, logs)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("agent never reached %s; log:\n%s", point, logs)
			}
			// 2. Restarted: converges.
			cmd, done, logs := c.start("", true)
			c.converged(logs)
			// 3. Stopped with --cleanup-on-exit: nothing left.
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("agent stop: %v; log:\n%s", err, logs)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("agent did not stop; log:\n%s", logs)
			}
			if left := c.leftovers(); len(left) > 0 {
				t.Errorf("left after cleanup: %s; log of the restarted agent:\n%s", strings.Join(left, "; "), logs)
			}
		})
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// crashRig is one test host and the real binary with its config.
type crashRig struct {
	t    *testing.T
	bin  string
	host *nstest.Host
	dir  string
	cfg  string
	sock string
	ns   []string
	// peer is the second host of an overlay rig (nil without): its
	// agent runs the container peerIP on the overlay.
	peer   *nstest.Host
	peerIP string
}

func newCrashRig(t *testing.T, bin string, withOverlay bool) *crashRig {
	hosts := 1
	if withOverlay {
		hosts = 2
	}
	tp := nstest.New(t, nstest.Options{Hosts: hosts})
	c := &crashRig{t: t, bin: bin, host: tp.Hosts[0], dir: t.TempDir(), sock: nstest.SocketPath(t)}
	for i := 1; i <= 2; i++ {
		c.ns = append(c.ns, fmt.Sprintf("%s%s-c%d", nstest.Prefix, tp.ID, i))
	}
	t.Cleanup(func() {
		for _, ns := range c.ns {
			netnsutil.Delete(ns)
			os.RemoveAll(filepath.Join("/etc/netns", ns))
		}
	})
	c.cfg = filepath.Join(c.dir, "host.yaml")
	cluster, mesh, c1nets := "", "", "[web]"
	if withOverlay {
		c.peer, c.peerIP = tp.Hosts[1], "10.73.2.2"
		cluster = fmt.Sprintf("cluster:\n  join: [%s]\n", c.peer.Addr)
		mesh = "  - name: mesh\n    driver: overlay\n    subnet: 10.73.0.0/16\n"
		c1nets = "[web, mesh]"
		c.startPeer(fmt.Sprintf("%s%s-p1", nstest.Prefix, tp.ID))
	}
	cfg := fmt.Sprintf(`host:
  name: h1
  address: %s
state_dir: %s
api:
  socket: %s
%snetworks:
  - name: web
    subnet: 10.72.0.0/24
%scontainers:
  - name: c1
    netns: %s
    networks: %s
    publish: ["8080:80"]
  - name: c2
    netns: %s
    networks: [web]
`, c.host.Addr, filepath.Join(c.dir, "state"), c.sock, cluster, mesh, c.ns[0], c1nets, c.ns[1])
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// startPeer runs the second host's agent (--cleanup-on-exit, stopped at
// cleanup) with one container, in namespace ns, on the overlay at peerIP.
func (c *crashRig) startPeer(ns string) {
	t := c.t
	dir := t.TempDir()
	cfg := filepath.Join(dir, "peer.yaml")
	text := fmt.Sprintf(`host:
  name: h2
  address: %s
state_dir: %s
api:
  socket: %s
cluster:
  join: [%s]
networks:
  - name: mesh
    driver: overlay
    subnet: 10.73.0.0/16
containers:
  - name: p1
    netns: %s
    networks: [mesh]
    ip: {mesh: %s}
`, c.peer.Addr, filepath.Join(dir, "state"), nstest.SocketPath(t), c.host.Addr, ns, c.peerIP)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+netnsutil.Path(c.peer.NS), "--", c.bin, "agent", "--config", cfg, "--cleanup-on-exit")
	logs := &nstest.LogBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		netnsutil.Delete(ns)
		os.RemoveAll(filepath.Join("/etc/netns", ns))
		if t.Failed() {
			t.Logf("peer agent log:\n%s", logs)
		}
	})
}

// overlayEntries checks that the host's VXLAN device holds exactly the
// peer container's entries: one FDB entry and one flood entry to the
// peer, one permanent neighbour entry for its address.
func (c *crashRig) overlayEntries() error {
	out, err := c.host.Run("ip", "-o", "link", "show", "type", "vxlan")
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return fmt.Errorf("no vxlan device: %q", out)
	}
	dev := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
	fdb, _ := c.host.Run("bridge", "fdb", "show", "dev", dev)
	var uni, flood int
	for _, l := range strings.Split(fdb, "\n") {
		if !strings.Contains(l, "dst "+c.peer.Addr.String()) {
			continue
		}
		if strings.HasPrefix(l, "00:00:00:00:00:00") {
			flood++
		} else if strings.Contains(l, "permanent") {
			uni++
		}
	}
	neigh, _ := c.host.Run("ip", "-4", "neigh", "show", "dev", dev, "nud", "permanent")
	if uni != 1 || flood != 1 || strings.Count(neigh, "lladdr") != 1 || !strings.Contains(neigh, c.peerIP+" ") {
		return fmt.Errorf("entries on %s: %d fdb, %d flood, neighbours %q; want 1, 1, %s:\n%s", dev, uni, flood, neigh, c.peerIP, fdb)
	}
	return nil
}

// start runs the agent binary in the host's namespace, with the crash
// point fault ("" none).
func (c *crashRig) start(fault string, cleanup bool) (*exec.Cmd, chan error, *nstest.LogBuf) {
	args := []string{"--net=" + netnsutil.Path(c.host.NS), "--", c.bin, "agent", "--config", c.cfg, "--log-level", "debug"}
	if cleanup {
		args = append(args, "--cleanup-on-exit")
	}
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), FaultEnv+"="+fault)
	logs := &nstest.LogBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	c.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return cmd, done, logs
}

// converged waits until every container is ok and the kernel holds what
// they need, once each: addresses, one host veth each, the DNAT rule, the
// name files.
func (c *crashRig) converged(logs *nstest.LogBuf) {
	t := c.t
	cl := api.NewClient(c.sock)
	nstest.Eventually(t, 30*time.Second, func() error {
		cs, err := cl.Containers(context.Background())
		if err != nil {
			return err
		}
		if len(cs) != 2 {
			return fmt.Errorf("%d containers", len(cs))
		}
		for _, ct := range cs {
			if ct.State != api.StateOK {
				return fmt.Errorf("%s is %s: %s", ct.Name, ct.State, ct.Error)
			}
		}
		for _, ns := range c.ns {
			out, err := nstest.RunIn(ns, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
			if err != nil || !strings.Contains(out, "10.72.0.") {
				return fmt.Errorf("%s eth0: %q %v", ns, out, err)
			}
			if _, err := os.Stat(filepath.Join("/etc/netns", ns, "hosts")); err != nil {
				return err
			}
		}
		out, _ := c.host.Run("ip", "-o", "link", "show", "master", "br-web")
		if n := strings.Count(out, "\n"); n != 2 {
			return fmt.Errorf("%d ports on br-web, want 2:\n%s", n, out)
		}
		if out, _ := c.host.Run("iptables", "-t", "nat", "-S", "VXMESH-DNAT"); strings.Count(out, "--dport 8080") != 1 {
			return fmt.Errorf("DNAT chain:\n%s", out)
		}
		if c.peer != nil {
			return c.overlayEntries()
		}
		return nil
	})
	if t.Failed() {
		t.Logf("agent log:\n%s", logs)
	}
}

// leftovers lists what is still there after a cleanup.
func (c *crashRig) leftovers() []string {
	var left []string
	names, _ := netnsutil.List()
	for _, ns := range c.ns {
		for _, n := range names {
			if n == ns {
				left = append(left, "netns "+ns)
			}
		}
		if _, err := os.Stat(filepath.Join("/etc/netns", ns)); err == nil {
			left = append(left, "dir /etc/netns/"+ns)
		}
	}
	if out, _ := c.host.Run("ip", "-d", "-o", "link"); strings.Contains(out, "vxmesh:") || strings.Contains(out, "vxlan id") {
		left = append(left, "links:\n"+out)
	}
	if out, _ := c.host.Run("iptables-save"); strings.Contains(out, "VXMESH") {
		left = append(left, "rules:\n"+out)
	}
	return left
}
