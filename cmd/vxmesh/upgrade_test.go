package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// unitFile is the systemd unit the upgrade test holds to its word.
const unitFile = "../../examples/systemd/vxmesh.service"

// unitCapabilities reads CapabilityBoundingSet= of the unit as setpriv's
// --bounding-set argument: "-all,+net_admin,…".
func unitCapabilities(t *testing.T) string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet=")
		if !ok {
			continue
		}
		set := "-all"
		for c := range strings.FieldsSeq(v) {
			set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		}
		return set
	}
	t.Fatalf("%s has no CapabilityBoundingSet=", unitFile)
	return ""
}

// binAgent is one agent process of the test, run as the unit runs it: the
// unit's capability bounding set, no new privileges, in the host's netns.
type binAgent struct {
	cmd    *exec.Cmd
	logs   *nstest.LogBuf
	exited chan struct{}
	err    error
}

func startBinAgent(t *testing.T, bin, hostNS, cfg, caps string, logs *nstest.LogBuf) *binAgent {
	t.Helper()
	a := &binAgent{logs: logs, exited: make(chan struct{})}
	a.cmd = exec.Command("nsenter", "--net="+netnsutil.Path(hostNS), "--",
		"setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set="+caps, "--", bin, "agent", "--config", cfg)
	a.cmd.Stdout, a.cmd.Stderr = logs, logs
	a.cmd.WaitDelay = 5 * time.Second
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Kill()
			<-a.exited
		}
	})
	return a
}

// stop sends SIGTERM, as systemctl stop does, and waits within the unit's
// TimeoutStopSec.
func (a *binAgent) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop within TimeoutStopSec on SIGTERM\n%s", a.logs.String())
	}
	if a.err != nil {
		t.Fatalf("agent exited with %v on SIGTERM\n%s", a.err, a.logs.String())
	}
}

// TestBinaryUpgradeUnderTraffic is the documented upgrade path: on each
// host in turn, stop the agent (SIGTERM), put a new binary in place and
// start it; a container on h1 pings one on h2 across the overlay all the
// while and must lose nothing. The agents run with exactly the unit's
// capability set, which checks that set is enough.
func TestBinaryUpgradeUnderTraffic(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nsenter", "setpriv", "ping", "iptables-restore")
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	oldBin := nstest.BuildVxmesh(t)
	newBin := filepath.Join(t.TempDir(), "vxmesh-new")
	if data, err := os.ReadFile(oldBin); err != nil || os.WriteFile(newBin, data, 0o755) != nil {
		t.Fatalf("copy the binary: %v", err)
	}
	caps := unitCapabilities(t)
	ns := func(i int) string { return fmt.Sprintf("%s%s-c%d", nstest.Prefix, tp.ID, i) }
	t.Cleanup(func() {
		for i := 1; i <= 2; i++ {
			netnsutil.Delete(ns(i))
			os.RemoveAll(filepath.Join("/etc/netns", ns(i)))
		}
	})
	dir := t.TempDir()
	var cfgs, socks []string
	logs := []*nstest.LogBuf{{}, {}}
	for i, h := range tp.Hosts {
		other := tp.Hosts[1-i]
		sock := nstest.SocketPath(t)
		cfg := filepath.Join(dir, h.Name+".yaml")
		yaml := fmt.Sprintf(`host: {name: %s, address: %s}
state_dir: %s
api: {socket: %s}
cluster: {join: [%s]}
networks:
  - {name: mesh, driver: overlay, subnet: 10.72.0.0/16, vni: 4272}
containers:
  - {name: c%d, netns: %s, networks: [mesh], ip: {mesh: 10.72.%d.10}}
`, h.Name, h.Addr, filepath.Join(dir, h.Name), sock, other.Addr, i+1, ns(i+1), i+1)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfgs, socks = append(cfgs, cfg), append(socks, sock)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range logs {
				t.Logf("agent h%d log:\n%s", i+1, logs[i].String())
			}
		}
	})
	agents := make([]*binAgent, 2)
	for i, h := range tp.Hosts {
		agents[i] = startBinAgent(t, oldBin, h.NS, cfgs[i], caps, logs[i])
	}
	ping := func(count string, interval string) *exec.Cmd {
		return exec.Command("nsenter", "--net="+netnsutil.Path(ns(1)), "--", "ping", "-n", "-q", "-i", interval, "-W", "1", "-c", count, "10.72.2.10")
	}
	nstest.Eventually(t, 60*time.Second, func() error {
		out, err := ping("1", "1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("c1 -> c2 across the overlay: %v\n%s", err, out)
		}
		return nil
	})

	// 800 pings, one every 10 ms: 8 s of traffic or more, while both
	// hosts upgrade.
	traffic := ping("800", "0.01")
	out := &nstest.LogBuf{}
	traffic.Stdout, traffic.Stderr = out, out
	if err := traffic.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- traffic.Wait() }()
	start := time.Now()
	for i, h := range tp.Hosts {
		agents[i].stop(t)
		agents[i] = startBinAgent(t, newBin, h.NS, cfgs[i], caps, logs[i])
		waitContainerOK(t, socks[i], fmt.Sprintf("c%d", i+1))
	}
	upgraded := time.Now()
	t.Logf("both hosts upgraded in %s", upgraded.Sub(start).Round(time.Millisecond))
	select {
	case err := <-done:
		if err != nil && !strings.Contains(out.String(), "received") { // ping exits 1 on loss: counted below
			t.Fatalf("ping: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		traffic.Process.Kill()
		t.Fatal("ping did not finish")
	}
	sent, got := pingCounts(out.String())
	if sent != 800 || got != sent {
		t.Errorf("%d of %d pings answered across two agent upgrades:\n%s", got, sent, out.String())
	}
	if upgraded.After(start.Add(8 * time.Second)) {
		t.Logf("note: the upgrades (%s) outlasted part of the traffic", upgraded.Sub(start))
	}
}

// waitContainerOK polls the agent on sock until container name is ok.
func waitContainerOK(t *testing.T, sock, name string) {
	t.Helper()
	c := api.NewClient(sock)
	nstest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := cliCtx()
		defer cancel()
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		for _, x := range st.Containers {
			if x.Name == name {
				if x.State != api.StateOK {
					return fmt.Errorf("%s is %s %s", name, x.State, x.Error)
				}
				// The embedded DNS server listens on port 53 in the
				// container: the one privileged port the agent binds.
				if st.DNS.Attached < 1 {
					return fmt.Errorf("DNS server not attached to %s", name)
				}
				return nil
			}
		}
		return fmt.Errorf("no container %s yet", name)
	})
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingCounts reads ping's summary line.
func pingCounts(out string) (sent, got int) {
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return -1, -1
	}
	sent, _ = strconv.Atoi(m[1])
	got, _ = strconv.Atoi(m[2])
	return sent, got
}
