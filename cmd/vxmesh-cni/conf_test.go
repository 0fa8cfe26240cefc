package main

import (
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxmesh/vxmesh/agent/api"
)

func TestContainerName(t *testing.T) {
	tests := []struct {
		args cniArgs
		id   string
		want string
	}{
		{cniArgs{PodName: "web7"}, "abc", "web7"},
		{cniArgs{PodName: "web7", Hostname: "h"}, "abc", "web7"},
		{cniArgs{Hostname: "db.example.test"}, "abc", "db.example.test"},
		{cniArgs{}, "cnitool-0123456789abcdef0123", "cnitool-0123456789abcdef0123"},
		{cniArgs{}, "e54ab16c18c41e46742343086c7e6d79b856d0e4a9b397ddf0a71cc0f31a4fb3", "e54ab16c18c4"},
	}
	for _, tt := range tests {
		if got := containerName(tt.args, tt.id); got != tt.want {
			t.Errorf("containerName(%+v, %q) = %q, want %q", tt.args, tt.id, got, tt.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    cniArgs
		wantErr bool
	}{
		{"", cniArgs{}, false},
		{"IgnoreUnknown=1;K8S_POD_NAME=web7", cniArgs{PodName: "web7"}, false},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=db;K8S_POD_INFRA_CONTAINER_ID=x;IP=10.0.0.1;MAC=02:00:00:00:00:01;", cniArgs{PodName: "db", IP: "10.0.0.1", MAC: "02:00:00:00:00:01"}, false},
		{"IgnoreUnknown=1;NERDCTL_CNI_DHCP_HOSTNAME=web3", cniArgs{Hostname: "web3"}, false},
		{"IgnoreUnknown", cniArgs{}, true},
	}
	for _, tt := range tests {
		got, err := parseArgs(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCompareResult(t *testing.T) {
	att := &api.Attachment{Interface: "eth0", MAC: "02:42:0a:c8:00:02", IPs: []api.AttachIP{{Address: "10.200.0.2/16"}}}
	prev := func(name, mac, addr string) *types100.Result {
		a, _ := types.ParseCIDR(addr)
		return &types100.Result{
			Interfaces: []*types100.Interface{{Name: "vxc1"}, {Name: name, Mac: mac, Sandbox: "/run/netns/x"}},
			IPs:        []*types100.IPConfig{{Interface: types100.Int(1), Address: *a}},
		}
	}
	tests := []struct {
		name string
		prev *types100.Result
		want string
	}{
		{"same", prev("eth0", "02:42:0A:C8:00:02", "10.200.0.2/16"), ""},
		{"renamed", prev("eth1", "02:42:0a:c8:00:02", "10.200.0.2/16"), `interface "eth1", agent has "eth0"`},
		{"mac", prev("eth0", "02:42:0a:c8:00:09", "10.200.0.2/16"), "eth0: MAC 02:42:0a:c8:00:09, agent has 02:42:0a:c8:00:02"},
		{"address", prev("eth0", "02:42:0a:c8:00:02", "10.200.0.3/16"), "eth0: addresses [10.200.0.3/16], agent has [10.200.0.2/16]"},
		{"no sandbox", &types100.Result{Interfaces: []*types100.Interface{{Name: "eth0"}}}, "prevResult names no interface in the container"},
	}
	for _, tt := range tests {
		if got := compareResult(tt.prev, att); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestResultRejectsBadAgentAnswer(t *testing.T) {
	for _, att := range []*api.Attachment{
		{Interface: "eth0", IPs: []api.AttachIP{{Address: "10.200.0.2"}}},
		{Interface: "eth0", IPs: []api.AttachIP{{Address: "10.200.0.2/16", Gateway: "x"}}},
		{Interface: "eth0", Routes: []api.AttachRoute{{Dst: "default"}}},
	} {
		if _, err := result(att, nil); err == nil {
			t.Errorf("result(%+v) accepted", att)
		}
	}
	r, err := result(&api.Attachment{Interface: "eth0", MTU: 1450, IPs: []api.AttachIP{{Address: "fd00::5/64", Gateway: "fd00::1"}}}, nil)
	if err != nil || r.IPs[0].Gateway.String() != "fd00::1" || !r.IPs[0].Address.IP.Equal(net.ParseIP("fd00::5")) || r.Interfaces[0].Mtu != 1450 {
		t.Errorf("IPv6 result %+v, %v", r, err)
	}
}

// FuzzParseConf: the network config comes from the runtime's files.
func FuzzParseConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","type":"vxmesh-cni","network":"mesh","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":2}],"ips":["10.0.0.1/8"],"aliases":{"n":["a"]}}}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","network":"mesh","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8"}]}}`))
	f.Add([]byte(`{"network":"m","timeout":"1s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConf(data)
		if err != nil {
			return
		}
		a, err := parseArgs("K8S_POD_NAME=x")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = attachRequest(c, "ctr", "/run/netns/x", "eth0", a)
	})
}

// FuzzParseArgs: CNI_ARGS comes from the runtime.
func FuzzParseArgs(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAME=web7")
	f.Add("IP=10.0.0.1;MAC=x;;=")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseArgs(s)
		if err != nil {
			return
		}
		_ = containerName(a, "ctr")
		_, _ = staticIP(nil, a.IP)
	})
}
