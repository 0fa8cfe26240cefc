package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestBinaryAgentEndToEnd runs the real binary as the agent of a test
// host (nsenter --net only, so the namespaces it makes are visible to
// all), drives it with the CLI (status, run, exec, endpoints, rm), reloads
// on SIGHUP, and stops it with SIGTERM and --cleanup-on-exit.
func TestBinaryAgentEndToEnd(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nsenter", "ping", "iptables-restore", "cat", "sh")
	e := startE2EAgent(t)
	e.waitOK("c1")
	e.checkSecondAgentRefused()
	e.checkRunAndExec()
	e.checkListings()
	e.checkReloadAndRm()
	e.checkCleanupStop()
}

// e2eAgent is one real agent process on a one-host topology, and the CLI
// that talks to it.
type e2eAgent struct {
	t       *testing.T
	h       *nstest.Host
	bin     string
	dir     string
	sock    string
	id      string
	cfgPath string
	cmd     *exec.Cmd
	logs    *nstest.LogBuf
	exited  chan struct{}
	exitErr error
}

// ns names the test's i-th container namespace.
func (e *e2eAgent) ns(i int) string { return fmt.Sprintf("%s%s-c%d", nstest.Prefix, e.id, i) }

func startE2EAgent(t *testing.T) *e2eAgent {
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true})
	e := &e2eAgent{t: t, h: tp.Hosts[0], bin: nstest.BuildVxmesh(t), dir: t.TempDir(), sock: nstest.SocketPath(t), id: tp.ID, logs: &nstest.LogBuf{}, exited: make(chan struct{})}
	t.Cleanup(func() {
		for i := 1; i <= 4; i++ {
			netnsutil.Delete(e.ns(i))
			os.RemoveAll(filepath.Join("/etc/netns", e.ns(i)))
		}
	})
	e.cfgPath = filepath.Join(e.dir, "host.yaml")
	e.writeCfg("")
	e.cmd = exec.Command("nsenter", "--net="+netnsutil.Path(e.h.NS), "--", e.bin, "agent", "--config", e.cfgPath, "--cleanup-on-exit", "--log-level", "debug")
	e.cmd.Stdout, e.cmd.Stderr = e.logs, e.logs
	e.cmd.WaitDelay = 5 * time.Second // a child holding the pipes must not block Wait
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.exitErr = e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		select {
		case <-e.exited:
		default:
			e.cmd.Process.Kill()
			<-e.exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", e.logs.String())
		}
	})
	return e
}

// writeCfg replaces the config file (atomically) with c1 plus extra.
func (e *e2eAgent) writeCfg(extra string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`host:
  name: h1
  address: %s
state_dir: %s
api:
  socket: %s
networks:
  - name: web
    subnet: 10.71.0.0/24
containers:
  - name: c1
    netns: %s
    networks: [web]
    hostname: c1.example.test
%s`, e.h.Addr, filepath.Join(e.dir, "state"), e.sock, e.ns(1), extra)
	if err := os.WriteFile(e.cfgPath+".tmp", []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(e.cfgPath+".tmp", e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

// cli runs the binary with --socket and returns exit code, stdout, stderr.
func (e *e2eAgent) cli(args ...string) (int, string, string) {
	e.t.Helper()
	c := exec.Command(e.bin, append(args, "--socket", e.sock)...)
	if args[0] == "exec" { // flags go before the --
		c = exec.Command(e.bin, append([]string{"exec", "--socket", e.sock}, args[1:]...)...)
	}
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// waitOK waits until status lists every named container in state ok.
func (e *e2eAgent) waitOK(names ...string) {
	e.t.Helper()
	nstest.Eventually(e.t, 30*time.Second, func() error {
		code, out, errOut := e.cli("status", "--json")
		if code != 0 {
			return fmt.Errorf("status: %d %s", code, errOut)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		for _, n := range names {
			if err := containerOK(st, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// containerOK says why container n is not ok in st, or nil.
func containerOK(st api.Status, n string) error {
	for _, c := range st.Containers {
		if c.Name == n {
			if c.State != api.StateOK {
				return fmt.Errorf("%s is %s %s", n, c.State, c.Error)
			}
			return nil
		}
	}
	return fmt.Errorf("no container %s yet", n)
}

// checkSecondAgentRefused: a second agent on the same socket is refused,
// and the socket is 0600.
func (e *e2eAgent) checkSecondAgentRefused() {
	t := e.t
	out, err := exec.Command("nsenter", "--net="+netnsutil.Path(e.h.NS), "--", e.bin, "agent", "--config", e.cfgPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another agent is serving "+e.sock) {
		t.Errorf("second agent: %v: %s", err, out)
	}
	if fi, err := os.Stat(e.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v", fi.Mode(), err)
	}
}

// checkRunAndExec: run attaches r1; exec runs commands inside with the
// container's name files and exit codes, and leaves the host's alone.
func (e *e2eAgent) checkRunAndExec() {
	t := e.t
	code, out, errOut := e.cli("run", "r1", "--network", "web", "--alias", "www", "--netns", e.ns(3))
	if code != 0 || !strings.Contains(out, "r1 attached") || !strings.Contains(out, "10.71.0.3") {
		t.Fatalf("run: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := e.cli("run", "r2", "--network", "nope"); code != 1 || errOut != "vxmesh run: network \"nope\" not found\n" {
		t.Errorf("run on unknown network: %d %q", code, errOut)
	}
	hostsBefore, _ := os.ReadFile("/etc/hosts")
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"exec", "c1", "--", "cat", "/etc/hostname"}, 0, "c1.example.test\n"},
		{[]string{"exec", "r1", "--", "sh", "-c", "grep www /etc/hosts"}, 0, "10.71.0.3\tr1 www\n"},
		{[]string{"exec", "c1", "--", "ping", "-c1", "-W2", "-q", "10.71.0.3"}, 0, "1 received"},
		{[]string{"exec", "r1", "--", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"}, 0, "eth0 lo "},
		{[]string{"exec", "r1", "--", "sh", "-c", "exit 3"}, 3, ""},
		{[]string{"exec", "r1", "--", "no-such-command-xyz"}, 127, ""},
	} {
		code, out, errOut := e.cli(c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%v: exit %d, out %q, err %q; want %d, %q", c.args, code, out, errOut, c.code, c.out)
		}
	}
	if after, _ := os.ReadFile("/etc/hosts"); !bytes.Equal(hostsBefore, after) {
		t.Error("exec changed the host's /etc/hosts")
	}
	if code, _, errOut := e.cli("exec", "nope", "--", "true"); code != 1 || errOut != "vxmesh exec: container \"nope\" not found\n" {
		t.Errorf("exec in unknown container: %d %q", code, errOut)
	}
}

// checkListings: endpoints and networks show what is attached.
func (e *e2eAgent) checkListings() {
	t := e.t
	code, out, _ := e.cli("endpoints", "--network", "web")
	if code != 0 || !strings.Contains(out, "c1         web      h1    10.71.0.2") || !strings.Contains(out, "r1         web      h1    10.71.0.3") {
		t.Errorf("endpoints: %d\n%s", code, out)
	}
	if code, out, _ := e.cli("networks"); code != 0 || !strings.Contains(out, "web      bridge  10.71.0.0/24  10.71.0.1") {
		t.Errorf("networks: %d\n%s", code, out)
	}
}

// checkReloadAndRm: SIGHUP reloads (c2 appears; the file poller would
// too, either way), and rm removes r1 with its namespace.
func (e *e2eAgent) checkReloadAndRm() {
	t := e.t
	e.writeCfg(fmt.Sprintf("  - name: c2\n    netns: %s\n    networks: [web]\n", e.ns(2)))
	e.cmd.Process.Signal(syscall.SIGHUP)
	e.waitOK("c1", "c2", "r1")
	if code, _, errOut := e.cli("rm", "r1"); code != 0 {
		t.Fatalf("rm: %d %q", code, errOut)
	}
	if netnsutil.Exists(e.ns(3)) {
		t.Error("r1's namespace survived rm")
	}
}

// checkCleanupStop: SIGTERM with --cleanup-on-exit leaves nothing.
func (e *e2eAgent) checkCleanupStop() {
	t := e.t
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		if e.exitErr != nil {
			t.Fatalf("agent exit: %v", e.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	for _, w := range []string{`msg="added veth"`, `msg="config reloaded"`, `msg="cleaned up everything vxmesh created"`} {
		if !strings.Contains(e.logs.String(), w) {
			t.Errorf("agent log lacks %s", w)
		}
	}
	for _, n := range []string{e.ns(1), e.ns(2), e.ns(3)} {
		if netnsutil.Exists(n) {
			t.Errorf("namespace %s left after cleanup", n)
		}
	}
	if out, _ := e.h.Run("ip", "-o", "link", "show"); strings.Contains(out, "vxmesh:") || strings.Contains(out, "br-web") {
		t.Errorf("links left after cleanup:\n%s", out)
	}
	if out, _ := e.h.Run("iptables-save"); strings.Contains(out, "VXMESH") {
		t.Errorf("iptables left after cleanup:\n%s", out)
	}
	if _, err := os.Stat(e.sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
}
