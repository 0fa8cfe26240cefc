package bridge

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// attachRuns is how many attaches each benchmark times (for p50/p99).
const attachRuns = 40

// BenchmarkAttach times one container attach (a pass that adds one
// container with a published port to a host that has n already), against
// the bare kernel work of the same attach (a netns, a veth into it, an
// address: netlink only) in the same run, and a full pass (every chain
// read again, as the periodic resync does) for comparison. Run:
//
//	go test -run XXX -bench Attach -benchtime 1x ./bridge/
func BenchmarkAttach(b *testing.B) {
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			for b.Loop() {
				benchAttach(b, n)
			}
		})
	}
}

func benchAttach(b *testing.B, n int) {
	tp := nstest.New(b, nstest.Options{Hosts: 1})
	g := newRealRig(b, tp.Hosts[0], b.TempDir())
	g.r.Log = quiet
	ns := containerNetns(b, n+1)
	br := "br-b" + tp.ID[:4]
	want := &State{Networks: []Network{{Name: "web", Driver: DriverBridge, Device: br, Subnet: pfx("10.40.0.0/16"), Gateway: addr("10.40.0.1"), MTU: 1500}}}
	container := func(i int) Container {
		ip := netip.AddrFrom4([4]byte{10, 40, byte((i + 2) / 256), byte((i + 2) % 256)})
		return Container{Name: fmt.Sprintf("c%d", i), Netns: ns[i],
			Interfaces: []Interface{iface("web", "eth0", ip.String()+"/16", "10.40.0.1")},
			Files:      map[string][]byte{FileHostname: HostnameFile(fmt.Sprintf("c%d", i))}}
	}
	dnat := func(upto int) {
		c := ipt.Chain{Name: "VXMESH-DNAT"}
		for i := range upto {
			c.Rules = append(c.Rules, fmt.Sprintf("-p tcp -m tcp --dport %d -j DNAT --to-destination 10.40.%d.%d:80", 20000+i, (i+2)/256, (i+2)%256))
		}
		want.Ports.NAT = []ipt.Chain{c}
	}
	for i := range n {
		want.Containers = append(want.Containers, container(i))
	}
	dnat(n)
	pass := func() time.Duration {
		start := time.Now()
		res, err := g.r.Reconcile(context.Background(), want, g.rec)
		if res != nil {
			g.rec = res.Record
		}
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	pass()
	var attach, full, bare, read, apply []time.Duration
	for range attachRuns {
		want.Containers = append(want.Containers, container(n))
		dnat(n + 1)
		// An attach pass, the steps of Reconcile timed one by one.
		start := time.Now()
		have, err := g.r.Read(want, g.rec)
		if err != nil {
			b.Fatal(err)
		}
		read = append(read, time.Since(start))
		plan := g.r.Planner.Plan(want, have, g.rec)
		t := time.Now()
		res := g.r.Apply(context.Background(), plan, g.rec)
		apply = append(apply, time.Since(t))
		g.r.forgetTouched(want, plan, res)
		g.rec = res.Record
		if err := res.Err(); err != nil {
			b.Fatal(err)
		}
		attach = append(attach, time.Since(start))
		want.Containers = want.Containers[:n]
		dnat(n)
		pass()
		g.r.Invalidate()
		full = append(full, pass())
		bare = append(bare, bareAttach(b, tp.Hosts[0].NS, ns[n]))
	}
	p := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(attach, .5), "attach-p50-ms")
	b.ReportMetric(p(attach, .99), "attach-p99-ms")
	b.ReportMetric(p(read, .5), "attach-read-p50-ms")
	b.ReportMetric(p(apply, .5), "attach-apply-p50-ms")
	b.ReportMetric(p(full, .5), "fullpass-p50-ms")
	b.ReportMetric(p(bare, .5), "bare-p50-ms")
	b.ReportMetric(p(attach, .5)/p(bare, .5), "attach/bare-p50")
	g.cleanup(b)
}

// bareAttach is the kernel work of an attach with nothing else: a named
// netns, a veth with its peer in it, an address, links up; then removed.
func bareAttach(b *testing.B, host, name string) time.Duration {
	h, err := netnsutil.Open(host)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		b.Fatal(err)
	}
	defer nh.Close()
	start := time.Now()
	if err := netnsutil.Create(name); err != nil {
		b.Fatal(err)
	}
	c, err := netnsutil.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vbare0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(c))}
	err = nh.LinkAdd(v)
	if err == nil {
		err = nh.LinkSetUp(v)
	}
	ch, herr := netlink.NewHandleAt(c)
	if err == nil {
		err = herr
	}
	if err == nil {
		var l netlink.Link
		if l, err = ch.LinkByName("eth0"); err == nil {
			a, _ := netlink.ParseAddr("10.41.0.2/16")
			if err = ch.AddrAdd(l, a); err == nil {
				err = ch.LinkSetUp(l)
			}
		}
	}
	took := time.Since(start)
	if herr == nil {
		ch.Close()
	}
	c.Close()
	nh.LinkDel(v)
	netnsutil.Delete(name)
	if err != nil {
		b.Fatal(err)
	}
	return took
}
