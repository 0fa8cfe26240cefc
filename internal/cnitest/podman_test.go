package cnitest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestPodmanLoopback: podman runs a container inside a lab host's
// namespace with only the stock loopback plugin, and neither the root
// namespace nor anything outside podman's directories keeps a trace.
func TestPodmanLoopback(t *testing.T) {
	nstest.RequireRoot(t)
	cnitest.KeepRootUnchanged(t)
	host := nstest.NewNetns(t, "pm")
	pm := cnitest.NewPodman(t, host)

	pm.Start(t, "c1", cnitest.DefaultNetwork, nil, "sleep", "300")
	out, err := pm.Exec("c1", "ip", "-o", "link")
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "lo:") {
		t.Fatalf("links in the container: %v\n%s; want lo alone", err, out)
	}
	// The lab host's namespace has no podman bridge either.
	if out, err := nstest.RunIn(host, "ip", "-o", "link"); err != nil || strings.Contains(out, "cni-podman") {
		t.Errorf("links in the lab host: %v\n%s; want no podman bridge", err, out)
	}
	pm.Run(t, "rm", "--force", "--time", "0", "c1")
}

// TestPodmanFakeAgent: podman runs vxmesh-cni, which asks the (fake)
// agent; podman passes the container name and -p through, and honours the
// result's dns in the container's resolv.conf.
func TestPodmanFakeAgent(t *testing.T) {
	nstest.RequireRoot(t)
	cnitest.KeepRootUnchanged(t)
	host := nstest.NewNetns(t, "pm")
	sock := nstest.SocketPath(t)
	fa := cnitest.NewFakeAgent(t, sock, "mesh")
	pm := cnitest.NewPodman(t, host, cnitest.BuildPlugin(t)+"/vxmesh-cni")
	pm.AddNetwork(t, "vxmesh-mesh", fmt.Sprintf(`{"type": "vxmesh-cni", "network": "mesh", "socket": %q,
		"capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true}}`, sock))

	pm.Start(t, "web7", "vxmesh-mesh", []string{"-p", "8080:80"}, "sleep", "300")
	got := fa.LastAttach()
	if got.Name != "web7" || !strings.HasPrefix(got.Netns, "/run/netns/netns-") || got.IfName != "eth0" {
		t.Errorf("agent got name %q netns %q ifname %q; want web7, podman's /run/netns/netns-*, eth0", got.Name, got.Netns, got.IfName)
	}
	if len(got.Ports) != 1 || got.Ports[0].HostPort != 8080 || got.Ports[0].ContainerPort != 80 || got.Ports[0].Proto != "tcp" {
		t.Errorf("agent got ports %+v, want 8080->80/tcp", got.Ports)
	}
	resolv, err := pm.Exec("web7", "cat", "/etc/resolv.conf")
	if err != nil || !strings.HasPrefix(nameservers(resolv), "127.0.0.11") || !strings.Contains(resolv, "vxmesh.test") {
		t.Errorf("resolv.conf: %v\n%s\nwant 127.0.0.11 first and the search domain", err, resolv)
	}
	hosts, err := pm.Exec("web7", "cat", "/etc/hosts")
	if err != nil || !strings.Contains(hosts, "10.200.0.2") {
		t.Errorf("hosts: %v\n%s\nwant the address the agent gave", err, hosts)
	}
	pm.Run(t, "rm", "--force", "--time", "0", "web7")
	if n := len(fa.Attachments()); n != 0 {
		t.Errorf("after podman rm the agent holds %d attachments, want 0", n)
	}
}

// nameservers are resolv.conf's nameserver addresses, in order.
func nameservers(resolv string) string {
	var ns []string
	for _, l := range strings.Split(resolv, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "nameserver" {
			ns = append(ns, f[1])
		}
	}
	return strings.Join(ns, " ")
}
