package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// cniTool runs the real cnitool inside a lab host's namespace (so nothing
// it or the plugin does can reach the root namespace).
type cniTool struct {
	bin, pluginDir, confDir, hostNS string
}

func (c cniTool) run(env []string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsutil.Path(c.hostNS), c.bin}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"CNI_PATH=" + c.pluginDir, "NETCONFPATH=" + c.confDir}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// resolveIn asks the embedded DNS inside ns for name's A records.
func resolveIn(ns, name string) (string, error) {
	r, err := askDNS(ns, "udp", name, mdns.TypeA, time.Second)
	if err != nil {
		return "", err
	}
	if a := answerA(r); len(a) > 0 {
		return a[0], nil
	}
	return "", fmt.Errorf("%s: no A record in %s (rcode %d)", name, ns, r.Rcode)
}

// TestCNIAttachOverlay drives vxmesh-cni with the real cnitool against a
// real agent on lab host h1: add on a fresh namespace attached to overlay
// network mesh; b1 on h2 reaches it by name and IP and it reaches b1 by
// name (the embedded DNS inside the runtime's namespace); vxmesh
// endpoints shows it with its container ID; check passes, then names the
// veth deleted by hand; a restarted agent adopts the attachment without a
// kernel write; del twice; gc; a namespace gone without DEL is an error
// until gc.
func TestCNIAttachOverlay(t *testing.T) {
	cnitest.KeepRootUnchanged(t)
	cnitest.WatchOutside(t)
	c := newOvCluster(t, 2, false, func(host string) string {
		body := "networks:\n  - name: mesh\n    driver: overlay\n    subnet: 10.210.0.0/16\n"
		if host == "h2" {
			body += "containers:\n  - name: b1\n    netns: ns(b1)\n    networks: [mesh]\n"
		}
		return body
	})
	c.startAll()
	h1 := c.host("h1")
	ct := cniTool{bin: cnitest.BuildCnitool(t), pluginDir: cnitest.BuildPlugin(t), confDir: t.TempDir(), hostNS: h1.h.NS}
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "vxmesh-mesh", "plugins": [{"type": "vxmesh-cni", "network": "mesh", "socket": %q}]}`, h1.sock)
	if err := os.WriteFile(filepath.Join(ct.confDir, "vxmesh-mesh.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	nsName := nstest.NewNetns(t, "cni")
	netns := netnsutil.Path(nsName)
	env := []string{"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web1"}

	out, err := ct.run(env, "add", "vxmesh-mesh", netns)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	var res struct {
		IPs []struct{ Address string }     `json:"ips"`
		DNS struct{ Nameservers []string } `json:"dns"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 || len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "127.0.0.11" {
		t.Fatalf("add result %s (%v): want one address and dns 127.0.0.11", out, err)
	}
	ip, _, _ := strings.Cut(res.IPs[0].Address, "/")

	b1 := c.ns("b1")
	nstest.Eventually(t, 15*time.Second, func() error {
		got, err := resolveIn(b1, "web1")
		if err != nil {
			return err
		}
		if got != ip {
			return fmt.Errorf("web1 resolves to %s in b1, want %s", got, ip)
		}
		return ping(b1, got)
	})
	if err := ping(b1, ip); err != nil {
		t.Errorf("b1 -> web1 by IP %s: %v", ip, err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		got, err := resolveIn(nsName, "b1")
		if err != nil {
			return err
		}
		return ping(nsName, got)
	})

	checkRuntimeShown(t, h1, ip, netns)

	if out, err := ct.run(env, "check", "vxmesh-mesh", netns); err != nil {
		t.Errorf("check: %v\n%s", err, out)
	}
	// A restarted agent adopts the attachment: no kernel write.
	h1.stopAgent()
	r := h1.start()
	nstest.Eventually(t, 20*time.Second, func() error {
		as, err := h1.client.Attachments(t.Context(), api.RuntimeCNI)
		if err != nil || len(as) != 1 || as[0].State != api.StateOK {
			return fmt.Errorf("attachments after restart: %+v, %v", as, err)
		}
		return nil
	})
	if w := r.k.Writes(); w != 0 {
		t.Errorf("restarted agent made %d kernel writes adopting the attachment", w)
	}
	if err := ping(b1, ip); err != nil {
		t.Errorf("b1 -> web1 after the agent's restart: %v", err)
	}

	checkDrift(t, ct, env, nsName, netns)
	delTwiceThenGC(t, ct, h1, env, nsName)
}

// checkDrift: CHECK names drift inside the runtime's namespace (an
// address taken off eth0: the agent repairs it at its next full pass, not
// at once); a deleted veth is drift the agent sees (its host end goes with
// it) and repairs within 2 s, after which CHECK passes again.
func checkDrift(t *testing.T, ct cniTool, env []string, nsName, netns string) {
	t.Helper()
	nstest.RunIn(nsName, "ip", "addr", "flush", "dev", "eth0")
	if out, err := ct.run(env, "check", "vxmesh-mesh", netns); err == nil || !strings.Contains(out, "lacks address") {
		t.Errorf("check after flushing eth0's address: %v\n%s; want the drift named", err, out)
	}
	nstest.RunIn(nsName, "ip", "link", "del", "eth0")
	nstest.Eventually(t, 2*time.Second, func() error {
		out, err := ct.run(env, "check", "vxmesh-mesh", netns)
		if err != nil {
			return fmt.Errorf("check after deleting eth0: %v\n%s", err, out)
		}
		return nil
	})
}

// checkRuntimeShown: vxmesh endpoints shows web1 with its runtime and
// container ID, and vxmesh inspect ties the kernel state to it.
func checkRuntimeShown(t *testing.T, h1 *ovHost, ip, netns string) {
	t.Helper()
	// vxmesh endpoints: the runtime and its container ID.
	eps, err := h1.client.Endpoints(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range eps {
		if e.Container == "web1" {
			found = e.Runtime == api.RuntimeCNI && e.RuntimeID != "" && e.IP == ip && e.Interface == "eth0"
		}
	}
	if !found {
		t.Errorf("endpoints %+v: want web1 with runtime cni, its container ID, %s on eth0", eps, ip)
	}

	// vxmesh inspect ties the kernel state to the runtime's container.
	in, err := h1.client.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ctr, port bool
	for _, ic := range in.Containers {
		ctr = ctr || ic.Name == "web1" && ic.Runtime == api.RuntimeCNI && ic.RuntimeID != "" && ic.Exists && ic.Netns == netns
	}
	for _, b := range in.Bridges {
		for _, p := range b.Ports {
			port = port || p.Container == "web1" && !p.Unknown && strings.Contains(p.Note, "cni container")
		}
	}
	if !ctr || !port {
		t.Errorf("inspect: container tied %v, host end tied %v; want both", ctr, port)
	}
}

// delTwiceThenGC: DEL succeeds twice, and GC removes an attachment
// cnitool's gc does not list.
func delTwiceThenGC(t *testing.T, ct cniTool, h1 *ovHost, env []string, nsName string) {
	t.Helper()
	netns := netnsutil.Path(nsName)
	for i := range 2 {
		if out, err := ct.run(env, "del", "vxmesh-mesh", netns); err != nil {
			t.Errorf("del %d: %v\n%s", i+1, err, out)
		}
	}
	if as, _ := h1.client.Attachments(t.Context(), ""); len(as) != 0 {
		t.Errorf("after del: %+v", as)
	}

	// gc: an attachment cnitool's gc does not list goes.
	if out, err := ct.run(env, "add", "vxmesh-mesh", netns); err != nil {
		t.Fatalf("add again: %v\n%s", err, out)
	}
	if out, err := ct.run(nil, "gc", "vxmesh-mesh", netns); err != nil {
		t.Errorf("gc: %v\n%s", err, out)
	}
	if as, _ := h1.client.Attachments(t.Context(), ""); len(as) != 0 {
		t.Errorf("after gc: %+v", as)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if out, _ := nstest.RunIn(nsName, "ip", "-o", "link"); strings.Contains(out, "eth0") {
			return fmt.Errorf("eth0 still in the namespace after gc:\n%s", out)
		}
		return nil
	})

	// A namespace that vanishes without DEL (a crashed runtime): the
	// attachment turns to error, naming it, and GC removes it.
	if out, err := ct.run(env, "add", "vxmesh-mesh", netns); err != nil {
		t.Fatalf("add a third time: %v\n%s", err, out)
	}
	if err := netnsutil.Delete(nsName); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 15*time.Second, func() error {
		as, err := h1.client.Attachments(t.Context(), api.RuntimeCNI)
		if err != nil || len(as) != 1 || as[0].State != api.StateError || !strings.Contains(as[0].Error, "does not exist") {
			return fmt.Errorf("attachments after the namespace vanished: %+v, %v; want one in error", as, err)
		}
		return nil
	})
	if out, err := ct.run(nil, "gc", "vxmesh-mesh", netns); err != nil {
		t.Errorf("gc after the namespace vanished: %v\n%s", err, out)
	}
	if as, _ := h1.client.Attachments(t.Context(), ""); len(as) != 0 {
		t.Errorf("after gc of the vanished one: %+v", as)
	}
}

// TestPodmanAttachOverlay: the real podman (CNI backend, confined to lab
// host h1's namespace and its own directories) runs a container on overlay
// network mesh through vxmesh-cni and the real agent: it and vxmesh
// container b1 on h2 reach each other by name, and -p 8080:80 (podman's
// portMappings) reaches it from h2 through h1's underlay address. podman
// rm detaches it.
func TestPodmanAttachOverlay(t *testing.T) {
	cnitest.KeepRootUnchanged(t)
	c := newOvCluster(t, 2, false, func(host string) string {
		body := "networks:\n  - name: mesh\n    driver: overlay\n    subnet: 10.211.0.0/16\n"
		if host == "h2" {
			body += "containers:\n  - name: b1\n    netns: ns(b1)\n    networks: [mesh]\n"
		}
		return body
	})
	c.startAll()
	h1, h2 := c.host("h1"), c.host("h2")
	pm := cnitest.NewPodman(t, h1.h.NS, cnitest.BuildPlugin(t)+"/vxmesh-cni")
	pm.AddNetwork(t, "vxmesh-mesh", fmt.Sprintf(`{"type": "vxmesh-cni", "network": "mesh", "socket": %q, "capabilities": {"portMappings": true}}`, h1.sock))
	pm.Start(t, "web7", "vxmesh-mesh", []string{"-p", "8080:80"}, "sh", "-c",
		"mkdir -p /www && echo hello-web7 > /www/index.html && exec httpd -f -p 80 -h /www")

	b1 := c.ns("b1")
	nstest.Eventually(t, 15*time.Second, func() error {
		ip, err := resolveIn(b1, "web7")
		if err != nil {
			return err
		}
		return ping(b1, ip)
	})
	nstest.Eventually(t, 10*time.Second, func() error {
		out, err := pm.Exec("web7", "ping", "-c1", "-W1", "b1")
		if err != nil {
			return fmt.Errorf("web7 -> b1 by name: %v\n%s", err, out)
		}
		return nil
	})
	url := fmt.Sprintf("http://%s:8080/", h1.h.Addr)
	nstest.Eventually(t, 10*time.Second, func() error {
		out, err := nstest.RunIn(h2.h.NS, "curl", "-sS", "-m", "2", url)
		if err != nil || !strings.Contains(out, "hello-web7") {
			return fmt.Errorf("curl %s from h2: %v\n%s", url, err, out)
		}
		return nil
	})
	as, err := h1.client.Attachments(t.Context(), api.RuntimeCNI)
	if err != nil || len(as) != 1 || as[0].Name != "web7" || len(as[0].Ports) != 1 || as[0].Ports[0].HostPort != 8080 {
		t.Errorf("attachments %+v (%v): want web7 with 8080 published", as, err)
	}
	pm.Run(t, "rm", "--force", "--time", "0", "web7")
	if as, _ := h1.client.Attachments(t.Context(), ""); len(as) != 0 {
		t.Errorf("after podman rm: %+v", as)
	}
}

// TestDockerHostPlacement is the agent's side of Docker's remote driver
// through the in-process Attacher: CreateEndpoint reserves the address,
// Join makes the veth with its container end waiting in the host
// namespace; the test then does what dockerd does (moves it into the
// sandbox, renames it, sets the address and route). The container reaches
// a vxmesh container on another host across the overlay; a restarted
// agent adopts the moved pair with no kernel write; Detach removes it.
func TestDockerHostPlacement(t *testing.T) {
	cnitest.KeepRootUnchanged(t)
	c := newOvCluster(t, 2, false, func(host string) string {
		body := "networks:\n  - name: mesh\n    driver: overlay\n    subnet: 10.212.0.0/16\n"
		if host == "h2" {
			body += "containers:\n  - name: b1\n    netns: ns(b1)\n    networks: [mesh]\n"
		}
		return body
	})
	c.startAll()
	h1 := c.host("h1")
	ctx := t.Context()
	req := api.AttachRequest{Runtime: api.RuntimeDocker, ID: "ep0123456789abcdef", Name: "dweb", Network: "mesh", IfName: "eth", Placement: api.PlacementHost, DNSMode: api.DNSNone, Reserve: true}
	// The overlay's first address block settles for a moment after the
	// agents start; Docker's backend waits it out the same way.
	var res api.Attachment
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err = h1.r.a.Attach(ctx, req)
		if !errors.Is(err, overlaystep.ErrIPAMWait) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || len(res.IPs) != 1 || res.MAC == "" || res.HostPeer != "" {
		t.Fatalf("reserve: %+v, %v; want an address and a MAC, no veth", res, err)
	}
	req.Reserve = false
	joined, err := h1.r.a.Attach(ctx, req)
	if err != nil || joined.HostPeer == "" || joined.IPs[0] != res.IPs[0] {
		t.Fatalf("join: %+v, %v; want the reserved address and a host peer", joined, err)
	}
	// dockerd's part: move the end into the sandbox, name it, address it.
	sandbox := nstest.NewNetns(t, "sbx")
	hostNS := h1.h.NS
	for _, cmd := range [][]string{
		{"ip", "link", "set", joined.HostPeer, "netns", netnsutil.Path(sandbox)},
	} {
		if out, err := nstest.RunIn(hostNS, cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	for _, cmd := range [][]string{
		{"ip", "link", "set", joined.HostPeer, "name", "eth0"},
		{"ip", "addr", "add", joined.IPs[0].Address, "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "lo", "up"},
		{"ip", "route", "add", "default", "via", joined.IPs[0].Gateway},
	} {
		if out, err := nstest.RunIn(sandbox, cmd...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	ip, _, _ := strings.Cut(joined.IPs[0].Address, "/")
	b1 := c.ns("b1")
	nstest.Eventually(t, 15*time.Second, func() error { return ping(b1, ip) })
	nstest.Eventually(t, 10*time.Second, func() error {
		got, err := resolveIn(b1, "dweb")
		if err != nil || got != ip {
			return fmt.Errorf("dweb in b1: %s, %v; want %s", got, err, ip)
		}
		return nil
	})
	// A restarted agent adopts the moved pair without a write.
	h1.stopAgent()
	r := h1.start()
	nstest.Eventually(t, 20*time.Second, func() error {
		as, err := h1.client.Attachments(ctx, api.RuntimeDocker)
		if err != nil || len(as) != 1 || as[0].State != api.StateOK {
			return fmt.Errorf("attachments after restart: %+v, %v", as, err)
		}
		return nil
	})
	if w := r.k.Writes(); w != 0 {
		t.Errorf("restarted agent made %d kernel writes adopting the moved veth", w)
	}
	if err := ping(b1, ip); err != nil {
		t.Errorf("b1 -> dweb after the agent's restart: %v", err)
	}
	if d, err := r.a.Detach(ctx, api.DetachRequest{AttachmentKey: req.Key()}); err != nil || !d.Existed {
		t.Fatalf("detach: %+v, %v", d, err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if out, err := nstest.RunIn(sandbox, "ip", "-o", "link", "show", "eth0"); err == nil {
			return fmt.Errorf("eth0 still in the sandbox after detach: %s", out)
		}
		return nil
	})
}
