package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// dualStackHosts: a dual-stack overlay mesh, an IPv6-only overlay six,
// and on h1 an IPv6-only bridge web6 with a published port. a1 (h1) links
// to b1 (h2) as db; b1's IPv6 address on mesh is b1v6 (so the test can
// move it).
func dualStackHosts(b1v6 string) func(host string) string {
	return func(host string) string {
		nets := `
networks:
  - name: mesh
    driver: overlay
    subnet: 10.220.0.0/16
    subnet6: "fd00:220::/64"
  - name: six
    driver: overlay
    subnet6: "fd00:221::/64"
  - name: web6
    subnet6: "fd00:222::/64"
`
		switch host {
		case "h1":
			return nets + `
containers:
  - name: a1
    netns: ns(a1)
    networks: [mesh, six]
    ip6: {mesh: "fd00:220::a1"}
    links: ["b1:db"]
  - name: w1
    netns: ns(w1)
    networks: [web6]
    publish: ["8086:80"]
`
		case "h2":
			return nets + `
containers:
  - name: b1
    netns: ns(b1)
    networks: [mesh, six]
    ip6: {mesh: "` + b1v6 + `"}
`
		}
		return nets
	}
}

// TestIPv6AcrossHosts: dual-stack and IPv6-only overlays between two hosts
// with agents running, over an IPv4 and over an IPv6 underlay: IPv6 ping
// and TCP by address and by name (AAAA from the embedded DNS), IPv4 still
// working beside it, cluster IPAM of IPv6 addresses (six), a legacy link
// in the hosts file that follows the linked container's address, and (IPv6
// underlay) an IPv6 published port of an IPv6-only bridge network reached
// from another host.
func TestIPv6AcrossHosts(t *testing.T) {
	for _, v6 := range []bool{true, false} {
		t.Run(fmt.Sprintf("ipv6 underlay %v", v6), func(t *testing.T) {
			c := newOvCluster(t, 2, v6, dualStackHosts("fd00:220::b1"))
			h1, h2 := c.host("h1"), c.host("h2")
			h1.start()
			h2.start()
			etc1, etc2 := filepath.Join(h1.dir, "etc"), filepath.Join(h2.dir, "etc")

			// By address, both families, both ways.
			nstest.Eventually(t, 30*time.Second, func() error { return ping6(c.ns("a1"), "fd00:220::b1") })
			nstest.Eventually(t, 10*time.Second, func() error { return ping6(c.ns("b1"), "fd00:220::a1") })
			v4 := h2.ip("b1", "mesh")
			nstest.Eventually(t, 10*time.Second, func() error { return ping(c.ns("a1"), v4) })

			// By name: AAAA from the embedded DNS (a1's and b1's addresses
			// on six come from the cluster IPAM).
			for _, p := range []struct{ etc, from, to string }{{etc1, "a1", "b1"}, {etc2, "b1", "a1"}, {etc1, "a1", "b1.six"}} {
				nstest.Eventually(t, 10*time.Second, func() error {
					_, err := execIn(p.etc, c.ns(p.from), "ping", "-6", "-n", "-q", "-c1", "-W1", p.to)
					return err
				})
			}
			six1, six2 := hostsAddr(t, etc1, c.ns("a1"), "fd00:221:", "a1"), hostsAddr(t, etc2, c.ns("b1"), "fd00:221:", "b1")
			if six1 == six2 || six1 == "" {

				t.Fatalf("IPv6 cluster IPAM: a1 %q and b1 %q on six", six1, six2)
			}

			// TCP over IPv6 across hosts.
			payload := make([]byte, 256<<10)
			rand.Read(payload)
			srv := nstest.ServeEcho(t, c.ns("b1"), "tcp", "[fd00:220::b1]:0")
			got, err := nstest.Dial(c.ns("a1"), "tcp", srv, payload, 20*time.Second)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("tcp a1 -> b1 over IPv6: %d of %d bytes, %v", len(got), len(payload), err)
			}

			// inspect: the IPv6 neighbour entry of b1 on h1's VXLAN device,
			// tied to b1.
			nstest.Eventually(t, 10*time.Second, func() error { return inspectNeigh(h1, "fd00:220::b1", "b1") })

			// The link: b1's addresses as b1 and db; then b1 moves.
			nstest.Eventually(t, 10*time.Second, func() error { return hostsHas(etc1, c.ns("a1"), "fd00:220::b1", "db") })
			h2.write(dualStackHosts("fd00:220::b2")("h2"))
			nstest.Eventually(t, 20*time.Second, func() error { return hostsHas(etc1, c.ns("a1"), "fd00:220::b2", "db") })
			nstest.Eventually(t, 10*time.Second, func() error { return ping6(c.ns("a1"), "fd00:220::b2") })

			if !v6 {
				return
			}
			// An IPv6 published port of an IPv6-only bridge network, from
			// another host.
			nstest.ServeWho(t, c.ns("w1"), "tcp6", "[::]:80")
			to := netip.AddrPortFrom(h1.h.Addr6, 8086)
			nstest.Eventually(t, 10*time.Second, func() error {
				got, err := nstest.Dial(h2.h.NS, "tcp", to, nil, 2*time.Second)
				if err != nil {
					return err
				}
				if !strings.Contains(string(got), h2.h.Addr6.String()) {
					return fmt.Errorf("w1 saw %q, want %s", got, h2.h.Addr6)
				}
				return nil
			})
			// inspect explains the ip6tables rules like the iptables ones.
			in, err := h1.client.Inspect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			dnat := false
			for _, ch := range in.Iptables {
				for _, r := range ch.Rules {
					if ch.Family != "ipv6" {
						continue
					}
					if r.Unknown {
						t.Errorf("ip6tables rule not explained: %s (%s)", r.Rule, r.Note)
					}
					dnat = dnat || (ch.Table == "nat" && ch.Chain == "VXMESH-DNAT" && r.Container == "w1")
				}
			}
			if !dnat {
				t.Errorf("inspect: no ip6tables DNAT rule tied to w1: %+v", in.Iptables)
			}
		})
	}
}

// inspectNeigh checks that h's inspect shows a neighbour entry for ip on
// a VXLAN device, tied to container ctr.
func inspectNeigh(h *ovHost, ip, ctr string) error {
	in, err := h.client.Inspect(context.Background())
	if err != nil {
		return err
	}
	for _, x := range in.VXLANs {
		for _, n := range x.Neigh {
			if n.IP == ip {
				if n.Container != ctr || n.Unknown {
					return fmt.Errorf("neighbour %s: %+v", ip, n)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no neighbour entry for %s in inspect", ip)
}

func ping6(ns, to string) error {
	_, err := nstest.RunIn(ns, "ping", "-6", "-n", "-q", "-c1", "-W1", to)
	return err
}

// hostsHas reports whether ns's hosts file has a line with addr and name.
func hostsHas(etcRoot, ns, addr, name string) error {
	b, err := os.ReadFile(filepath.Join(etcRoot, ns, "hosts"))
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == addr && strings.Contains(" "+strings.Join(f[1:], " ")+" ", " "+name+" ") {
			return nil
		}
	}
	return fmt.Errorf("no %s %s in hosts:\n%s", addr, name, b)
}

// hostsAddr is the first address with prefix in ns's hosts file for
// name alone (the container's own line).
func hostsAddr(t *testing.T, etcRoot, ns, prefix, name string) string {
	b, err := os.ReadFile(filepath.Join(etcRoot, ns, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], prefix) && f[1] == name {
			return f[0]
		}
	}
	return ""
}
