package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// syncBuf is a bytes.Buffer safe for a process writing while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildBinary builds cmd/vxmesh into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go" // where .ci/install-deps puts it
	}
	bin := filepath.Join(t.TempDir(), "vxmesh")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinaryAgentEndToEnd runs the real binary as the agent of a test
// host (nsenter --net only, so the namespaces it makes are visible to
// all), drives it with the CLI (status, run, exec, endpoints, rm), reloads
// on SIGHUP, and stops it with SIGTERM and --cleanup-on-exit.
func TestBinaryAgentEndToEnd(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nsenter", "ping", "iptables-restore", "cat", "sh")
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true})
	h := tp.Hosts[0]
	bin := buildBinary(t)
	dir := t.TempDir()
	sock := nstest.SocketPath(t)
	ns := func(i int) string { return fmt.Sprintf("%s%s-c%d", nstest.Prefix, tp.ID, i) }
	t.Cleanup(func() {
		for i := 1; i <= 4; i++ {
			netnsutil.Delete(ns(i))
			os.RemoveAll(filepath.Join("/etc/netns", ns(i)))
		}
	})
	cfgPath := filepath.Join(dir, "host.yaml")
	writeCfg := func(extra string) {
		t.Helper()
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
%s`, h.Addr, filepath.Join(dir, "state"), sock, ns(1), extra)
		if err := os.WriteFile(cfgPath+".tmp", []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("")

	var logs syncBuf
	agentCmd := exec.Command("nsenter", "--net="+netnsutil.Path(h.NS), "--", bin, "agent", "--config", cfgPath, "--cleanup-on-exit", "--log-level", "debug")
	agentCmd.Stdout, agentCmd.Stderr = &logs, &logs
	agentCmd.WaitDelay = 5 * time.Second // a child holding the pipes must not block Wait
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = agentCmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			agentCmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	cli := func(args ...string) (int, string, string) {
		t.Helper()
		c := exec.Command(bin, append(args, "--socket", sock)...)
		if args[0] == "exec" { // flags go before the --
			c = exec.Command(bin, append([]string{"exec", "--socket", sock}, args[1:]...)...)
		}
		var out, errOut bytes.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}
	waitOK := func(names ...string) api.Status {
		t.Helper()
		var st api.Status
		nstest.Eventually(t, 30*time.Second, func() error {
			code, out, errOut := cli("status", "--json")
			if code != 0 {
				return fmt.Errorf("status: %d %s", code, errOut)
			}
			st = api.Status{}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return err
			}
			for _, n := range names {
				found := false
				for _, c := range st.Containers {
					if c.Name == n {
						found = true
						if c.State != api.StateOK {
							return fmt.Errorf("%s is %s %s", n, c.State, c.Error)
						}
					}
				}
				if !found {
					return fmt.Errorf("no container %s yet", n)
				}
			}
			return nil
		})
		return st
	}
	waitOK("c1")

	// A second agent on the same socket is refused.
	out, err := exec.Command("nsenter", "--net="+netnsutil.Path(h.NS), "--", bin, "agent", "--config", cfgPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another agent is serving "+sock) {
		t.Errorf("second agent: %v: %s", err, out)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v", fi.Mode(), err)
	}

	code, out2, errOut := cli("run", "r1", "--network", "web", "--alias", "www", "--netns", ns(3))
	if code != 0 || !strings.Contains(out2, "r1 attached") || !strings.Contains(out2, "10.71.0.3") {
		t.Fatalf("run: %d %q %q", code, out2, errOut)
	}
	if code, _, errOut := cli("run", "r2", "--network", "nope"); code != 1 || errOut != "vxmesh run: network \"nope\" not found\n" {
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
		code, out, errOut := cli(c.args...)
		if code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("%v: exit %d, out %q, err %q; want %d, %q", c.args, code, out, errOut, c.code, c.out)
		}
	}
	if after, _ := os.ReadFile("/etc/hosts"); !bytes.Equal(hostsBefore, after) {
		t.Error("exec changed the host's /etc/hosts")
	}
	if code, _, errOut := cli("exec", "nope", "--", "true"); code != 1 || errOut != "vxmesh exec: container \"nope\" not found\n" {
		t.Errorf("exec in unknown container: %d %q", code, errOut)
	}

	code, out2, _ = cli("endpoints", "--network", "web")
	if code != 0 || !strings.Contains(out2, "c1         web      h1    10.71.0.2") || !strings.Contains(out2, "r1         web      h1    10.71.0.3") {
		t.Errorf("endpoints: %d\n%s", code, out2)
	}
	if code, out, _ := cli("networks"); code != 0 || !strings.Contains(out, "web      bridge  10.71.0.0/24  10.71.0.1") {
		t.Errorf("networks: %d\n%s", code, out)
	}

	// SIGHUP reloads: c2 appears (the file poller would too; either way).
	writeCfg(fmt.Sprintf("  - name: c2\n    netns: %s\n    networks: [web]\n", ns(2)))
	agentCmd.Process.Signal(syscall.SIGHUP)
	waitOK("c1", "c2", "r1")
	if code, _, errOut := cli("rm", "r1"); code != 0 {
		t.Fatalf("rm: %d %q", code, errOut)
	}
	if netnsutil.Exists(ns(3)) {
		t.Error("r1's namespace survived rm")
	}

	// SIGTERM with --cleanup-on-exit leaves nothing.
	agentCmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("agent exit: %v", exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	for _, w := range []string{`msg="added veth"`, `msg="config reloaded"`, `msg="cleaned up everything vxmesh created"`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("agent log lacks %s", w)
		}
	}
	for _, n := range []string{ns(1), ns(2), ns(3)} {
		if netnsutil.Exists(n) {
			t.Errorf("namespace %s left after cleanup", n)
		}
	}
	if out, _ := h.Run("ip", "-o", "link", "show"); strings.Contains(out, "vxmesh:") || strings.Contains(out, "br-web") {
		t.Errorf("links left after cleanup:\n%s", out)
	}
	if out, _ := h.Run("iptables-save"); strings.Contains(out, "VXMESH") {
		t.Errorf("iptables left after cleanup:\n%s", out)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
}
