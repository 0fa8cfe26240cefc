package cnitest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// cnitool runs the real cnitool against the plugin dir and config dir.
type cnitool struct {
	bin, pluginDir, confDir string
}

func (c cnitool) run(env []string, args ...string) (string, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"CNI_PATH=" + c.pluginDir, "NETCONFPATH=" + c.confDir}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCnitoolFakeAgent drives vxmesh-cni with the real cnitool (built from
// the module proxy) against a fake agent: add, check, check after drift,
// del twice, status, gc, each as libcni calls it. Root: libcni writes its
// result cache under /var/lib/cni (cleaned by WatchOutside).
func TestCnitoolFakeAgent(t *testing.T) {
	nstest.RequireRoot(t)
	cnitest.KeepRootUnchanged(t)
	cnitest.WatchOutside(t)
	sock := nstest.SocketPath(t)
	fa := cnitest.NewFakeAgent(t, sock, "mesh")
	ct := cnitool{bin: cnitest.BuildCnitool(t), pluginDir: cnitest.BuildPlugin(t), confDir: t.TempDir()}
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "vxmesh-mesh", "plugins": [{"type": "vxmesh-cni", "network": "mesh", "socket": %q,
		"capabilities": {"portMappings": true}}]}`, sock)
	if err := os.WriteFile(filepath.Join(ct.confDir, "vxmesh-mesh.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	netns := "/run/netns/" + nstest.NewNetns(t, "ct")
	env := []string{"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web1", `CAP_ARGS={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}`}

	out, err := ct.run(env, "add", "vxmesh-mesh", netns)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	var res struct {
		IPs []struct{ Address string }     `json:"ips"`
		DNS struct{ Nameservers []string } `json:"dns"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 || len(res.DNS.Nameservers) == 0 || res.DNS.Nameservers[0] != "127.0.0.11" {
		t.Errorf("add result %s (%v): want one address and dns 127.0.0.11", out, err)
	}
	got := fa.LastAttach()
	if got.Name != "web1" || got.Netns != netns || len(got.Ports) != 1 || got.Ports[0].HostPort != 8080 {
		t.Errorf("agent got %+v; want name web1, netns %s, port 8080", got, netns)
	}
	if out, err := ct.run(env, "check", "vxmesh-mesh", netns); err != nil {
		t.Errorf("check: %v\n%s", err, out)
	}
	fa.SetDrift(got.Key(), "eth0 in "+netns+": no such interface")
	if out, err := ct.run(env, "check", "vxmesh-mesh", netns); err == nil || !strings.Contains(out, "no such interface") {
		t.Errorf("check after drift: %v\n%s; want the drift named", err, out)
	}
	if out, err := ct.run(nil, "status", "vxmesh-mesh", netns); err != nil {
		t.Errorf("status: %v\n%s", err, out)
	}
	for i := range 2 {
		if out, err := ct.run(env, "del", "vxmesh-mesh", netns); err != nil {
			t.Errorf("del %d: %v\n%s", i+1, err, out)
		}
	}
	if n := len(fa.Attachments()); n != 0 {
		t.Errorf("after del: %d attachments", n)
	}
	// cnitool's gc passes no valid attachments: everything of the runtime
	// on the network goes.
	if out, err := ct.run(env, "add", "vxmesh-mesh", netns); err != nil {
		t.Fatalf("add again: %v\n%s", err, out)
	}
	if out, err := ct.run(nil, "gc", "vxmesh-mesh", netns); err != nil {
		t.Errorf("gc: %v\n%s", err, out)
	}
	if n := len(fa.Attachments()); n != 0 {
		t.Errorf("after gc: %d attachments, want 0", n)
	}
	var calls []string
	for _, c := range fa.Calls() {
		if strings.HasPrefix(c, "POST /v1/attachments/gc") || strings.HasPrefix(c, "GET /v1/attachments/status") {
			calls = append(calls, c)
		}
	}
	if len(calls) != 2 {
		t.Errorf("gc and status reached the agent as %v", calls)
	}
}
