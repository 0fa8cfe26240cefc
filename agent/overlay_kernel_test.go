package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// threeHosts: overlay networks mesh and other on every host, a bridge
// network web on h1; a1 (mesh) and a2 (web first, then mesh) on h1, b1
// (mesh) and o2 (other) on h2, c1 (mesh) and o3 (other) on h3.
func threeHosts(host string) string {
	nets := `
networks:
  - name: web
    subnet: 10.61.0.0/24
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
  - name: other
    driver: overlay
    subnet: 10.201.0.0/16
`
	switch host {
	case "h1":
		return nets + `
containers:
  - name: a1
    netns: ns(a1)
    networks: [mesh]
  - name: a2
    netns: ns(a2)
    networks: [web, mesh]
`
	case "h2":
		return nets + `
containers:
  - name: b1
    netns: ns(b1)
    networks: [mesh]
  - name: o2
    netns: ns(o2)
    networks: [other]
  - name: p2
    netns: ns(p2)
    networks: [mesh]
    publish: ["8090:80"]
`
	case "h3":
		return nets + `
containers:
  - name: c1
    netns: ns(c1)
    networks: [mesh]
  - name: o3
    netns: ns(o3)
    networks: [other]
`
	}
	return nets
}

// TestOverlayThreeHosts: the overlay across three hosts with agents
// running: pings across hosts, TCP larger than the MTU both ways, cluster
// IPAM without duplicates, isolation of two overlays, a container on a
// bridge and an overlay network, outbound masquerade on the container's own
// host, the cluster-wide endpoint list, and drift repair.
func TestOverlayThreeHosts(t *testing.T) {
	c := newOvCluster(t, 3, false, threeHosts)
	c.startAll()
	h1, h2, h3 := c.host("h1"), c.host("h2"), c.host("h3")
	o := &ovThree{c: c, h1: h1, h2: h2, h3: h3}
	o.a1, o.a2, o.b1, o.c1 = h1.ip("a1", "mesh"), h1.ip("a2", "mesh"), h2.ip("b1", "mesh"), h3.ip("c1", "mesh")
	o.o2, o.o3 = h2.ip("o2", "other"), h3.ip("o3", "other")
	o.blocks(t)
	t.Run("ping across hosts", o.pingAcross)
	t.Run("tcp bigger than the mtu both ways", o.tcpBig)
	t.Run("two overlays are isolated", o.isolated)
	t.Run("bridge and overlay network", o.bridgeAndOverlay)
	t.Run("outbound is masqueraded on the container's own host", o.masquerade)
	t.Run("published port of an overlay container", o.publishedPort)
	t.Run("endpoints cluster-wide", o.endpoints)
	t.Run("drift is repaired", o.drift)
}

// ovThree is TestOverlayThreeHosts' cluster and its containers' addresses.
type ovThree struct {
	c                      *ovCluster
	h1, h2, h3             *ovHost
	a1, a2, b1, c1, o2, o3 string
}

// blocks: cluster IPAM gives distinct addresses, each host in a block of
// its own.
func (o *ovThree) blocks(t *testing.T) {
	a1, a2, b1, c1 := o.a1, o.a2, o.b1, o.c1
	ips := []string{a1, a2, b1, c1}
	if s := slices.Clone(ips); len(slices.Compact(func() []string { slices.Sort(s); return s }())) != 4 {
		t.Fatalf("duplicate overlay addresses: %v", ips)
	}
	block := func(ip string) netip.Prefix { return netip.PrefixFrom(netip.MustParseAddr(ip), 24).Masked() }
	if block(a1) != block(a2) || block(a1) == block(b1) || block(b1) == block(c1) || block(a1) == block(c1) {
		t.Errorf("blocks: a1 %s a2 %s b1 %s c1 %s: want one /24 per host", a1, a2, b1, c1)
	}
}

// pingAcross: ping across hosts.
func (o *ovThree) pingAcross(t *testing.T) {
	for _, p := range [][2]string{{"a1", o.b1}, {"a1", o.c1}, {"b1", o.c1}, {"c1", o.a1}, {"b1", o.a2}, {"o2", o.o3}} {
		o.c.pingOK(p[0], p[1])
	}
}

// tcpBig: tcp bigger than the mtu both ways.
func (o *ovThree) tcpBig(t *testing.T) {
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	for _, p := range []struct{ from, toNS, to string }{{"a1", "b1", o.b1}, {"b1", "a1", o.a1}, {"c1", "a2", o.a2}} {
		srv := nstest.ServeEcho(t, o.c.ns(p.toNS), "tcp", p.to+":0")
		got, err := nstest.Dial(o.c.ns(p.from), "tcp", srv, payload, 20*time.Second)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("%s -> %s: %d of %d bytes back, %v", p.from, p.to, len(got), len(payload), err)
		}
	}
}

// isolated: two overlays are isolated.
func (o *ovThree) isolated(t *testing.T) {
	var wg sync.WaitGroup
	for _, p := range [][2]string{{"a1", o.o2}, {"o2", o.b1}, {"o3", o.a1}, {"b1", o.o3}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ping(o.c.ns(p[0]), p[1]); err == nil {
				t.Errorf("%s reaches %s on another overlay", p[0], p[1])
			}
		}()
	}
	wg.Wait()
}

// bridgeAndOverlay: bridge and overlay network.
func (o *ovThree) bridgeAndOverlay(t *testing.T) {
	out, err := nstest.RunIn(o.c.ns("a2"), "ip", "route")
	if err != nil || !strings.Contains(out, "default via 10.61.0.1 dev eth0") || !strings.Contains(out, "10.200.0.0/16 dev eth1") {
		t.Errorf("a2 routes:\n%s%v", out, err)
	}
	o.c.pingOK("a2", "10.61.0.1")
	o.c.pingOK("a2", o.b1) // over eth1, the overlay
}

// masquerade: outbound is masqueraded on the container's own host.
func (o *ovThree) masquerade(t *testing.T) {
	who := nstest.ServeWho(t, o.c.tp.Internet.NS, "udp", netip.AddrPortFrom(nstest.PublicAddr, 0).String())
	for _, p := range []struct {
		ctr string
		h   *ovHost
	}{{"a1", o.h1}, {"b1", o.h2}, {"c1", o.h3}} {
		got, err := nstest.Dial(o.c.ns(p.ctr), "udp", who, []byte("x"), 5*time.Second)
		if err != nil || !strings.HasPrefix(string(got), p.h.h.Addr.String()+":") {
			t.Errorf("internet saw %s as %q (%v), want %s", p.ctr, got, err, p.h.h.Addr)
		}
	}
}

// publishedPort: published port of an overlay container.
func (o *ovThree) publishedPort(t *testing.T) {
	who := nstest.ServeWho(t, o.c.ns("p2"), "tcp", "0.0.0.0:80")
	if who.Port() != 80 {
		t.Fatalf("server on %s", who)
	}
	to := netip.AddrPortFrom(o.h2.h.Addr, 8090)
	// From another host, and from a container on another host.
	for _, from := range []string{o.h1.h.NS, o.c.ns("a1")} {
		nstest.Eventually(t, 10*time.Second, func() error {
			got, err := nstest.Dial(from, "tcp", to, nil, 2*time.Second)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(string(got), o.h1.h.Addr.String()+":") {
				return fmt.Errorf("p2 saw %q, want %s", got, o.h1.h.Addr)
			}
			return nil
		})
	}
}

// endpoints: endpoints cluster-wide.
func (o *ovThree) endpoints(t *testing.T) {
	eps, err := o.h2.client.Endpoints(context.Background(), "mesh")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range eps {
		got[e.Container] = fmt.Sprintf("%s %s %s %v", e.Host, e.IP, e.VTEP, e.MAC != "")
	}
	want := map[string]string{
		"a1": "h1 " + o.a1 + " 198.18.0.1 true", "a2": "h1 " + o.a2 + " 198.18.0.1 true",
		"b1": "h2 " + o.b1 + " 198.18.0.2 true", "c1": "h3 " + o.c1 + " 198.18.0.3 true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("endpoint %s = %q, want %q", k, got[k], v)
		}
	}
	peers, err := o.h2.client.Peers(context.Background())
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers = %+v, %v", peers, err)
	}
	for _, p := range peers {
		if p.State != "alive" || (!p.Self && p.Records == 0) {
			t.Errorf("peer %+v", p)
		}
	}
	st, err := o.h2.client.Status(context.Background())
	if err != nil || st.Gossip == nil || !st.Gossip.Ready || st.Endpoints.Remote != 4 || len(st.Peers) != 3 {
		t.Errorf("status: %+v %+v, %v", st.Gossip, st.Endpoints, err)
	}
	nets, _ := o.h2.client.Networks(context.Background())
	for _, n := range nets {
		if n.Name == "mesh" && (n.VXLAN == "" || n.VXLANPort != 4789 || n.MTU != 1450) {
			t.Errorf("network mesh: %+v", n)
		}
	}
}

// drift: drift is repaired.
func (o *ovThree) drift(t *testing.T) {
	dev := o.h1.vxlanOf("mesh")
	bmac := o.h2.mac("b1", "mesh")
	for _, cmd := range [][]string{
		{"bridge", "fdb", "del", bmac, "dev", dev, "dst", "198.18.0.2", "self"},
		{"ip", "neigh", "del", o.b1, "dev", dev},
		{"ip", "addr", "del", "10.200.0.1/16", "dev", "vxb-mesh"},
	} {
		o.h1.h.MustRun(t, cmd...)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		fdb, neigh := o.h1.entries(dev)
		addr, _ := o.h1.h.Run("ip", "-4", "addr", "show", "dev", "vxb-mesh")
		if !strings.Contains(fdb, bmac+" dst 198.18.0.2 self permanent") || !strings.Contains(neigh, o.b1+" lladdr "+bmac+" PERMANENT") || !strings.Contains(addr, "10.200.0.1/16") {
			return fmt.Errorf("not restored:\n%s%s%s", fdb, neigh, addr)
		}
		return nil
	})
	o.c.pingOK("a1", o.b1)
	// The whole device.
	o.h1.h.MustRun(t, "ip", "link", "del", dev)
	nstest.Eventually(t, 10*time.Second, func() error {
		fdb, _ := o.h1.entries(dev)
		if !strings.Contains(fdb, bmac+" dst 198.18.0.2 self permanent") {
			return fmt.Errorf("device not restored:\n%s", fdb)
		}
		return nil
	})
	o.c.pingOK("a1", o.b1)
	if !strings.Contains(o.h1.logs.String(), "repaired overlay drift") {
		t.Error("no repair logged")
	}
}

// TestOverlayChanges: a container removed on one host leaves every other
// host's tables; an address moved to another host works at once; two live
// hosts' endpoints with one static address: the older keeps it, the
// conflict is in status and the log.
func TestOverlayChanges(t *testing.T) {
	c := newOvCluster(t, 3, false, func(string) string {
		return `
networks:
  - name: mesh
    driver: overlay
    subnet: 10.210.0.0/16
containers:
  - name: base-HOST
    netns: ns(base-HOST)
    networks: [mesh]
`
	})
	for _, h := range c.hosts {
		h.write(strings.ReplaceAll(h.body, "HOST", h.name))
	}
	c.startAll()
	h1, h2, h3 := c.host("h1"), c.host("h2"), c.host("h3")
	ctx := context.Background()
	run := func(h *ovHost, name, ip string) {
		t.Helper()
		spec := api.ContainerSpec{Name: name, Netns: c.ns(name), Networks: []string{"mesh"}}
		if ip != "" {
			spec.IP = map[string]string{"mesh": ip}
		}
		if _, err := h.client.Run(ctx, spec); err != nil {
			t.Fatalf("%s: run %s: %v", h.name, name, err)
		}
	}

	t.Run("removed container leaves every table", func(t *testing.T) {
		run(h2, "gone", "")
		ip, mac := h2.ip("gone", "mesh"), h2.mac("gone", "mesh")
		c.converged()
		for _, h := range []*ovHost{h1, h3} {
			fdb, neigh := h.entries(h.vxlanOf("mesh"))
			if !strings.Contains(fdb, mac) || !strings.Contains(neigh, ip+" ") {
				t.Fatalf("%s lacks %s %s:\n%s%s", h.name, ip, mac, fdb, neigh)
			}
		}
		c.pingOK("base-h1", ip)
		if err := h2.client.Remove(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		nstest.Eventually(t, 10*time.Second, func() error {
			for _, h := range []*ovHost{h1, h3} {
				fdb, neigh := h.entries(h.vxlanOf("mesh"))
				if strings.Contains(fdb, mac+" dst") || strings.Contains(neigh, ip+" ") {
					return fmt.Errorf("%s still has %s %s:\n%s%s", h.name, ip, mac, fdb, neigh)
				}
			}
			return nil
		})
	})

	t.Run("address moved to another host", func(t *testing.T) {
		const moved = "10.210.99.9"
		run(h2, "mv1", moved)
		c.pingOK("base-h1", moved)
		if err := h2.client.Remove(ctx, "mv1"); err != nil {
			t.Fatal(err)
		}
		run(h3, "mv2", moved)
		// At once: within the gossip round trip, not an ARP timeout.
		start := time.Now()
		nstest.Eventually(t, 5*time.Second, func() error { return ping(c.ns("base-h1"), moved) })
		t.Logf("moved address answered after %s", time.Since(start).Round(time.Millisecond))
		mac := h3.mac("mv2", "mesh")
		_, neigh := h1.entries(h1.vxlanOf("mesh"))
		if !strings.Contains(neigh, moved+" lladdr "+mac) {
			t.Errorf("h1 neighbour entry for %s is not mv2's %s:\n%s", moved, mac, neigh)
		}
	})

	t.Run("static address collision: the older keeps it", func(t *testing.T) {
		const twice = "10.210.77.7"
		run(h2, "first", twice)
		c.pingOK("base-h1", twice)
		firstMAC := h2.mac("first", "mesh")
		run(h3, "second", twice)
		nstest.Eventually(t, 10*time.Second, func() error {
			for _, h := range []*ovHost{h1, h2, h3} {
				st, err := h.client.Status(ctx)
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(st.Conflicts, func(s string) bool {
					return strings.Contains(s, twice) && strings.Contains(s, `container "first" on host "h2" keeps it`)
				}) {
					return fmt.Errorf("%s: conflicts %q", h.name, st.Conflicts)
				}
			}
			return nil
		})
		_, neigh := h1.entries(h1.vxlanOf("mesh"))
		if !strings.Contains(neigh, twice+" lladdr "+firstMAC) {
			t.Errorf("h1 programs %s not to first's %s:\n%s", twice, firstMAC, neigh)
		}
		if !strings.Contains(h3.logs.String(), "overlay conflict") {
			t.Error("h3 did not log the conflict")
		}
		eps, _ := h1.client.Endpoints(ctx, "mesh")
		if !slices.ContainsFunc(eps, func(e api.Endpoint) bool { return e.Container == "second" && strings.HasPrefix(e.Note, "conflict") }) {
			t.Errorf("endpoints do not mark second as a conflict loser: %+v", eps)
		}
	})

	t.Run("network removed from a host's config", func(t *testing.T) {
		dev := h3.vxlanOf("mesh")
		for _, n := range []string{"mv2", "second"} {
			if err := h3.client.Remove(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		h3.write("\n")
		nstest.Eventually(t, 15*time.Second, func() error {
			if out, _ := h3.h.Run("ip", "-br", "link"); strings.Contains(out, dev) || strings.Contains(out, "vxb-mesh") {
				return fmt.Errorf("h3 keeps its overlay devices:\n%s", out)
			}
			for _, p := range overlaystep.Peers(h1.r.a.ovl.Gossip()) {
				if p.Name == "h3" && p.Records != 0 {
					return fmt.Errorf("h3 still has %d records", p.Records)
				}
			}
			if fdb, _ := h1.entries(h1.vxlanOf("mesh")); strings.Contains(fdb, "198.18.0.3") {
				return fmt.Errorf("h1 keeps entries towards h3:\n%s", fdb)
			}
			return nil
		})
	})
}

// baseHosts: one overlay network, one container base-HOST per host.
func baseHosts(c *ovCluster) {
	for _, h := range c.hosts {
		h.write(strings.ReplaceAll(`
networks:
  - name: mesh
    driver: overlay
    subnet: 10.220.0.0/16
containers:
  - name: base-HOST
    netns: ns(base-HOST)
    networks: [mesh]
`, "HOST", h.name))
	}
}

// floodResult is what a pingFlood in the background gave, and when it
// ended.
type floodResult struct {
	got int
	out string
	err error
	end time.Time
}

// startPingFlood runs pingFlood in the background; the channel gets its
// result.
func startPingFlood(ns, to string, count int) <-chan floodResult {
	done := make(chan floodResult, 1)
	go func() {
		got, out, err := pingFlood(ns, to, count)
		done <- floodResult{got, out, err, time.Now()}
	}()
	return done
}

// pingFlood pings to from container ns every 10ms, count times, and
// returns how many answers came back.
func pingFlood(ns, to string, count int) (int, string, error) {
	out, err := nstest.RunIn(ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c", fmt.Sprint(count), to)
	var sent, got int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets transmitted") {
			fmt.Sscanf(l, "%d packets transmitted, %d received", &sent, &got)
		}
	}
	return got, out, err
}

// TestOverlayFailures: the gossip-driven faults through the real agent:
// agent restarts under traffic drop nothing, a partitioned host converges
// after the heal with no stale record, a late joiner gets the full table,
// and a killed host's entries go after reap_after and not before.
func TestOverlayFailures(t *testing.T) {
	c := newOvCluster(t, 3, false, func(string) string { return "" })
	baseHosts(c)
	c.startAll()
	h1, h2, h3 := c.host("h1"), c.host("h2"), c.host("h3")
	ctx := context.Background()
	b2 := h2.ip("base-h2", "mesh")

	t.Run("agent restarts under traffic drop nothing", func(t *testing.T) {
		const count = 800 // 8 s of traffic or more, every 10 ms
		done := startPingFlood(c.ns("base-h1"), b2, count)
		time.Sleep(300 * time.Millisecond) // let traffic run first (not a wait for state)
		start := time.Now()
		for _, h := range []*ovHost{h2, h1} {
			if err := h.stopAgent(); err != nil {
				t.Fatalf("stop %s: %v", h.name, err)
			}
			h.start()
			c.converged()
		}
		restarted := time.Now()
		t.Logf("both agents restarted in %s", restarted.Sub(start).Round(time.Millisecond))
		r := <-done
		if r.got != count {
			t.Errorf("%d of %d pings answered across two agent restarts: %v\n%s", r.got, count, r.err, r.out)
		}
		if restarted.After(r.end) {
			t.Errorf("the restarts outlasted the traffic by %s", restarted.Sub(r.end))
		}
	})

	t.Run("partitioned host converges after the heal", func(t *testing.T) {
		spec := api.ContainerSpec{Name: "old", Netns: c.ns("old"), Networks: []string{"mesh"}}
		if _, err := h1.client.Run(ctx, spec); err != nil {
			t.Fatal(err)
		}
		c.converged()
		oldMAC := h1.mac("old", "mesh")
		h3.h.SetUnderlayUp(t, false)
		nstest.Eventually(t, 10*time.Second, func() error {
			for _, p := range overlaystep.Peers(h3.r.a.ovl.Gossip()) {
				if !p.Self && p.State == "alive" {
					return fmt.Errorf("h3 still sees %s alive", p.Name)
				}
			}
			return nil
		})
		// Meanwhile on the majority side: old goes, new comes.
		if err := h1.client.Remove(ctx, "old"); err != nil {
			t.Fatal(err)
		}
		spec.Name, spec.Netns = "new", c.ns("new")
		if _, err := h1.client.Run(ctx, spec); err != nil {
			t.Fatal(err)
		}
		h3.h.SetUnderlayUp(t, true)
		c.converged()
		nstest.Eventually(t, 10*time.Second, func() error {
			if fdb, _ := h3.entries(h3.vxlanOf("mesh")); strings.Contains(fdb, oldMAC+" dst") {
				return fmt.Errorf("h3 keeps the stale entry of old (%s):\n%s", oldMAC, fdb)
			}
			return nil
		})
		c.pingOK("base-h3", h1.ip("new", "mesh"))
	})

	t.Run("late joiner gets the full table", func(t *testing.T) {
		h4 := c.addHost(c.tp.AddHost(t, "h4"), "")
		h4.write(`
networks:
  - name: mesh
    driver: overlay
    subnet: 10.220.0.0/16
containers:
  - name: base-h4
    netns: ns(base-h4)
    networks: [mesh]
`)
		h4.start()
		c.converged()
		c.pingOK("base-h4", b2)
		c.pingOK("base-h1", h4.ip("base-h4", "mesh"))
	})

	t.Run("killed host: entries go after reap_after, not before", func(t *testing.T) {
		mac := h3.mac("base-h3", "mesh")
		has := func() bool {
			fdb, _ := h1.entries(h1.vxlanOf("mesh"))
			return strings.Contains(fdb, mac+" dst 198.18.0.3 self permanent")
		}
		h3.kill()
		var dead time.Time
		nstest.Eventually(t, 10*time.Second, func() error {
			for _, p := range overlaystep.Peers(h1.r.a.ovl.Gossip()) {
				if p.Name == "h3" && p.State == "dead" {
					dead = time.Now()
					return nil
				}
			}
			return fmt.Errorf("h1 does not see h3 dead: %+v", overlaystep.Peers(h1.r.a.ovl.Gossip()))
		})
		if !has() {
			t.Fatal("h3's entry went as soon as h3 was declared dead")
		}
		nstest.Eventually(t, testReapAfter+10*time.Second, func() error {
			if has() {
				return fmt.Errorf("h1 still has h3's entry %s", mac)
			}
			return nil
		})
		if gone := time.Since(dead); gone < testReapAfter-time.Second {
			t.Errorf("h3's entry went %s after h3 was declared dead, before reap_after %s", gone, testReapAfter)
		}
		c.pingOK("base-h1", b2) // the others are untouched
	})
}

// TestOverlayIPv6Underlay: hosts whose underlay (gossip and VXLAN) is
// IPv6: the device carries 70 bytes of overhead, pings and TCP larger than
// the MTU cross it both ways.
func TestOverlayIPv6Underlay(t *testing.T) {
	c := newOvCluster(t, 2, true, func(string) string { return "" })
	baseHosts(c)
	c.startAll()
	h1, h2 := c.host("h1"), c.host("h2")
	b1, b2 := h1.ip("base-h1", "mesh"), h2.ip("base-h2", "mesh")
	c.pingOK("base-h1", b2)
	c.pingOK("base-h2", b1)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	for _, p := range []struct{ from, toNS, to string }{{"base-h1", "base-h2", b2}, {"base-h2", "base-h1", b1}} {
		srv := nstest.ServeEcho(t, c.ns(p.toNS), "tcp", p.to+":0")
		got, err := nstest.Dial(c.ns(p.from), "tcp", srv, payload, 20*time.Second)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("%s -> %s: %d of %d bytes back, %v", p.from, p.to, len(got), len(payload), err)
		}
	}
	st, err := h1.client.Status(context.Background())
	if err != nil || len(st.Overlay) != 1 || st.Overlay[0].MTU != 1430 {
		t.Fatalf("overlay status: %+v, %v", st.Overlay, err)
	}
	eps, _ := h1.client.Endpoints(context.Background(), "mesh")
	if !slices.ContainsFunc(eps, func(e api.Endpoint) bool { return e.Host == "h2" && e.VTEP == h2.h.Addr6.String() }) {
		t.Errorf("no endpoint of h2 with VTEP %s: %+v", h2.h.Addr6, eps)
	}
	out, _ := nstest.RunIn(c.ns("base-h1"), "ip", "link", "show", "eth0")
	if !strings.Contains(out, "mtu 1430") {
		t.Errorf("container interface mtu:\n%s", out)
	}
}
