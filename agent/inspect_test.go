package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// inspectHosts: a bridge network web and an overlay mesh on both hosts;
// w1 on h1 (web first, port 8090 published), r2 on h2 (mesh).
func inspectHosts(host string) string {
	nets := `
networks:
  - name: web
    subnet: 10.61.0.0/24
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
`
	switch host {
	case "h1":
		return nets + `
containers:
  - name: w1
    netns: ns(w1)
    networks: [web, mesh]
    publish: ["8090:80"]
`
	case "h2":
		return nets + `
containers:
  - name: r2
    netns: ns(r2)
    networks: [mesh]
`
	}
	return nets
}

// rawInspect gets /v1/inspect as JSON text, to check the wire format.
func rawInspect(t *testing.T, sock string) (api.Inspect, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: time.Minute}
	resp, err := hc.Get("http://vxmesh/v1/inspect")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var in api.Inspect
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	return in, string(raw)
}

// inspectRun is TestInspect's cluster with h1's inspect answer.
type inspectRun struct {
	c      *ovCluster
	h1, h2 *ovHost
	vx     string // h1's VXLAN device of mesh
	// r2's address and MAC on mesh, w1's address on web, h2's underlay
	// address.
	r2IP, r2MAC, w1IP, h2Addr string
	in                        api.Inspect
}

// dump prints the inspect answer, for failure messages.
func (r *inspectRun) dump() string {
	b, _ := json.MarshalIndent(r.in, "", "  ")
	return string(b)
}

// TestInspect: the kernel state of h1, read back through GET /v1/inspect:
// the bridge with the container's veth, the VXLAN device with the remote
// container's FDB and neighbour entries and the flood entry (each line as
// iproute2 prints it), the DNAT rule of the published port, the container
// namespace from inside; entries added by hand are marked unknown.
func TestInspect(t *testing.T) {
	c := newOvCluster(t, 2, false, inspectHosts)
	c.startAll()
	r := &inspectRun{c: c, h1: c.host("h1"), h2: c.host("h2")}
	r.vx = r.h1.vxlanOf("mesh")
	r.r2IP, r.r2MAC = r.h2.ip("r2", "mesh"), r.h2.mac("r2", "mesh")
	r.w1IP = r.h1.ip("w1", "web")
	r.h2Addr = c.addr(r.h2.h).String()
	r.in, _ = rawInspect(t, r.h1.sock)
	if r.in.Host != "h1" || len(r.in.Problems) != 0 {
		t.Errorf("host %q, problems %q", r.in.Host, r.in.Problems)
	}
	t.Run("bridges", r.bridges)
	t.Run("vxlan entries", r.vxlanEntries)
	t.Run("iptables", r.iptables)
	t.Run("container namespace", r.containerNamespace)
	t.Run("entries added by hand are unknown", r.handMade)
}

func (r *inspectRun) bridges(t *testing.T) {
	c := r.c
	want := map[string]struct{ port, ctr, net string }{
		"br-web":   {bridge.HostVethName(c.ns("w1"), "web"), "w1", "web"},
		"vxb-mesh": {bridge.HostVethName(c.ns("w1"), "mesh"), "w1", "mesh"},
	}
	seen := 0
	for _, b := range r.in.Bridges {
		w, ok := want[b.Name]
		if !ok {
			t.Errorf("unexpected bridge %s", b.Name)
			continue
		}
		seen++
		mac := strings.ReplaceAll(b.MAC, ":", "")
		if b.ID != "8000."+mac || b.STP || !b.Up || b.Network != w.net || b.Unknown {
			t.Errorf("bridge %s: id %q (mac %s), stp %v, up %v, network %q, unknown %v", b.Name, b.ID, b.MAC, b.STP, b.Up, b.Network, b.Unknown)
		}
		if b.Gateway == "" || !strings.Contains(strings.Join(b.Addrs, " "), b.Gateway+"/") {
			t.Errorf("bridge %s: addresses %q lack the gateway %q", b.Name, b.Addrs, b.Gateway)
		}
		r.checkPorts(t, b, w.port, w.ctr, w.net)
	}
	if seen != len(want) {
		t.Errorf("bridges: want %d, got:\n%s", len(want), r.dump())
	}
}

// checkPorts checks bridge b has the veth port of ctr on net, and
// otherwise only the VXLAN device.
func (r *inspectRun) checkPorts(t *testing.T, b api.InspectBridge, port, ctr, net string) {
	t.Helper()
	found := false
	for _, p := range b.Ports {
		switch {
		case p.Name == port:
			found = true
			if p.Container != ctr || p.Network != net || p.Unknown || p.Kind != "veth" {
				t.Errorf("bridge %s port %s: %+v", b.Name, p.Name, p)
			}
		case p.Name == r.vx:
			if p.Network != "mesh" || p.Unknown || p.Kind != "vxlan" || !strings.Contains(p.Note, "VXLAN tunnel") {
				t.Errorf("bridge %s port %s: %+v", b.Name, p.Name, p)
			}
		default:
			t.Errorf("bridge %s: unexpected port %+v", b.Name, p)
		}
	}
	if !found {
		t.Errorf("bridge %s lacks port %s: %+v", b.Name, port, b.Ports)
	}
}

func (r *inspectRun) vxlanEntries(t *testing.T) {
	c, h1, vx := r.c, r.h1, r.vx
	r2IP, r2MAC, h2Addr := r.r2IP, r.r2MAC, r.h2Addr
	x := findVXLAN(t, r.in, vx)
	if x.Network != "mesh" || x.Learning || !x.Proxy || x.Local != c.addr(h1.h).String() || x.Port != 4789 || x.Master != "vxb-mesh" || x.MTU != 1450 {
		t.Errorf("vxlan %s: %+v", vx, x)
	}
	fdb, neigh := h1.entries(vx)
	wantFDB := map[string]api.Cause{
		r2MAC + " dst " + h2Addr + " self permanent":          {Container: "r2", Network: "mesh", Host: "h2"},
		"00:00:00:00:00:00 dst " + h2Addr + " self permanent": {Network: "mesh", Host: "h2"},
	}
	for line, cause := range wantFDB {
		e, ok := findFDB(x, line)
		if !ok {
			t.Errorf("fdb lacks %q:\n%s", line, r.dump())
			continue
		}
		if e.Container != cause.Container || e.Network != cause.Network || e.Host != cause.Host || e.Unknown {
			t.Errorf("fdb %q: cause %+v, want %+v", line, e.Cause, cause)
		}
	}
	for _, e := range x.FDB {
		if !strings.Contains(fdb, e.Line) {
			t.Errorf("fdb line %q is not what bridge fdb prints:\n%s", e.Line, fdb)
		}
	}
	wantNeigh := r2IP + " lladdr " + r2MAC + " PERMANENT"
	if len(x.Neigh) != 1 || x.Neigh[0].Line != wantNeigh || x.Neigh[0].Container != "r2" || x.Neigh[0].Host != "h2" || x.Neigh[0].Unknown {
		t.Errorf("neighbours: want %q of r2 on h2, got %+v", wantNeigh, x.Neigh)
	}
	if !strings.Contains(neigh, wantNeigh) {
		t.Errorf("ip neigh prints %q, not %q", neigh, wantNeigh)
	}
}

func (r *inspectRun) iptables(t *testing.T) {
	w1IP := r.w1IP
	var dnat, jump, masq bool
	for _, ch := range r.in.Iptables {
		for _, rule := range ch.Rules {
			switch {
			case ch.Table == "nat" && ch.Chain == bridge.ChainDNAT && strings.Contains(rule.Rule, "--dport 8090"):
				dnat = true
				if rule.Container != "w1" || rule.Network != "web" || rule.Unknown || !strings.Contains(rule.Rule, w1IP+":80") {
					t.Errorf("dnat rule %q: %+v", rule.Rule, rule.Cause)
				}
			case ch.Table == "nat" && ch.Chain == "PREROUTING":
				jump = rule.Rule == "-A PREROUTING -m addrtype --dst-type LOCAL -j VXMESH-DNAT"
			case ch.Chain == bridge.ChainPostrouting && strings.Contains(rule.Rule, "MASQUERADE") && strings.Contains(rule.Rule, "br-web"):
				masq = rule.Network == "web" && !rule.Unknown
			}
			if rule.Unknown {
				t.Errorf("rule %q marked unknown: %+v", rule.Rule, rule.Cause)
			}
		}
	}
	if !dnat || !jump || !masq {
		t.Errorf("dnat rule %v, prerouting jump %v, masquerade of web %v:\n%s", dnat, jump, masq, r.dump())
	}
}

func (r *inspectRun) containerNamespace(t *testing.T) {
	c, w1IP := r.c, r.w1IP
	var ct *api.InspectContainer
	for i := range r.in.Containers {
		if r.in.Containers[i].Name == "w1" {
			ct = &r.in.Containers[i]
		}
	}
	if ct == nil || !ct.Exists || ct.Netns != c.ns("w1") || !ct.Files["hosts"] || !ct.Files["resolv.conf"] {
		t.Fatalf("container w1: %+v", ct)
	}
	nets := map[string]string{}
	for _, ifc := range ct.Interfaces {
		nets[ifc.Name] = ifc.Network + " " + strings.Join(ifc.Addrs, ",") + " " + ifc.Peer
		if ifc.Unknown {
			t.Errorf("interface %s unknown: %+v", ifc.Name, ifc)
		}
	}
	if want := "web " + w1IP + "/24 " + bridge.HostVethName(c.ns("w1"), "web"); nets["eth0"] != want {
		t.Errorf("eth0: %q, want %q", nets["eth0"], want)
	}
	if !strings.HasPrefix(nets["eth1"], "mesh ") {
		t.Errorf("eth1: %q", nets["eth1"])
	}
	checkRoutes(t, ct)
}

// checkRoutes checks the container's routes are lines `ip route` prints,
// the default route among them.
func checkRoutes(t *testing.T, ct *api.InspectContainer) {
	t.Helper()
	out, _ := nstest.RunIn(ct.Netns, "ip", "route")
	var lines []string
	for l := range strings.Lines(out) {
		lines = append(lines, strings.TrimSpace(l))
	}
	ipRoute := strings.Join(lines, "\n") + "\n"
	for _, r := range ct.Routes {
		if !strings.Contains(ipRoute, r+"\n") {
			t.Errorf("route %q is not what ip route prints:\n%s", r, ipRoute)
		}
	}
	if !strings.Contains(strings.Join(ct.Routes, "\n"), "default via 10.61.0.1 dev eth0") {
		t.Errorf("routes: %q", ct.Routes)
	}
}

func (r *inspectRun) handMade(t *testing.T) {
	h1, vx := r.h1, r.vx
	r2MAC, h2Addr := r.r2MAC, r.h2Addr
	// Not permanent: the agent's sync leaves them alone, so they stay.
	const mac, ip = "02:11:22:33:44:55", "10.200.99.99"
	for _, args := range [][]string{
		{"bridge", "fdb", "add", mac, "dev", vx, "dst", "198.18.0.77", "self", "dynamic"},
		{"ip", "neigh", "add", ip, "lladdr", mac, "dev", vx, "nud", "reachable"},
	} {
		if out, err := h1.h.Run(args...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	var got api.Inspect
	var raw string
	nstest.Eventually(t, 10*time.Second, func() error {
		got, raw = rawInspect(t, h1.sock)
		x := findVXLAN(t, got, vx)
		e, ok := findFDB(x, mac+" dst 198.18.0.77 self")
		if !ok || !e.Unknown || e.Container != "" {
			return fmt.Errorf("hand-made fdb entry: %+v (found %v)", e, ok)
		}
		for _, n := range x.Neigh {
			if n.IP == ip {
				if !n.Unknown {
					return fmt.Errorf("hand-made neighbour: %+v", n)
				}
				return nil
			}
		}
		return fmt.Errorf("no neighbour %s in %+v", ip, x.Neigh)
	})
	if !strings.Contains(raw, `"unknown": true`) {
		t.Errorf("JSON lacks \"unknown\": true:\n%s", raw)
	}
	// The agent's own entries are still known.
	x := findVXLAN(t, got, vx)
	if e, ok := findFDB(x, r2MAC+" dst "+h2Addr+" self permanent"); !ok || e.Unknown {
		t.Errorf("r2's entry: %+v", e)
	}
}

func findVXLAN(t *testing.T, in api.Inspect, name string) api.InspectVXLAN {
	t.Helper()
	for _, x := range in.VXLANs {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("no vxlan %s in %+v", name, in.VXLANs)
	return api.InspectVXLAN{}
}

func findFDB(x api.InspectVXLAN, line string) (api.InspectFDB, bool) {
	for _, e := range x.FDB {
		if e.Line == line {
			return e, true
		}
	}
	return api.InspectFDB{}, false
}
