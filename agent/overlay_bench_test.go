package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// BenchmarkOverlayConvergence measures endpoint convergence through real
// agents with their default timings (loop, gossip, IPAM): from the API call
// that attaches a container on host A to the first ICMP echo reply it sends
// to a container on host B. The baseline, in the same run and for the same
// containers, is the first reply to a container on A itself (a local
// bridge: no gossip, no VXLAN programming). Containers are attached on each
// host in turn, B is the next host; each is removed again after its sample.
// attach-* is the API call alone (A's pass), after-attach-* the rest: from
// the call's return to B's first reply.
//
//	go test ./agent -run '^$' -bench OverlayConvergence -benchtime 40x
func BenchmarkOverlayConvergence(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { benchConvergence(b, n) })
	}
}

func benchConvergence(b *testing.B, n int) {
	c := newOvCluster(b, n, false, func(string) string { return "" })
	c.defaults = true
	for _, h := range c.hosts {
		h.write(fmt.Sprintf(`
networks:
  - name: mesh
    driver: overlay
    subnet: 10.230.0.0/16
containers:
  - name: probe-%s
    netns: ns(probe-%s)
    networks: [mesh]
`, h.name, h.name))
	}
	c.startAll()
	ctx := context.Background()
	var remote, local, attach, after []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ha, hb := c.hosts[i%n], c.hosts[(i+1)%n]
		name := fmt.Sprintf("cv%d", i)
		start := time.Now()
		got, err := ha.client.Run(ctx, api.ContainerSpec{Name: name, Netns: c.ns(name), Networks: []string{"mesh"}})
		if err != nil {
			b.Fatalf("run %s on %s: %v", name, ha.name, err)
		}
		attached := time.Since(start)
		ip := netip.MustParseAddr(got.Endpoints[0].IP)
		type res struct {
			d   time.Duration
			err error
		}
		rl, rr := make(chan res, 1), make(chan res, 1)
		go func() {
			err := firstEcho(c.ns("probe-"+ha.name), ip, 10*time.Second)
			rl <- res{time.Since(start), err}
		}()
		go func() {
			err := firstEcho(c.ns("probe-"+hb.name), ip, 10*time.Second)
			rr <- res{time.Since(start), err}
		}()
		l, r := <-rl, <-rr
		if l.err != nil || r.err != nil {
			b.Fatalf("sample %d (%s on %s): local %v, from %s %v", i, ip, ha.name, l.err, hb.name, r.err)
		}
		local, remote = append(local, l.d), append(remote, r.d)
		attach, after = append(attach, attached), append(after, r.d-attached)
		b.StopTimer()
		if err := ha.client.Remove(ctx, name); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	p := func(ds []time.Duration, q float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(remote, 0.5), "p50-ms")
	b.ReportMetric(p(remote, 0.99), "p99-ms")
	b.ReportMetric(p(local, 0.5), "local-p50-ms")
	b.ReportMetric(p(local, 0.99), "local-p99-ms")
	b.ReportMetric(p(remote, 0.5)/p(local, 0.5), "p50-ratio")
	b.ReportMetric(p(attach, 0.5), "attach-p50-ms")
	b.ReportMetric(p(after, 0.5), "after-attach-p50-ms")
	b.ReportMetric(p(after, 0.99), "after-attach-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// firstEcho sends ICMP echo requests to ip from inside namespace ns every
// 5 ms until one is answered, or timeout.
func firstEcho(ns string, ip netip.Addr, timeout time.Duration) error {
	var conn net.PacketConn
	if err := netnsutil.Do(ns, func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		if _, err := conn.WriteTo(echoRequest(id, seq), &net.IPAddr{IP: ip.AsSlice()}); err != nil {
			return err
		}
		until := time.Now().Add(5 * time.Millisecond)
		for {
			conn.SetReadDeadline(until)
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // timeout: send the next request
			}
			a, ok := from.(*net.IPAddr)
			if ok && a.IP.Equal(ip.AsSlice()) && n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:6]) == id {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within %s", ip, timeout)
}

// echoRequest builds an ICMP echo request.
func echoRequest(id, seq uint16) []byte {
	m := make([]byte, 16)
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "vxmesh!!")
	var sum uint32
	for i := 0; i < len(m); i += 2 {
		sum += uint32(m[i])<<8 | uint32(m[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(m[2:], ^uint16(sum))
	return m
}
