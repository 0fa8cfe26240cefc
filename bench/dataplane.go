package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/lab"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The data plane area: the same measures along the vxmesh overlay between
// two lab containers on different hosts, the bare underlay between those
// hosts, and a hand-built kernel VXLAN path between the same hosts; and
// the bridge network between two containers of one host against a bare
// veth pair.

// named is a path with the name a row gives it.
type named struct {
	name string
	path Path
}

// metric is one figure a measurement yields.
type metric struct{ name, unit string }

// dataplanePaths are the paths the area compares.
type dataplanePaths struct {
	overlay, underlay, kvx named
	bridge, veth           named
	overlayMTU, ulMTU      int
}

func runDataplane(ctx context.Context, r *Runner) error {
	rec, err := r.lab(ctx, 3)
	if err != nil {
		return err
	}
	made := len(r.nss)
	ps, cleanup, err := r.dataplanePaths(ctx, rec)
	defer func() {
		cleanup()
		// The baselines' namespaces (their devices in the lab's hosts go
		// with the lab).
		for _, ns := range slices.Clone(r.nss[made:]) {
			if err := r.dropNetns(ns); err != nil {
				r.logf("%v", err)
			}
		}
	}()
	if err != nil {
		return err
	}
	reqs := 5000
	if r.opts.Quick {
		reqs = 200
	}
	var errs []error
	for _, streams := range []int{1, 4} {
		m := []metric{{fmt.Sprintf("TCP %d stream%s", streams, plural(streams)), "Mbit/s"}}
		errs = append(errs, r.compare(ctx, "dataplane", m, ps.overlay, []named{ps.underlay, ps.kvx}, func(p Path) ([]float64, error) {
			bps, err := Throughput(ctx, p, streams, r.opts.Stream)
			return []float64{bps / 1e6}, err
		}))
	}
	lat := []metric{{"TCP request/response p50", "µs"}, {"TCP request/response p99", "µs"}}
	rr := func(p Path) ([]float64, error) {
		ds, err := RequestLatency(ctx, p, reqs)
		s := Summarize(ds)
		return []float64{Us(s.P50), Us(s.P99)}, err
	}
	errs = append(errs, r.compare(ctx, "dataplane", lat, ps.overlay, []named{ps.underlay, ps.kvx}, rr))
	tput := func(p Path) ([]float64, error) {
		bps, err := Throughput(ctx, p, 1, r.opts.Stream)
		return []float64{bps / 1e6}, err
	}
	errs = append(errs, r.compare(ctx, "dataplane", []metric{{"TCP 1 stream", "Mbit/s"}}, ps.bridge, []named{ps.veth}, tput))
	errs = append(errs, r.compare(ctx, "dataplane", lat, ps.bridge, []named{ps.veth}, rr))
	errs = append(errs, r.mtuRows(ps))
	return errors.Join(errs...)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// compare measures subject and each baseline with fn, in rounds that go
// through the baselines and then the subject (so a change in the
// machine's load hits every path alike), and adds a row per metric and
// baseline with the median over the rounds.
func (r *Runner) compare(ctx context.Context, area string, ms []metric, subject named, bases []named, fn func(Path) ([]float64, error)) error {
	rounds := r.rounds()
	vals := map[string][][]float64{} // path -> metric -> rounds
	load, err := loaded(func() error {
		for range rounds {
			for _, p := range append(bases, subject) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				v, err := fn(p.path)
				if err != nil {
					return fmt.Errorf("%s over %s: %w", ms[0].name, p.name, err)
				}
				if vals[p.name] == nil {
					vals[p.name] = make([][]float64, len(ms))
				}
				for i := range ms {
					vals[p.name][i] = append(vals[p.name][i], v[i])
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	note := ""
	if rounds > 1 {
		note = fmt.Sprintf("median of %d rounds", rounds)
	}
	for i, m := range ms {
		for _, b := range bases {
			r.add(area, Row{
				Name: m.name + ": " + subject.name, Value: Median(vals[subject.name][i]), Unit: m.unit,
				Baseline: b.name, BaselineValue: Median(vals[b.name][i]), Load: load, Note: note,
			})
		}
	}
	return nil
}

// rounds is how many times compare measures each path.
func (r *Runner) rounds() int {
	if r.opts.Quick {
		return 1
	}
	return 3
}

// dataplanePaths finds the lab's containers and builds the baselines.
// cleanup removes the container it attached.
func (r *Runner) dataplanePaths(ctx context.Context, rec *lab.Record) (dataplanePaths, func(), error) {
	var ps dataplanePaths
	nop := func() {}
	if len(rec.Hosts) < 3 {
		return ps, nop, fmt.Errorf("the data plane needs a lab of 3 hosts, not %d", len(rec.Hosts))
	}
	web2, db, web1 := rec.Container("web2"), rec.Container("db"), rec.Container("web1")
	if web2 == nil || db == nil || web1 == nil {
		return ps, nop, errors.New("the lab lacks web1, web2 or db")
	}
	h2, h3 := rec.Host(web2.Host), rec.Host(db.Host)
	dbIP, err := lab.InterfaceAddr(db.Netns, "eth0")
	if err != nil {
		return ps, nop, err
	}
	ps.overlay = named{fmt.Sprintf("overlay %s→%s (%s→%s)", web2.Name, db.Name, h2.Name, h3.Name), Path{web2.Netns, db.Netns, dbIP}}
	ps.underlay = named{fmt.Sprintf("bare underlay %s→%s", h2.Name, h3.Name), Path{h2.Netns, h3.Netns, h3.Address}}
	kvx, err := r.buildKernelVXLAN(h2.Netns, h3.Netns, h2.Address, h3.Address)
	if err != nil {
		return ps, nop, err
	}
	ps.kvx = named{fmt.Sprintf("kernel VXLAN, static entries %s→%s", h2.Name, h3.Name), kvx}
	ps.overlayMTU, ps.ulMTU = linkMTU(web2.Netns, "eth0"), linkMTU(h2.Netns, topo.HostLink)
	veth, err := r.buildVethPair()
	if err != nil {
		return ps, nop, err
	}
	ps.veth = named{"bare veth pair", veth}
	// A second container on web1's bridge network, on web1's host.
	cl := client(rec, web1.Host)
	name := "web90"
	netns := lab.ContainerNetnsPrefixOf(rec.Name) + name
	if _, err := cl.Run(ctx, api.ContainerSpec{Name: name, Netns: netns, Networks: []string{lab.BridgeNet}}); err != nil {
		return ps, nop, fmt.Errorf("attach %s on %s: %w", name, web1.Host, err)
	}
	cleanup := func() {
		if err := cl.Remove(context.WithoutCancel(ctx), name); err != nil {
			r.logf("remove %s: %v", name, err)
		}
	}
	webIP, err := lab.InterfaceAddr(web1.Netns, "eth0")
	if err != nil {
		return ps, cleanup, err
	}
	if _, err := waitAddr(ctx, netns, "eth0", 15*time.Second); err != nil {
		return ps, cleanup, err
	}
	ps.bridge = named{fmt.Sprintf("bridge network %s→%s (%s)", name, web1.Name, web1.Host), Path{netns, web1.Netns, webIP}}
	return ps, cleanup, nil
}

// waitAddr polls until ifname in netns has an IPv4 address.
func waitAddr(ctx context.Context, netns, ifname string, timeout time.Duration) (netip.Addr, error) {
	deadline := time.Now().Add(timeout)
	for {
		a, err := lab.InterfaceAddr(netns, ifname)
		if err == nil {
			return a, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return a, fmt.Errorf("wait for an address on %s in %s: %w", ifname, netns, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// linkMTU is the MTU of a link, 0 when it cannot be read.
func linkMTU(netns, link string) int {
	h, err := topo.Handle(netns)
	if err != nil {
		return 0
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return 0
	}
	return l.Attrs().MTU
}

// mtuRows probes each overlay path with DF datagrams at the overlay's MTU
// (the underlay's less VXLAN's 50 bytes, whatever the containers were
// given: a container MTU set too high shows as "lost") and the underlay
// at its own.
func (r *Runner) mtuRows(ps dataplanePaths) error {
	want := ps.ulMTU - 50
	var errs []error
	res := map[string]MTUResult{}
	load, _ := loaded(func() error {
		for _, p := range []struct {
			n   named
			mtu int
		}{{ps.underlay, ps.ulMTU}, {ps.kvx, want}, {ps.overlay, want}} {
			m, err := MTUProbe(p.n.path, p.mtu)
			if err != nil {
				errs = append(errs, fmt.Errorf("UDP MTU probe over %s: %w", p.n.name, err))
				continue
			}
			res[p.n.name] = m
		}
		return nil
	})
	for _, p := range []named{ps.overlay, ps.kvx} {
		m, ok := res[p.name]
		if !ok {
			continue
		}
		base := res[ps.underlay.name]
		row := Row{
			Name:  fmt.Sprintf("UDP with DF, largest datagram that passes: %s (container MTU %d)", p.name, ps.overlayMTU),
			Value: passedSize(m), Unit: "B", Baseline: ps.underlay.name, BaselineValue: passedSize(base), Load: load,
			Note: fmt.Sprintf("%d B: %s; %d B: %s", m.MTU, okWord(m.MaxOK), m.MTU+1, m.Over),
		}
		if p.name != ps.overlay.name {
			row.Name = fmt.Sprintf("UDP with DF, largest datagram that passes: %s", p.name)
		}
		r.add("dataplane", row)
		if !m.Passed() {
			errs = append(errs, fmt.Errorf("MTU mistake on %s: %d-byte datagram %s, %d bytes %s", p.name, m.MTU, okWord(m.MaxOK), m.MTU+1, m.Over))
		}
	}
	return errors.Join(errs...)
}

func passedSize(m MTUResult) float64 {
	if m.MaxOK {
		return float64(m.MTU)
	}
	return 0
}

func okWord(ok bool) string {
	if ok {
		return "passed"
	}
	return "LOST"
}
