package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/lab"
)

// inspectSample is a host's kernel state as the agent reports it.
func inspectSample() *api.Inspect {
	return &api.Inspect{
		Host: "h1", Address: "198.18.0.1", ReadAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local),
		Bridges: []api.InspectBridge{
			{Name: "br-web", ID: "8000.f68d6ec388f2", MAC: "f6:8d:6e:c3:88:f2", MTU: 1500, Up: true, Addrs: []string{"10.61.0.1/24"}, Gateway: "10.61.0.1",
				Cause: api.Cause{Network: "web", Note: "bridge of network web"},
				Ports: []api.InspectPort{{Name: "vh9339069e", Kind: "veth", Cause: api.Cause{Container: "w1", Network: "web", Note: "host end of the container's veth"}}}},
			{Name: "vxb-mesh", ID: "8000.06cd9936a3c5", MAC: "06:cd:99:36:a3:c5", MTU: 1450, Up: true, Addrs: []string{"10.200.0.1/16"}, Gateway: "10.200.0.1",
				Cause: api.Cause{Network: "mesh", Note: "gateway bridge of overlay mesh"},
				Ports: []api.InspectPort{
					{Name: "vh183ea88d", Kind: "veth", Cause: api.Cause{Container: "w1", Network: "mesh", Note: "host end of the container's veth"}},
					{Name: "vx-4200", Kind: "vxlan", Cause: api.Cause{Network: "mesh", Note: "VXLAN tunnel of overlay mesh to the other hosts"}},
				}},
		},
		VXLANs: []api.InspectVXLAN{{
			Name: "vx-4200", VNI: 4200, Local: "198.18.0.1", Port: 4789, Proxy: true, MTU: 1450, Master: "vxb-mesh", Up: true,
			Cause: api.Cause{Network: "mesh", Note: "VXLAN device of overlay mesh"},
			FDB: []api.InspectFDB{
				{Line: "00:00:00:00:00:00 dst 198.18.0.2 self permanent", Cause: api.Cause{Network: "mesh", Host: "h2", Note: "flood list"}},
				{Line: "72:0a:39:e1:1a:67 dst 198.18.0.2 self permanent", Cause: api.Cause{Container: "r2", Network: "mesh", Host: "h2"}},
				{Line: "02:11:22:33:44:55 dst 198.18.0.77 self", Cause: api.Cause{Unknown: true, Note: "not in the agent's view: stale or added by hand"}},
			},
			Neigh: []api.InspectNeigh{{Line: "10.200.31.1 lladdr 72:0a:39:e1:1a:67 PERMANENT", Cause: api.Cause{Container: "r2", Network: "mesh", Host: "h2"}}},
		}},
		Iptables: []api.InspectChain{
			{Table: "nat", Chain: "PREROUTING", Builtin: true, Rules: []api.InspectRule{{Rule: "-A PREROUTING -m addrtype --dst-type LOCAL -j VXMESH-DNAT", Cause: api.Cause{Note: "jump to VXMESH-DNAT"}}}},
			{Table: "nat", Chain: "VXMESH-DNAT", Rules: []api.InspectRule{{Rule: `-A VXMESH-DNAT -p tcp -m tcp --dport 8090 -j DNAT --to-destination 10.61.0.2:80`, Cause: api.Cause{Container: "w1", Network: "web", Note: "published port 80/tcp -> 0.0.0.0:8090"}}}},
			{Table: "filter", Chain: "VXMESH-ISOLATION", Rules: []api.InspectRule{}},
		},
		Containers: []api.InspectContainer{
			{Name: "w1", Netns: "w1", Exists: true, SharedBy: []string{"side"}, EtcDir: "/etc/netns/w1", Files: map[string]bool{"hostname": true, "hosts": true, "resolv.conf": false},
				Interfaces: []api.InspectInterface{
					{Name: "lo", Kind: "device", MTU: 65536, Up: true, Addrs: []string{"127.0.0.1/8"}, Cause: api.Cause{Note: "loopback"}},
					{Name: "eth0", Kind: "veth", MAC: "02:64:fe:c6:6c:a6", MTU: 1500, Up: true, Addrs: []string{"10.61.0.2/24"}, Peer: "vh9339069e", Cause: api.Cause{Container: "w1", Network: "web"}},
				},
				Routes: []string{"default via 10.61.0.1 dev eth0"}},
			{Name: "gone", Netns: "gone"},
		},
		Problems: []string{`network "db": bridge "br-db" not found`},
	}
}

func TestPrintInspect(t *testing.T) {
	var b bytes.Buffer
	printInspect(&b, inspectSample())
	out := b.String()
	for _, w := range []string{
		"Kernel state vxmesh made on h1 (198.18.0.1), read back at 03:04:05.",
		"\nBRIDGES (brctl show)\n" +
			"bridge name  bridge id          STP enabled  interfaces\n" +
			"br-web       8000.f68d6ec388f2  no           vh9339069e  # w1 on web: host end of the container's veth\n" +
			"vxb-mesh     8000.06cd9936a3c5  no           vh183ea88d  # w1 on mesh: host end of the container's veth\n" +
			"                                             vx-4200     # network mesh: VXLAN tunnel of overlay mesh to the other hosts\n",
		"br-web:    inet 10.61.0.1/24 (gateway)   mac f6:8d:6e:c3:88:f2  mtu 1500  up  # network web: bridge of network web\n",
		"vx-4200: vxlan id 4200 local 198.18.0.1 dstport 4789 nolearning proxy, mtu 1450, master vxb-mesh, up  # network mesh: VXLAN device of overlay mesh\n" +
			"  $ bridge fdb show dev vx-4200\n" +
			"  00:00:00:00:00:00 dst 198.18.0.2 self permanent  # peer h2 on mesh: flood list\n" +
			"  72:0a:39:e1:1a:67 dst 198.18.0.2 self permanent  # r2 on mesh, host h2\n" +
			"  02:11:22:33:44:55 dst 198.18.0.77 self           # UNKNOWN: not in the agent's view: stale or added by hand\n" +
			"  $ ip neigh show dev vx-4200\n" +
			"  10.200.31.1 lladdr 72:0a:39:e1:1a:67 PERMANENT  # r2 on mesh, host h2\n",
		"*nat\n" +
			"-A PREROUTING -m addrtype --dst-type LOCAL -j VXMESH-DNAT  # jump to VXMESH-DNAT\n" +
			"-N VXMESH-DNAT\n" +
			"-A VXMESH-DNAT -p tcp -m tcp --dport 8090 -j DNAT --to-destination 10.61.0.2:80  # w1 on web: published port 80/tcp -> 0.0.0.0:8090\n" +
			"\n*filter\n-N VXMESH-ISOLATION\n",
		"w1: netns w1 (shared with side), files: hostname hosts in /etc/netns/w1 (no resolv.conf)\n" +
			"  lo               device  -                  mtu 65536  up  127.0.0.1/8   # loopback\n" +
			"  eth0@vh9339069e  veth    02:64:fe:c6:6c:a6  mtu 1500   up  10.61.0.2/24  # w1 on web\n" +
			"  route: default via 10.61.0.1 dev eth0\n",
		"gone: netns gone MISSING\n",
		"\nPROBLEMS\n  network \"db\": bridge \"br-db\" not found\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks\n%s\n--- got:\n%s", w, out)
		}
	}
	for l := range strings.Lines(out) {
		if strings.TrimRight(l, " \n") != strings.TrimSuffix(l, "\n") {
			t.Errorf("trailing spaces: %q", l)
		}
	}

	b.Reset()
	printInspect(&b, &api.Inspect{Host: "h9"})
	if strings.Count(b.String(), "\nnone\n") != 4 {
		t.Errorf("empty inspect:\n%s", b.String())
	}
}

// TestCLIInspect: the command against a fake agent, --json, and --host
// finding a lab host's socket from the lab's record.
func TestCLIInspect(t *testing.T) {
	in := inspectSample()
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){"GET /v1/inspect": reply(200, in)})

	var out, errb bytes.Buffer
	if code := run([]string{"inspect", "--socket", f.sock}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "72:0a:39:e1:1a:67 dst 198.18.0.2 self permanent  # r2 on mesh, host h2") {
		t.Errorf("table:\n%s", out.String())
	}

	out.Reset()
	if code := run([]string{"inspect", "--json", "--socket", f.sock}, nil, &out, &errb); code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errb.String())
	}
	var got api.Inspect
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if got.VXLANs[0].FDB[2].Line != in.VXLANs[0].FDB[2].Line || !got.VXLANs[0].FDB[2].Unknown || !strings.Contains(out.String(), `"unknown": true`) {
		t.Errorf("--json: %+v", got.VXLANs[0].FDB)
	}

	// A lab record whose host h2 has the fake agent's socket.
	root := t.TempDir()
	rec := &lab.Record{Plan: lab.Plan{Name: "t1", Dir: filepath.Join(root, "t1"), Hosts: []lab.HostPlan{{Name: "h1", Socket: "/nonexistent"}, {Name: "h2", Socket: f.sock}}}}
	if err := os.MkdirAll(rec.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"inspect", "--root", root, "--name", "t1", "--host", "h2"}, nil, &out, &errb); code != 0 {
		t.Fatalf("--host: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "Kernel state vxmesh made on h1") {
		t.Errorf("--host:\n%s", out.String())
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inspect", "--root", root, "--name", "t1", "--host", "h7"}, 1, `lab "t1" has no host "h7" (hosts: h1, h2)`},
		{[]string{"inspect", "--root", root, "--name", "nolab", "--host", "h1"}, 1, "vxmesh lab up --name nolab"},
		{[]string{"inspect", "--name", "t1"}, 2, "give the lab host with --host"},
		{[]string{"inspect", "--socket", f.sock, "--host", "h1"}, 2, "--socket and --host exclude each other"},
		{[]string{"inspect", "--host", "h1", "--name", "Bad-Name"}, 2, "--name"},
		{[]string{"inspect", "extra"}, 2, "takes no arguments"},
		{[]string{"inspect", "--socket", filepath.Join(root, "none.sock")}, 1, "agent not running"},
	} {
		errb.Reset()
		if code := run(c.args, nil, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.msg)
		}
	}
}
