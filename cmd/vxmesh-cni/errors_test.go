package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestErrors: every way a call can fail ends in a CNI error with the
// spec's code and a message naming what failed, promptly.
func TestErrors(t *testing.T) {
	sock := nstest.SocketPath(t)
	fa := cnitest.NewFakeAgent(t, sock, "mesh")
	mustOK(t, "ADD taken", run(t, invocation{cmd: "ADD", id: "other", args: "K8S_POD_NAME=taken", conf: conf("1.0.0", sock, nil)}))
	absent := filepath.Join(t.TempDir(), "no-agent.sock")

	tests := []struct {
		name  string
		inv   invocation
		code  uint
		msg   string
		setup func()
	}{
		{name: "agent not running, ADD", code: types.ErrTryAgainLater, msg: "vxmesh agent not reachable at " + absent,
			inv: invocation{cmd: "ADD", conf: conf("1.0.0", absent, nil)}},
		{name: "agent not running, DEL", code: types.ErrTryAgainLater, msg: "not reachable",
			inv: invocation{cmd: "DEL", conf: conf("1.0.0", absent, nil)}},
		{name: "agent not running, CHECK", code: types.ErrTryAgainLater, msg: "not reachable",
			inv: invocation{cmd: "CHECK", conf: conf("1.0.0", absent, map[string]any{"prevResult": map[string]any{"cniVersion": "1.0.0"}})}},
		{name: "agent not running, GC", code: types.ErrTryAgainLater, msg: "not reachable",
			inv: invocation{cmd: "GC", conf: conf("1.1.0", absent, nil)}},
		{name: "agent not running, STATUS", code: types.ErrPluginNotAvailable, msg: "not reachable",
			inv: invocation{cmd: "STATUS", conf: conf("1.1.0", absent, nil)}},
		{name: "no network field", code: types.ErrInvalidNetworkConfig, msg: `lacks "network"`,
			inv: invocation{cmd: "ADD", conf: map[string]any{"cniVersion": "1.0.0", "name": "x", "type": "vxmesh-cni", "socket": sock}}},
		{name: "unknown network", code: types.ErrInvalidNetworkConfig, msg: `network "nope": no such network`,
			inv: invocation{cmd: "ADD", conf: conf("1.0.0", sock, map[string]any{"network": "nope"})}},
		{name: "bad timeout", code: types.ErrInvalidNetworkConfig, msg: "timeout",
			inv: invocation{cmd: "ADD", conf: conf("1.0.0", sock, map[string]any{"timeout": "soon"})}},
		{name: "name taken", code: errConflict, msg: `name "taken": taken by cni/other/eth0`,
			inv: invocation{cmd: "ADD", args: "K8S_POD_NAME=taken", conf: conf("1.0.0", sock, nil)}},
		{name: "bad CNI_ARGS", code: types.ErrInvalidEnvironmentVariables, msg: "CNI_ARGS",
			inv: invocation{cmd: "ADD", args: "IgnoreUnknown", conf: conf("1.0.0", sock, nil)}},
		{name: "bad pod name", code: types.ErrInvalidNetworkConfig, msg: "not a DNS name",
			inv: invocation{cmd: "ADD", args: "K8S_POD_NAME=a b", conf: conf("1.0.0", sock, nil)}},
		{name: "two static IPs", code: types.ErrInvalidNetworkConfig, msg: "runtimeConfig.ips",
			inv: invocation{cmd: "ADD", conf: conf("1.0.0", sock, map[string]any{"runtimeConfig": map[string]any{"ips": []string{"10.200.9.9/16", "10.200.9.8/16"}}})}},
		{name: "bad port", code: types.ErrInvalidNetworkConfig, msg: "portMappings[0]",
			inv: invocation{cmd: "ADD", conf: conf("1.0.0", sock, map[string]any{"runtimeConfig": map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 0}}}})}},
		{name: "unsupported version", code: types.ErrIncompatibleCNIVersion, msg: "incompatible",
			inv: invocation{cmd: "ADD", conf: conf("0.3.1", sock, nil)}},
		{name: "CHECK without prevResult", code: types.ErrInvalidNetworkConfig, msg: "prevResult",
			inv: invocation{cmd: "CHECK", conf: conf("1.0.0", sock, nil)}},
		{name: "hung agent", code: types.ErrTryAgainLater, msg: "did not answer within 300ms",
			inv:   invocation{cmd: "ADD", conf: conf("1.0.0", sock, map[string]any{"timeout": "300ms"}), timeout: 10 * time.Second},
			setup: func() { fa.SetHang(true) }},
		{name: "hung agent, DEL", code: types.ErrTryAgainLater, msg: "did not answer within 300ms",
			inv:   invocation{cmd: "DEL", conf: conf("1.0.0", sock, map[string]any{"timeout": "300ms"}), timeout: 10 * time.Second},
			setup: func() { fa.SetHang(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			o := run(t, tt.inv)
			mustCode(t, tt.name, o, tt.code, tt.msg)
			if o.took > 5*time.Second {
				t.Errorf("took %s; an error must come promptly", o.took)
			}
		})
	}
}

// TestRequestFields: what the runtime passes reaches the agent.
func TestRequestFields(t *testing.T) {
	sock := nstest.SocketPath(t)
	fa := cnitest.NewFakeAgent(t, sock, "mesh")
	longID := "e54ab16c18c41e46742343086c7e6d79b856d0e4a9b397ddf0a71cc0f31a4fb3"
	rc := map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}, {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "198.18.0.1"}},
		"ips":          []string{"10.200.7.7/16"},
		"mac":          "02:00:00:00:07:07",
		"aliases":      map[string][]string{"vxmesh-mesh": {"e54ab16c18c4", "www"}, "other": {"nope"}},
	}
	o := run(t, invocation{cmd: "ADD", id: longID, conf: conf("1.1.0", sock, map[string]any{"runtimeConfig": rc, "dns_search": []string{"corp.test"}})})
	mustOK(t, "ADD", o)
	got := fa.LastAttach()
	if got.Name != "e54ab16c18c4" {
		t.Errorf("name %q, want the 12-character short ID when no K8S_POD_NAME", got.Name)
	}
	if got.IP != "10.200.7.7" || got.MAC != "02:00:00:00:07:07" {
		t.Errorf("ip %q mac %q, want the ips and mac capabilities", got.IP, got.MAC)
	}
	if len(got.Aliases) != 1 || got.Aliases[0] != "www" {
		t.Errorf("aliases %v, want [www] (this network's, without the name itself)", got.Aliases)
	}
	if len(got.Ports) != 2 || got.Ports[0].HostPort != 8080 || got.Ports[0].ContainerPort != 80 || got.Ports[0].Proto != "tcp" ||
		got.Ports[1].Proto != "udp" || got.Ports[1].HostIP != "198.18.0.1" {
		t.Errorf("ports %+v, want 8080->80/tcp and 198.18.0.1:5353->53/udp", got.Ports)
	}
	r := addResult(t, "1.1.0", o.stdout)
	if r.DNS.Search[len(r.DNS.Search)-1] != "corp.test" {
		t.Errorf("dns search %v, want dns_search appended", r.DNS.Search)
	}
	if got := run(t, invocation{cmd: "ADD", id: "ctr9", args: "IgnoreUnknown=1;IP=10.200.8.8;K8S_POD_NAMESPACE=default", conf: conf("1.0.0", sock, nil)}); got.exit != 0 {
		t.Fatalf("ADD with CNI_ARGS IP: %+v", got.err)
	}
	if got := fa.LastAttach(); got.IP != "10.200.8.8" || got.Name != "ctr9" {
		t.Errorf("CNI_ARGS IP: agent got ip %q name %q", got.IP, got.Name)
	}
}
