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
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestCrashMidApply kills the real agent binary (SIGKILL, through the
// VXMESH_FAULT hook) at several points of its first pass, restarts it, and
// checks that it converges with nothing half-applied, and that a
// --cleanup-on-exit stop then leaves nothing: no namespace, link, chain or
// name file.
func TestCrashMidApply(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nsenter", "iptables-save", "go")
	bin := nstest.BuildVxmesh(t)
	for _, point := range []string{
		bridge.FaultAfterNetnsCreate,
		bridge.FaultAfterVethCreate,
		bridge.FaultMidIptablesSync,
		FaultBeforeStateFlush,
	} {
		t.Run(point, func(t *testing.T) {
			c := newCrashRig(t, bin)
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
}

func newCrashRig(t *testing.T, bin string) *crashRig {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
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
	cfg := fmt.Sprintf(`host:
  name: h1
  address: %s
state_dir: %s
api:
  socket: %s
networks:
  - name: web
    subnet: 10.72.0.0/24
containers:
  - name: c1
    netns: %s
    networks: [web]
    publish: ["8080:80"]
  - name: c2
    netns: %s
    networks: [web]
`, c.host.Addr, filepath.Join(c.dir, "state"), c.sock, c.ns[0], c.ns[1])
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
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
	if out, _ := c.host.Run("ip", "-d", "-o", "link"); strings.Contains(out, "vxmesh:") {
		left = append(left, "links:\n"+out)
	}
	if out, _ := c.host.Run("iptables-save"); strings.Contains(out, "VXMESH") {
		left = append(left, "rules:\n"+out)
	}
	return left
}
