package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// The test binary doubles as the plugin: with asPluginEnv set it runs
// main, so every test drives the real skel dispatch, environment, stdin,
// stdout and exit status, as a runtime does.
const asPluginEnv = "VXMESH_CNI_TEST_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(asPluginEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// invocation is one plugin run.
type invocation struct {
	cmd     string // CNI_COMMAND
	id      string // CNI_CONTAINERID (default "ctr1")
	ifname  string // CNI_IFNAME (default "eth0")
	args    string // CNI_ARGS
	netns   string // CNI_NETNS (default: a path that does not exist)
	conf    map[string]any
	timeout time.Duration // how long the test waits (default 20s)
}

// outcome is what the plugin did.
type outcome struct {
	stdout []byte
	exit   int
	took   time.Duration
	err    *types.Error // decoded from stdout when exit != 0
}

func run(t *testing.T, c invocation) outcome {
	t.Helper()
	if c.id == "" {
		c.id = "ctr1"
	}
	if c.ifname == "" {
		c.ifname = "eth0"
	}
	if c.netns == "" {
		c.netns = "/run/netns/vxt-cni-unit-absent"
	}
	stdin, err := json.Marshal(c.conf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{
		asPluginEnv + "=1",
		"CNI_COMMAND=" + c.cmd,
		"CNI_CONTAINERID=" + c.id,
		"CNI_IFNAME=" + c.ifname,
		"CNI_NETNS=" + c.netns,
		"CNI_ARGS=" + c.args,
		"CNI_PATH=/nonexistent",
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.timeout == 0 {
		c.timeout = 20 * time.Second
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(c.timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not return within %s", c.cmd, c.timeout)
	}
	o := outcome{stdout: stdout.Bytes(), took: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		o.exit = ee.ExitCode()
		o.err = &types.Error{}
		if jerr := json.Unmarshal(o.stdout, o.err); jerr != nil {
			t.Fatalf("%s: exit %d, stdout %q is not a CNI error: %v (stderr %q)", c.cmd, o.exit, o.stdout, jerr, stderr.String())
		}
	}
	return o
}

// conf is a network config for the fake agent's network "mesh".
func conf(ver, socket string, extra map[string]any) map[string]any {
	m := map[string]any{"cniVersion": ver, "name": "vxmesh-mesh", "type": "vxmesh-cni", "network": "mesh", "socket": socket}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func mustOK(t *testing.T, what string, o outcome) {
	t.Helper()
	if o.exit != 0 {
		t.Fatalf("%s: exit %d: code %d %q (%s)", what, o.exit, o.err.Code, o.err.Msg, o.err.Details)
	}
}

func mustCode(t *testing.T, what string, o outcome, code uint, msgHas string) {
	t.Helper()
	if o.exit == 0 {
		t.Fatalf("%s: succeeded with %s, want error code %d", what, o.stdout, code)
	}
	if o.err.Code != code || !strings.Contains(o.err.Msg, msgHas) {
		t.Fatalf("%s: code %d %q, want code %d with %q", what, o.err.Code, o.err.Msg, code, msgHas)
	}
}

// addResult parses an ADD result of version ver as a 1.0.0 result.
func addResult(t *testing.T, ver string, out []byte) *types100.Result {
	t.Helper()
	var probe struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(out, &probe); err != nil || probe.CNIVersion != ver {
		t.Fatalf("result %s: cniVersion %q, want %q (%v)", out, probe.CNIVersion, ver, err)
	}
	r, err := version.NewResult(ver, out)
	if err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	r100, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return r100
}

func TestVersion(t *testing.T) {
	o := run(t, invocation{cmd: "VERSION", conf: map[string]any{"cniVersion": "1.1.0"}})
	mustOK(t, "VERSION", o)
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(o.stdout, &v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !strings.Contains(strings.Join(v.Supported, ","), want) {
			t.Errorf("supportedVersions %v lacks %s", v.Supported, want)
		}
	}
}

// TestLifecycle runs ADD, CHECK, DEL, GC and STATUS in every spec version.
func TestLifecycle(t *testing.T) {
	for _, ver := range specVersions {
		t.Run(ver, func(t *testing.T) {
			sock := nstest.SocketPath(t)
			fa := cnitest.NewFakeAgent(t, sock, "mesh")
			c := conf(ver, sock, nil)

			o := run(t, invocation{cmd: "ADD", conf: c, args: "IgnoreUnknown=1;K8S_POD_NAME=web7"})
			mustOK(t, "ADD", o)
			r := addResult(t, ver, o.stdout)
			if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.200.0.2/16" || r.IPs[0].Gateway.String() != "10.200.0.1" {
				t.Errorf("ips %v, want 10.200.0.2/16 via 10.200.0.1", r.IPs)
			}
			if len(r.Interfaces) != 2 || r.Interfaces[1].Name != "eth0" || r.Interfaces[1].Sandbox == "" || *r.IPs[0].Interface != 1 {
				t.Errorf("interfaces %v, want host end then eth0 in the sandbox with the address", r.Interfaces)
			}
			if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" {
				t.Errorf("routes %v, want the default route", r.Routes)
			}
			if strings.Join(r.DNS.Nameservers, ",") != "127.0.0.11" || len(r.DNS.Search) == 0 {
				t.Errorf("dns %+v, want 127.0.0.11 and search domains", r.DNS)
			}
			if got := fa.LastAttach(); got.Name != "web7" || got.Runtime != api.RuntimeCNI || got.Netns == "" {
				t.Errorf("agent got %+v, want name web7 from K8S_POD_NAME, runtime cni, a netns", got)
			}

			// ADD again is the same attachment.
			o2 := run(t, invocation{cmd: "ADD", conf: c, args: "K8S_POD_NAME=web7"})
			mustOK(t, "ADD again", o2)
			if !bytes.Equal(o.stdout, o2.stdout) {
				t.Errorf("ADD twice: %s then %s", o.stdout, o2.stdout)
			}

			withPrev := conf(ver, sock, map[string]any{"prevResult": json.RawMessage(o.stdout)})
			mustOK(t, "CHECK", run(t, invocation{cmd: "CHECK", conf: withPrev, args: "K8S_POD_NAME=web7"}))
			fa.SetDrift(api.AttachmentKey{Runtime: "cni", ID: "ctr1", IfName: "eth0"}, "eth0 in /run/netns/x: gone")
			mustCode(t, "CHECK after drift", run(t, invocation{cmd: "CHECK", conf: withPrev, args: "K8S_POD_NAME=web7"}), errDrift, "eth0 in /run/netns/x: gone")

			gcConf := conf(ver, sock, map[string]any{"cni.dev/valid-attachments": []map[string]string{{"containerID": "ctr1", "ifname": "eth0"}}})
			mustOK(t, "ADD ctr2", run(t, invocation{cmd: "ADD", conf: c, id: "ctr2"}))
			gc := run(t, invocation{cmd: "GC", conf: gcConf})
			st := run(t, invocation{cmd: "STATUS", conf: c})
			if ver == "1.1.0" {
				mustOK(t, "GC", gc)
				if n := len(fa.Attachments()); n != 1 {
					t.Errorf("after GC keeping ctr1: %d attachments, want 1", n)
				}
				mustOK(t, "STATUS", st)
				fa.SetNotReady("gossip not synced")
				mustCode(t, "STATUS not ready", run(t, invocation{cmd: "STATUS", conf: c}), types.ErrPluginNotAvailable, "gossip not synced")
			} else {
				mustCode(t, "GC before 1.1.0", gc, types.ErrIncompatibleCNIVersion, "GC")
				mustCode(t, "STATUS before 1.1.0", st, types.ErrIncompatibleCNIVersion, "STATUS")
			}

			mustOK(t, "DEL", run(t, invocation{cmd: "DEL", conf: withPrev}))
			mustOK(t, "DEL twice", run(t, invocation{cmd: "DEL", conf: withPrev}))
			mustCode(t, "CHECK after DEL", run(t, invocation{cmd: "CHECK", conf: withPrev}), types.ErrUnknownContainer, "no such attachment")
			fa.Forget()
			mustOK(t, "DEL after the agent lost it", run(t, invocation{cmd: "DEL", conf: c, id: "ctr2", netns: "-"}))
		})
	}
}
