package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/lab"
)

func labCLI(args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func TestLabUsage(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"lab"}, exitUsage, "which one"},
		{[]string{"lab", "sideways"}, exitUsage, `unknown lab command "sideways"`},
		{[]string{"lab", "up", "--hosts", "0"}, exitUsage, "--hosts 0: want 1..32"},
		{[]string{"lab", "up", "--hosts", "33"}, exitUsage, "--hosts 33"},
		{[]string{"lab", "up", "--name", "a-b"}, exitUsage, `lab name "a-b"`},
		{[]string{"lab", "up", "--wait", "0s"}, exitUsage, "--wait 0s"},
		{[]string{"lab", "up", "extra"}, exitUsage, "takes no arguments"},
		{[]string{"lab", "down", "--name", "Lab"}, exitUsage, `lab name "Lab"`},
		{[]string{"lab", "status", "--name", "x", "--root", root}, exitError, `lab "x": no such lab`},
		{[]string{"lab", "exec"}, exitUsage, "no HOST given"},
		{[]string{"lab", "exec", "h1"}, exitUsage, "no command given after --"},
		{[]string{"lab", "exec", "h1", "--"}, exitUsage, "no command given after --"},
		{[]string{"lab", "exec", "h1", "ls"}, exitUsage, `unexpected "ls" before --`},
		{[]string{"lab", "exec", "--bogus", "h1", "--", "ls"}, exitUsage, "unknown flag --bogus"},
		{[]string{"lab", "exec", "--host", "h1", "h2", "--", "ls"}, exitUsage, `two hosts given: "h1" and "h2"`},
		{[]string{"lab", "exec", "--name"}, exitUsage, "--name needs a value"},
		{[]string{"lab", "exec", "--name=a-b", "h1", "--", "ls"}, exitUsage, `lab name "a-b"`},
	}
	for _, tt := range tests {
		_, stderr, code := labCLI(tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("vxmesh %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.want)
		}
	}
}

func TestLabExecUnknownLab(t *testing.T) {
	root := t.TempDir()
	_, stderr, code := labCLI("lab", "exec", "--root", root, "--name", "nolab", "--host=h1", "--", "true")
	want := "no such lab"
	if os.Geteuid() != 0 {
		want = "needs root"
	}
	if code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("lab exec on a missing lab: exit %d %q, want 1 and %q", code, stderr, want)
	}
}

func TestLabDownNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root: lab down lists network namespaces (euid %d)", os.Geteuid())
	}
	stdout, stderr, code := labCLI("lab", "down", "--name", "nolab", "--root", t.TempDir())
	if code != 0 || !strings.Contains(stdout, "nothing to remove") {
		t.Errorf("lab down of a missing lab: exit %d %q %q", code, stdout, stderr)
	}
}

func TestPrintLabStatus(t *testing.T) {
	p, err := lab.NewPlan("lab", 2, "/var/lib/vxmesh/lab")
	if err != nil {
		t.Fatal(err)
	}
	st := &lab.Status{
		Name: "lab", Dir: p.Dir, Created: time.Now().Add(-time.Minute),
		Underlay: p.Underlay, UnderlayPrefix: p.Prefix.String(),
		Internet: lab.InternetStatus{InternetPlan: p.Internet, Exists: true},
	}
	for i, h := range p.Hosts {
		st.Hosts = append(st.Hosts, lab.HostStatus{HostPlan: h, Exists: true, AgentPID: 100 + i, AgentRunning: i == 0, AgentAPI: i == 0, Peers: 1})
	}
	for _, c := range p.Containers {
		st.Containers = append(st.Containers, lab.ContainerStat{ContainerPlan: c, Exists: true, Addresses: map[string]string{lab.OverlayNet: "10.200.0.9"}, State: "ok"})
	}
	st.Processes = []lab.ProcStatus{
		{Proc: lab.Proc{Role: lab.RoleDNS, Of: "inet", PID: 99}, Running: true},
		{Proc: lab.Proc{Role: lab.RoleAgent, Of: "h1", PID: 100}, Running: true},
		{Proc: lab.Proc{Role: lab.RoleAgent, Of: "h2", PID: 101}},
		{Proc: lab.Proc{Role: lab.RoleServer, Of: "web1", PID: 102, Log: "/x/web1-server.log"}, Running: true},
	}
	st.Checks = &lab.CheckResults{At: time.Now(), Checks: []lab.Check{
		{Kind: lab.KindPingIP, From: "web1", To: "web2", OK: true},
		{Kind: lab.KindPingName, From: "web1", To: "web2"},
	}}
	var b bytes.Buffer
	printLabStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		`lab "lab": 2 hosts`,
		"fake upstream DNS 198.19.0.1 (pid 99 running",
		"h1    vxl-lab-h1  198.18.0.1  pid 100 running      ok, 1 peers  /var/lib/vxmesh/lab/lab/h1.yaml",
		"pid 101 NOT running  no answer",
		"web1       h1    lab-web1  web,mesh  mesh 10.200.0.9",
		"TCP server in web1: pid 102 running, log /x/web1-server.log",
		"1/2 pass; failed: ping-name web1->web2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	if err := labFilterHost(st, "h9"); err == nil || !strings.Contains(err.Error(), "hosts: h1, h2") {
		t.Errorf("filter on a missing host: %v", err)
	}
	if err := labFilterHost(st, "h2"); err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) != 1 || st.Hosts[0].Name != "h2" || len(st.Containers) != 1 || st.Containers[0].Name != "web2" || len(st.Processes) != 1 {
		t.Errorf("filtered to h2: hosts %v containers %v processes %v", st.Hosts, st.Containers, st.Processes)
	}
}
