package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// doctorBed is two hosts on an underlay: h2 carries what a peer's agent
// would (a VXLAN device of VNI 42 on port 4789 in a bridge, a memberlist
// named h2 on 7946), and h1's agent is a fake serving status, peers and
// inspect. Doctor runs against h1 in h1's namespace.
type doctorBed struct {
	tp     *nstest.Topology
	h1, h2 *nstest.Host
	opts   Options
}

func newDoctorBed(t *testing.T) *doctorBed {
	t.Helper()
	nstest.RequireTool(t, "ip", "iptables")
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	b := &doctorBed{tp: tp, h1: tp.Hosts[0], h2: tp.Hosts[1]}
	for _, h := range []*nstest.Host{b.h1, b.h2} {
		h.MustRun(t, "ip", "link", "add", "vxb-mesh", "type", "bridge")
		h.MustRun(t, "ip", "link", "add", "vx-42", "type", "vxlan", "id", "42", "dstport", "4789", "local", h.Addr.String(), "nolearning")
		h.MustRun(t, "ip", "link", "set", "vx-42", "master", "vxb-mesh", "alias", "vxmesh:vxlan net=mesh")
		h.MustRun(t, "ip", "link", "set", "vx-42", "up")
		h.MustRun(t, "ip", "link", "set", "vxb-mesh", "up", "alias", "vxmesh:net=mesh")
	}
	startMemberlist(t, b.h2)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "h1.yaml")
	yaml := fmt.Sprintf("host: {name: h1, address: %s}\nstate_dir: %s\ncluster: {join: [%s]}\nnetworks:\n  - {name: mesh, driver: overlay, subnet: 10.200.0.0/16, vni: 42, vxlan_port: 4789, mtu: 1450}\n",
		b.h1.Addr, dir, b.h2.Addr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	st := api.Status{Host: "h1", Address: b.h1.Addr.String(), Config: cfg,
		Networks: []api.Network{{Name: "mesh", Driver: "overlay", VNI: 42, VXLAN: "vx-42", VXLANPort: 4789, MTU: 1450, Device: "vxb-mesh"}}}
	peers := []api.Peer{{Name: "h1", Address: b.h1.Addr.String(), State: "alive", Self: true}, {Name: "h2", Address: b.h2.Addr.String(), State: "alive"}}
	in := api.Inspect{Host: "h1",
		Bridges: []api.InspectBridge{{Name: "vxb-mesh", Driver: "overlay", Ports: []api.InspectPort{{Name: "vx-42", Kind: "vxlan"}}, Cause: api.Cause{Network: "mesh"}}},
		VXLANs:  []api.InspectVXLAN{{Name: "vx-42", VNI: 42, Port: 4789}}}
	sock := serveFakeAgent(t, map[string]any{"/v1/status": st, "/v1/peers": peers, "/v1/inspect": in})
	b.opts = Options{Client: api.NewClient(sock), Netns: b.h1.NS, Timeout: 300 * time.Millisecond}
	return b
}

// startMemberlist runs a memberlist node named after h in h's namespace.
func startMemberlist(t *testing.T, h *nstest.Host) {
	t.Helper()
	mc := memberlist.DefaultLANConfig()
	mc.Name = h.Name
	mc.BindAddr, mc.BindPort = h.Addr.String(), 7946
	mc.AdvertiseAddr, mc.AdvertisePort = h.Addr.String(), 7946
	mc.Logger = log.New(io.Discard, "", 0)
	var ml *memberlist.Memberlist
	err := netnsutil.Do(h.NS, func() error {
		var err error
		ml, err = memberlist.Create(mc)
		return err
	})
	if err != nil {
		t.Fatalf("memberlist in %s: %v", h.NS, err)
	}
	t.Cleanup(func() { ml.Shutdown() })
}

// serveFakeAgent answers GET routes with canned JSON on a unix socket.
func serveFakeAgent(t *testing.T, routes map[string]any) string {
	t.Helper()
	sock := nstest.SocketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := routes[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.Error{Error: "no route " + r.URL.Path})
			return
		}
		json.NewEncoder(w).Encode(v)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// result runs doctor and returns the result of check name.
func (b *doctorBed) result(t *testing.T, name string) (Result, *Report) {
	t.Helper()
	r := Run(context.Background(), b.opts)
	got := r.Find(name)
	if len(got) == 0 {
		t.Fatalf("no %q in the report:\n%s", name, reportText(r))
	}
	return got[0], r
}

func reportText(r *Report) string {
	var sb strings.Builder
	r.Write(&sb)
	return sb.String()
}

// TestDoctorFaults makes each fault that namespaces can fake and checks
// doctor reports it, and that the clean bed reports no failure.
func TestDoctorFaults(t *testing.T) {
	b := newDoctorBed(t)
	id := b.tp.ID
	r := Run(context.Background(), b.opts)
	if r.Failed() {
		t.Fatalf("clean bed has failures:\n%s", reportText(r))
	}
	for _, name := range []string{"vxlan mesh h2", "mtu mesh h2", "gossip tcp h2", "gossip udp h2", "kernel vxlan", "leftover links"} {
		if got := r.Find(name); len(got) == 0 || got[0].Status != OK {
			t.Errorf("clean bed: %q not ok:\n%s", name, reportText(r))
		}
	}
	gone := filepath.Join("/etc/netns", nstest.Prefix+id+"-gone")
	orphan := nstest.NewNetns(t, "orphan") // a container namespace no agent knows
	orphanVeth := bridge.HostVethName(orphan, "mesh")
	for _, c := range []struct {
		name   string
		make   [][]string // commands: "h1"/"h2" then argv
		undo   [][]string
		check  string
		status Status
		says   string
	}{
		{"mtu too small on h2's underlay link",
			[][]string{{"h2", "ip", "link", "set", nstest.HostLink, "mtu", "1400"}},
			[][]string{{"h2", "ip", "link", "set", nstest.HostLink, "mtu", "1500"}},
			"mtu mesh h2", Fail, "MTU black hole"},
		{"vxlan port firewalled on h2",
			[][]string{{"h2", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"}},
			[][]string{{"h2", "iptables", "-D", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"}},
			"vxlan mesh h2", Fail, "no answer to a VXLAN echo"},
		{"gossip tcp firewalled on h2",
			[][]string{{"h2", "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7946", "-j", "DROP"}},
			[][]string{{"h2", "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "7946", "-j", "DROP"}},
			"gossip tcp h2", Fail, "does not answer"},
		{"gossip udp firewalled on h2",
			[][]string{{"h2", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "7946", "-j", "DROP"}},
			[][]string{{"h2", "iptables", "-D", "INPUT", "-p", "udp", "--dport", "7946", "-j", "DROP"}},
			"gossip udp h2", Fail, "does not answer"},
		{"leftover link",
			[][]string{{"h1", "ip", "link", "add", "br-left", "type", "bridge"}, {"h1", "ip", "link", "set", "br-left", "alias", "vxmesh:net=left"}},
			[][]string{{"h1", "ip", "link", "del", "br-left"}},
			"leftover links", Fail, "br-left"},
		{"leftover chain",
			[][]string{{"h1", "iptables", "-N", "VXMESH-LEFT"}},
			[][]string{{"h1", "iptables", "-X", "VXMESH-LEFT"}},
			"leftover chains", Fail, "filter VXMESH-LEFT"},
		{"vxlan port clash",
			[][]string{{"h1", "ip", "link", "add", "flannel.1", "type", "vxlan", "external", "dstport", "4789"}},
			[][]string{{"h1", "ip", "link", "del", "flannel.1"}},
			"vxlan port mesh", Fail, "flannel.1"},
		{"leftover namespace",
			[][]string{{"h1", "ip", "link", "add", orphanVeth, "type", "veth", "peer", "name", "eth0", "netns", orphan},
				{"ip", "-n", orphan, "link", "set", "eth0", "alias", "vxmesh:ctr=orphan,net=mesh"}},
			[][]string{{"h1", "ip", "link", "del", orphanVeth}},
			"leftover namespaces", Warn, orphan + " (orphan)"},
		{"leftover name files",
			[][]string{{"mkdir", "-p", gone}, {"sh", "-c", "echo '# written by vxmesh' > " + gone + "/hosts"}},
			[][]string{{"rm", "-rf", gone}},
			"leftover files", Warn, gone},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() {
				for _, cmd := range c.undo {
					b.run(t, cmd)
				}
			})
			for _, cmd := range c.make {
				b.run(t, cmd)
			}
			got, r := b.result(t, c.check)
			if got.Status != c.status || !strings.Contains(got.Evidence, c.says) {
				t.Errorf("%s: %s %q; want %s with %q\n%s", c.check, got.Status, got.Evidence, c.status, c.says, reportText(r))
			}
		})
	}
}

// run runs a command in h1's or h2's namespace, or in the root one (files
// only: mkdir, sh, rm).
func (b *doctorBed) run(t *testing.T, cmd []string) {
	t.Helper()
	var err error
	var out string
	switch cmd[0] {
	case "h1":
		out, err = b.h1.Run(cmd[1:]...)
	case "h2":
		out, err = b.h2.Run(cmd[1:]...)
	default:
		var o []byte
		o, err = runRoot(cmd)
		out = string(o)
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
}

func runRoot(cmd []string) ([]byte, error) {
	return osexec.Command(cmd[0], cmd[1:]...).CombinedOutput()
}
