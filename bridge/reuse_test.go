package bridge

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// reuseDeadline is how soon a peer must reach a container that took over
// the address of a removed one. Before MACs were derived and announced
// peers kept the old MAC until their ARP entry expired: 8 to 34 s.
const reuseDeadline = time.Second

// udpEcho answers every datagram on addr inside ns until stopped.
func udpEcho(t *testing.T, ns string, addr netip.AddrPort) (stop func()) {
	t.Helper()
	var pc net.PacketConn
	err := netnsutil.Do(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	stop = func() { pc.Close(); <-done }
	t.Cleanup(stop)
	return stop
}

// reachedWithin sends a datagram every few milliseconds from ns to to and
// returns how long the first answer took, or an error after limit.
func reachedWithin(ns string, to netip.AddrPort, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < limit {
		if _, err := nstest.Dial(ns, "udp", to, []byte("ping"), 20*time.Millisecond); err == nil {
			return time.Since(start), nil
		}
	}
	return 0, errors.New("no answer")
}

// TestKernelAddressReuse is issue 13's second bug: container B is removed
// and B' takes its address in a new namespace while A was talking to B. A
// must reach B' at once, whether B had the MAC derived from the address
// (B' gets the same) or a random one recorded before MACs were derived
// (B' announces its own), on a bridge and on a macvlan network.
func TestKernelAddressReuse(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	g := newRealRig(t, h, t.TempDir())
	bridgeNet := Network{Name: "web", Driver: DriverBridge, Device: "br-re" + tp.ID[:4], Subnet: pfx("10.34.0.0/24"), Gateway: addr("10.34.0.1"), MTU: 1500}
	macvlanNet := Network{Name: "lan", Driver: DriverMacvlan, Parent: h.Link, Subnet: nstest.UnderlayPrefix, Gateway: nstest.InternetAddr}
	for _, c := range []struct {
		name string
		nw   Network
		aIP  string // A's address; B's and B''s is bIP
		bIP  string
		bMAC net.HardwareAddr // B's recorded MAC; nil derives it
	}{
		{"bridge derived", bridgeNet, "10.34.0.2/24", "10.34.0.3/24", nil},
		{"bridge recorded random", bridgeNet, "10.34.0.2/24", "10.34.0.3/24", RandomMAC()},
		{"macvlan derived", macvlanNet, "198.18.100.1/16", "198.18.100.2/16", nil},
		{"macvlan recorded random", macvlanNet, "198.18.100.1/16", "198.18.100.2/16", RandomMAC()},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := containerNetns(t, 3)
			gw := c.nw.Gateway.String()
			a := Container{Name: "a", Netns: ns[0], Interfaces: []Interface{iface(c.nw.Name, "eth0", c.aIP, gw)}}
			b := Container{Name: "b", Netns: ns[1], Interfaces: []Interface{iface(c.nw.Name, "eth0", c.bIP, gw)}}
			b.Interfaces[0].MAC = c.bMAC
			b2 := Container{Name: "b2", Netns: ns[2], Interfaces: []Interface{iface(c.nw.Name, "eth0", c.bIP, gw)}}
			to := netip.AddrPortFrom(pfx(c.bIP).Addr(), 7)
			t.Cleanup(func() { g.cleanup(t) })

			if res := g.pass(t, &State{Networks: []Network{c.nw}, Containers: []Container{a, b}}); res.Err() != nil {
				t.Fatal(res.Err())
			}
			stop := udpEcho(t, b.Netns, to)
			if _, err := reachedWithin(a.Netns, to, 5*time.Second); err != nil {
				t.Fatalf("a -> b: %v", err)
			}
			// A caches B's MAC (REACHABLE); B goes, B' comes.
			stop()
			if res := g.pass(t, &State{Networks: []Network{c.nw}, Containers: []Container{a}}); res.Err() != nil {
				t.Fatal(res.Err())
			}
			if res := g.pass(t, &State{Networks: []Network{c.nw}, Containers: []Container{a, b2}}); res.Err() != nil {
				t.Fatal(res.Err())
			}
			udpEcho(t, b2.Netns, to)
			gap, err := reachedWithin(a.Netns, to, reuseDeadline)
			if err != nil {
				t.Fatalf("a -> b' (same address, new netns): %v within %v", err, reuseDeadline)
			}
			t.Logf("a reached b' %v after it was attached", gap)
		})
	}
}
