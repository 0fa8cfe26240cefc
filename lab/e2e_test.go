package lab_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
)

// What the agent can do today, per kind of check. The lab's checks are
// claims about the finished product; until a piece lands, its check fails
// and this test only asserts that `lab up` reports the failure honestly
// (its report matches an independent probe, and it exits non-zero).
//
// TODO(lead): flip each to true when the piece named lands in the agent.
var agentCan = map[string]bool{
	// The overlay step (agent/overlay.go): VXLAN devices, FDB/neighbour
	// entries from gossip, cluster IPAM.
	lab.KindPingIP: true,
	// The embedded DNS server on 127.0.0.11 in every container
	// (agent/dnsstep.go), other hosts' overlay names from Desired.Remote.
	lab.KindPingName: true,
	// The agent's ports step: DNAT of web1's 8080:80 on h1.
	lab.KindPublished: true,
	// Works today: the embedded DNS server forwards to the containers'
	// dns (the fake upstream) from the host's namespace.
	lab.KindUpstream: true,
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// vxmeshBinary builds ./cmd/vxmesh once per test process.
func vxmeshBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "vxmesh-lab-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "vxmesh")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/vxmesh/vxmesh/cmd/vxmesh").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/vxmesh: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: builds network namespaces (euid %d)", os.Geteuid())
	}
}

// vx runs the binary and returns its stdout, stderr and exit code.
func vx(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run vxmesh %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// newLab picks a unique lab name and root and removes the lab at cleanup,
// checking that nothing of it is left.
func newLab(t *testing.T, bin string) (name, root string) {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name = "vxt" + hex.EncodeToString(b[:])
	root = t.TempDir()
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(root, name)); err == nil || hasNamespaces(name) {
			out, errOut, code := vx(t, bin, nil, "lab", "down", "--name", name, "--root", root)
			if code != 0 {
				t.Errorf("cleanup: lab down: exit %d\n%s%s", code, out, errOut)
			}
		}
	})
	return name, root
}

func hasNamespaces(name string) bool {
	all, _ := netnsutil.List()
	for _, ns := range all {
		if strings.HasPrefix(ns, lab.NetnsPrefixOf(name)) || strings.HasPrefix(ns, lab.ContainerNetnsPrefixOf(name)) {
			return true
		}
	}
	return false
}

// status runs `lab status --json`.
func status(t *testing.T, bin, name, root string) *lab.Status {
	t.Helper()
	out, errOut, code := vx(t, bin, nil, "lab", "status", "--json", "--name", name, "--root", root)
	if code != 0 {
		t.Fatalf("lab status: exit %d: %s", code, errOut)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, out)
	}
	return &st
}

// assertGone checks that nothing of the lab is left: namespaces, name
// files, processes, directory.
func assertGone(t *testing.T, name, root string, pids []int) {
	t.Helper()
	all, err := netnsutil.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range all {
		if strings.HasPrefix(ns, lab.NetnsPrefixOf(name)) || strings.HasPrefix(ns, lab.ContainerNetnsPrefixOf(name)) {
			t.Errorf("namespace %q left", ns)
		}
	}
	if ents, err := os.ReadDir(lab.EtcNetns); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), lab.ContainerNetnsPrefixOf(name)) {
				t.Errorf("%s left", filepath.Join(lab.EtcNetns, e.Name()))
			}
		}
	}
	for _, pid := range pids {
		if lab.Alive(pid) {
			t.Errorf("process %d left", pid)
		}
	}
	if pids := lab.FindProcs(nil, filepath.Join(root, name)); len(pids) > 0 {
		t.Errorf("processes %v still name the lab directory", pids)
	}
	if _, err := os.Stat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab directory %s left (%v)", filepath.Join(root, name), err)
	}
}

func statusPIDs(st *lab.Status) []int {
	var out []int
	for _, p := range st.Processes {
		out = append(out, p.PID)
	}
	return out
}

// TestLabEndToEnd runs the real binary: lab up with 3 hosts, checks the
// table's claims independently (ping, names, published port, upstream
// lookups), lab status, lab exec, lab up again, lab down, and that
// nothing is left.
func TestLabEndToEnd(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"nsenter", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs tool: %s not on PATH; run .ci/install-deps", tool)
		}
	}
	bin := vxmeshBinary(t)
	name, root := newLab(t, bin)
	e := &e2eLab{t: t, bin: bin, name: name, root: root}

	code := e.up()
	e.st = status(t, bin, name, root)
	e.checkStatus()
	reported := e.reportedChecks(code)
	probe := e.probeAll()
	compareProbes(t, probe, reported)
	e.checkExec()
	e.checkUpAgain()

	out, errOut, c := vx(t, bin, nil, "lab", "down", "--name", name, "--root", root)
	if c != 0 || !strings.Contains(out, "is gone") {
		t.Fatalf("lab down: exit %d\n%s%s", c, out, errOut)
	}
	assertGone(t, name, root, statusPIDs(e.st))
}

// e2eLab is TestLabEndToEnd's lab: the binary, the lab's name and root,
// and what `lab status` said after `lab up`.
type e2eLab struct {
	t               *testing.T
	bin, name, root string
	st              *lab.Status
	ctr             map[string]lab.ContainerStat // by name
}

// up runs `lab up` with 3 hosts and checks its output; it returns the exit
// code (1 when some check failed).
func (e *e2eLab) up() int {
	t := e.t
	start := time.Now()
	out, errOut, code := vx(t, e.bin, nil, "lab", "up", "--hosts", "3", "--name", e.name, "--root", e.root, "--wait", "15s")
	t.Logf("lab up took %s, exit %d:\n%s%s", time.Since(start).Round(100*time.Millisecond), code, out, errOut)
	if code != 0 && code != 1 {
		t.Fatalf("lab up: exit %d", code)
	}
	if !strings.Contains(out, "converged") {
		t.Fatalf("lab up did not get to the checks (exit %d): %s", code, errOut)
	}
	for _, want := range []string{"agent h1 started", "agent h3 ready", "underlay 198.18.0.0/16", "Overlay mesh", "Published port 198.18.0.1:8080", "Upstream name www.example.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q", want)
		}
	}
	return code
}

// checkStatus checks the hosts and containers `lab status` reports and
// fills e.ctr.
func (e *e2eLab) checkStatus() {
	t, st := e.t, e.st
	if len(st.Hosts) != 3 || len(st.Containers) != 3 || st.Checks == nil {
		t.Fatalf("status: %d hosts, %d containers, checks %v", len(st.Hosts), len(st.Containers), st.Checks)
	}
	for _, h := range st.Hosts {
		if !h.Exists || !h.AgentRunning || !h.AgentAPI || !netnsutil.Exists(h.Netns) {
			t.Errorf("host %s: %+v", h.Name, h)
		}
		for _, f := range []string{h.Config, h.Log} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("host %s: %v", h.Name, err)
			}
		}
	}
	e.ctr = map[string]lab.ContainerStat{}
	for _, c := range st.Containers {
		e.ctr[c.Name] = c
		if !c.Exists || c.Addresses[lab.OverlayNet] == "" {
			t.Errorf("container %s: %+v", c.Name, c)
		}
	}
	ctr := e.ctr
	if ctr["web1"].Host != "h1" || ctr["web2"].Host != "h2" || ctr["db"].Host != "h3" || ctr["web1"].Addresses[lab.BridgeNet] == "" {
		t.Errorf("containers: %+v", st.Containers)
	}
}

// reportedChecks returns the checks `lab up` reported, by ID, and checks
// their number and that the exit code says whether any failed.
func (e *e2eLab) reportedChecks(code int) map[string]lab.Check {
	t := e.t
	reported := map[string]lab.Check{}
	failed := 0
	for _, c := range e.st.Checks.Checks {
		reported[c.ID()] = c
		if !c.OK {
			failed++
		}
	}
	if len(reported) != 17 {
		t.Errorf("lab up ran %d checks, want 17", len(reported))
	}
	if (failed > 0) != (code != 0) {
		t.Errorf("lab up exit %d with %d failed checks", code, failed)
	}
	return reported
}

func (e *e2eLab) sockOf(host string) string {
	for _, h := range e.st.Hosts {
		if h.Name == host {
			return h.Socket
		}
	}
	e.t.Fatalf("no host %s", host)
	return ""
}

// exe runs args in container c through `vxmesh exec`.
func (e *e2eLab) exe(c lab.ContainerStat, args ...string) (string, error) {
	o, errOut, code := vx(e.t, e.bin, []string{api.SocketEnv + "=" + e.sockOf(c.Host)}, append([]string{"exec", c.Name, "--"}, args...)...)
	if code != 0 {
		return o, fmt.Errorf("%v in %s: exit %d: %s%s", args, c.Name, code, o, errOut)
	}
	return o, nil
}

// probeAll repeats every reported check with independent probes: the ping
// binary, libc's resolver through `vxmesh exec` (the container's own /etc
// files), a TCP connection from a host namespace by bash. It returns each
// check's outcome by ID.
func (e *e2eLab) probeAll() map[string]error {
	t := e.t
	probe := map[string]error{}
	for _, rep := range e.st.Checks.Checks {
		id := rep.ID()
		switch rep.Kind {
		case lab.KindPingIP, lab.KindPingName:
			probe[id] = e.probePing(rep)
		case lab.KindPing6IP, lab.KindPing6Name:
			probe[id] = e.probePing6(rep)
		case lab.KindUpstream:
			o, err := e.exe(e.ctr[rep.From], "getent", "ahostsv4", lab.UpstreamName)
			if err == nil && !strings.Contains(o, lab.UpstreamAnswer.String()) {
				err = fmt.Errorf("getent ahostsv4 %s: %q", lab.UpstreamName, o)
			}
			probe[id] = err
		case lab.KindPublished:
			probe[id] = e.probePublished(rep)
		default:
			t.Errorf("unknown check %s", id)
		}
	}
	return probe
}

// probePing pings the target's overlay address from the source container
// (after resolving its name there, for a ping-name check).
func (e *e2eLab) probePing(rep lab.Check) error {
	from, to := e.ctr[rep.From], e.ctr[rep.To]
	ip := to.Addresses[lab.OverlayNet]
	own, _ := lab.NetnsAddrs(from.Netns)
	if slices.ContainsFunc(own, func(p netip.Prefix) bool { return p.Addr().String() == ip }) {
		return fmt.Errorf("%s's address %s is %s's own too", to.Name, ip, from.Name)
	}
	if rep.Kind == lab.KindPingName {
		o, err := e.exe(from, "getent", "ahostsv4", to.Name)
		if err != nil {
			return err
		}
		if !strings.Contains(o, ip+" ") {
			return fmt.Errorf("getent ahostsv4 %s in %s: %q lacks %s", to.Name, from.Name, o, ip)
		}
	}
	o, err := exec.Command("nsenter", "--net="+netnsutil.Path(from.Netns), "ping", "-n", "-c1", "-W1", ip).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("ping %s: %v: %s", ip, err, o)
	}
	return err
}

// probePing6 is probePing over IPv6: the address the check pinged, the
// name through libc (AAAA from the embedded DNS), the ping binary.
func (e *e2eLab) probePing6(rep lab.Check) error {
	from, to := e.ctr[rep.From], e.ctr[rep.To]
	ip := rep.Addr
	if rep.Kind == lab.KindPing6Name {
		o, err := e.exe(from, "getent", "ahostsv6", to.Name)
		if err != nil {
			return err
		}
		if !strings.Contains(o, ip+" ") {
			return fmt.Errorf("getent ahostsv6 %s in %s: %q lacks %s", to.Name, from.Name, o, ip)
		}
	}
	o, err := exec.Command("nsenter", "--net="+netnsutil.Path(from.Netns), "ping", "-6", "-n", "-c1", "-W1", ip).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("ping -6 %s: %v: %s", ip, err, o)
	}
	return err
}

// probePublished connects to the published port from the source host's
// namespace and expects web1's banner.
func (e *e2eLab) probePublished(rep lab.Check) error {
	var ns string
	for _, h := range e.st.Hosts {
		if h.Name == rep.From {
			ns = h.Netns
		}
	}
	to, err := netip.ParseAddrPort(rep.To)
	if err != nil || ns == "" {
		e.t.Fatalf("%s: bad check %+v", rep.ID(), rep)
	}
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && timeout 2 cat <&3", to.Addr(), to.Port())
	o, err := exec.Command("nsenter", "--net="+netnsutil.Path(ns), "bash", "-c", script).CombinedOutput()
	if err == nil && !strings.Contains(string(o), lab.Banner(e.name, "web1")) {
		err = fmt.Errorf("answer %q is not web1's", o)
	}
	if err != nil {
		err = fmt.Errorf("connect from %s to %s: %v: %s", rep.From, to, err, o)
	}
	return err
}

// compareProbes checks that every expected check was reported and that
// each report agrees with its independent probe.
func compareProbes(t *testing.T, probe map[string]error, reported map[string]lab.Check) {
	want := []string{
		"ping-ip web1->web2", "ping-ip web1->db", "ping-ip web2->db",
		"ping-name web1->web2", "ping-name web1->db", "ping-name web2->db",
		"ping6-ip web1->web2", "ping6-ip web1->db", "ping6-ip web2->db",
		"ping6-name web1->web2", "ping6-name web1->db", "ping6-name web2->db",
		"published h2->198.18.0.1:8080", "published h3->198.18.0.1:8080",
		"upstream-dns web1->www.example.test", "upstream-dns web2->www.example.test", "upstream-dns db->www.example.test",
	}
	for _, id := range want {
		if _, ok := probe[id]; !ok {
			t.Errorf("lab up did not report %s", id)
		}
	}
	for id, perr := range probe {
		rep := reported[id]
		switch {
		case rep.OK != (perr == nil):
			t.Errorf("%s: lab up says ok=%v (%s), an independent probe says %v", id, rep.OK, rep.Error, perr)
		case agentCan[rep.Kind] && !rep.OK:
			t.Errorf("%s fails: %s", id, rep.Error)
		case !agentCan[rep.Kind] && !rep.OK:
			t.Logf("TODO %s fails as expected until its piece lands (see agentCan): %s", id, rep.Error)
		case !agentCan[rep.Kind] && rep.OK:
			t.Logf("%s passes now: set agentCan[%q] = true", id, rep.Kind)
		}
	}
}

// checkExec: lab exec reaches the host's agent.
func (e *e2eLab) checkExec() {
	t := e.t
	o, errOut, c := vx(t, e.bin, nil, "lab", "exec", "--name", e.name, "--root", e.root, "h2", "--", "vxmesh", "status", "--json")
	var ast api.Status
	if c != 0 || json.Unmarshal([]byte(o), &ast) != nil || ast.Host != "h2" || ast.Address != "198.18.0.2" {
		t.Errorf("lab exec h2 -- vxmesh status --json: exit %d %s %s", c, o, errOut)
	}
	o, _, c = vx(t, e.bin, nil, "lab", "exec", "--name", e.name, "--root", e.root, "--host", "h3", "--", "sh", "-c", "echo $VXMESH_SOCKET; exit 7")
	if c != 7 || strings.TrimSpace(o) != e.sockOf("h3") {
		t.Errorf("lab exec --host h3: exit %d, printed %q", c, o)
	}
}

// checkUpAgain: lab up again says so, starts nothing new, checks again.
func (e *e2eLab) checkUpAgain() {
	t := e.t
	out, _, _ := vx(t, e.bin, nil, "lab", "up", "--name", e.name, "--root", e.root, "--wait", "1s")
	if !strings.Contains(out, "is up already") || strings.Contains(out, "started") {
		t.Errorf("second lab up:\n%s", out)
	}
	if st2 := status(t, e.bin, e.name, e.root); !slices.Equal(statusPIDs(st2), statusPIDs(e.st)) {
		t.Errorf("second lab up changed the processes: %v -> %v", statusPIDs(e.st), statusPIDs(st2))
	}
}

// TestLabsCoexist builds two labs at once, removes one (after a simulated
// crash: processes killed, lab.json gone) and checks the other is intact.
func TestLabsCoexist(t *testing.T) {
	requireRoot(t)
	bin := vxmeshBinary(t)
	type labT struct {
		name, root string
		out        string
		code       int
	}
	labs := make([]*labT, 2)
	for i := range labs {
		l := &labT{}
		l.name, l.root = newLab(t, bin)
		labs[i] = l
	}
	var wg sync.WaitGroup
	for _, l := range labs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errOut string
			l.out, errOut, l.code = vx(t, bin, nil, "lab", "up", "--hosts", "2", "--name", l.name, "--root", l.root, "--wait", "4s")
			l.out += errOut
		}()
	}
	wg.Wait()
	sts := make([]*lab.Status, 2)
	for i, l := range labs {
		if !strings.Contains(l.out, "converged") {
			t.Fatalf("lab up %s (exit %d) did not get to the checks:\n%s", l.name, l.code, l.out)
		}
		sts[i] = status(t, bin, l.name, l.root)
		for _, h := range sts[i].Hosts {
			if !h.AgentRunning || !h.AgentAPI {
				t.Errorf("lab %s host %s: %+v", l.name, h.Name, h)
			}
		}
		for _, c := range sts[i].Containers {
			if !c.Exists || !strings.HasPrefix(c.Netns, l.name+"-") {
				t.Errorf("lab %s container %s: %+v", l.name, c.Name, c)
			}
		}
		for _, c := range sts[i].Checks.Checks {
			if c.Kind == lab.KindUpstream && !c.OK {
				t.Errorf("lab %s: %s: %s", l.name, c.ID(), c.Error)
			}
		}
	}
	a, b := sts[0], sts[1]
	if a.Hosts[0].Netns == b.Hosts[0].Netns || a.Containers[0].Netns == b.Containers[0].Netns || a.Hosts[0].Socket == b.Hosts[0].Socket {
		t.Fatalf("labs share names: %+v %+v", a.Hosts[0], b.Hosts[0])
	}

	// Crash lab b: kill its processes, lose its lab.json.
	for _, pid := range statusPIDs(b) {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
	if err := os.Remove(filepath.Join(labs[1].root, labs[1].name, "lab.json")); err != nil {
		t.Fatal(err)
	}
	out, errOut, c := vx(t, bin, nil, "lab", "down", "--name", labs[1].name, "--root", labs[1].root)
	if c != 0 {
		t.Fatalf("lab down after a crash: exit %d\n%s%s", c, out, errOut)
	}
	assertGone(t, labs[1].name, labs[1].root, statusPIDs(b))

	// Lab a did not notice.
	st := status(t, bin, labs[0].name, labs[0].root)
	for _, h := range st.Hosts {
		if !h.Exists || !h.AgentRunning || !h.AgentAPI {
			t.Errorf("lab %s host %s after the other lab's down: %+v", labs[0].name, h.Name, h)
		}
	}
	for _, c := range st.Containers {
		if !c.Exists || c.Addresses[lab.OverlayNet] == "" {
			t.Errorf("lab %s container %s after the other lab's down: %+v", labs[0].name, c.Name, c)
		}
	}
	out, errOut, c = vx(t, bin, nil, "lab", "down", "--name", labs[0].name, "--root", labs[0].root)
	if c != 0 {
		t.Fatalf("lab down: exit %d\n%s%s", c, out, errOut)
	}
	assertGone(t, labs[0].name, labs[0].root, statusPIDs(a))
}
