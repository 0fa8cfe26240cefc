package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The endpoint injector: a gossip member of its own on the lab's underlay
// that publishes N overlay endpoints, so the lab's agents hold (and
// program) a cluster of N endpoints without N containers. It speaks the
// agents' own protocol (package gossip), so what the agents do with the
// records is exactly what they do with a real host's.

// injector is a running fake member.
type injector struct {
	c      *gossip.Cluster
	ns     string
	nsh    func() error // closes the namespace handle
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// injectAddr is the injector's underlay address: far above any lab host.
var injectAddr = topo.NthAddr(topo.UnderlayPrefix.Addr(), 250)

// inject joins a fake member "inj" to rec's cluster and publishes n
// endpoints on the lab's overlay network, in 10.200.128.0/17 (lab
// containers take their addresses from the start of 10.200.0.0/16).
func (r *Runner) inject(ctx context.Context, rec *lab.Record, n int) (*injector, error) {
	if n > 32000 {
		return nil, fmt.Errorf("inject %d endpoints: at most 32000 fit 10.200.128.0/17", n)
	}
	ns, err := r.netns("inj")
	if err != nil {
		return nil, err
	}
	inj := &injector{ns: ns}
	if err := plugIntoUnderlay(rec.Underlay, ns, injectAddr); err != nil {
		return nil, errors.Join(err, r.dropNetns(ns))
	}
	h, err := netnsutil.Open(ns)
	if err != nil {
		return nil, errors.Join(err, r.dropNetns(ns))
	}
	inj.nsh = h.Close
	join := netip.AddrPortFrom(rec.Hosts[0].Address, uint16(lab.BindPort))
	c, err := gossip.New(gossip.Config{Name: "inj", Addr: injectAddr, Port: lab.BindPort, Join: []netip.AddrPort{join}, Netns: h},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start the endpoint injector: %w", err), h.Close(), r.dropNetns(ns))
	}
	inj.c = c
	cctx, cancel := context.WithCancel(ctx)
	inj.cancel = cancel
	inj.wg.Add(1)
	go func() { defer inj.wg.Done(); c.Run(cctx) }()
	if err := c.SetLocal(injectedEndpoints(n)); err != nil {
		return inj, fmt.Errorf("publish %d endpoints: %w", n, err)
	}
	return inj, nil
}

// stop leaves the cluster and removes the injector's namespace.
func (inj *injector) stop(r *Runner) error {
	var errs []error
	if inj.c != nil {
		inj.cancel()
		inj.wg.Wait()
		errs = append(errs, inj.c.Shutdown())
	}
	if inj.nsh != nil {
		errs = append(errs, inj.nsh())
	}
	return errors.Join(append(errs, r.dropNetns(inj.ns))...)
}

// injectedEndpoints are n endpoints "inj-<i>" on the lab's overlay.
func injectedEndpoints(n int) []gossip.Record {
	out := make([]gossip.Record, 0, n)
	for i := range n {
		name := fmt.Sprintf("inj-%d", i)
		out = append(out, gossip.Endpoint{
			Network: lab.OverlayNet, Container: name,
			IP:    netip.AddrFrom4([4]byte{10, 200, 128 + byte(i>>8), byte(i)}),
			MAC:   net.HardwareAddr{0x02, 0x1e, 0, 0, byte(i >> 8), byte(i)},
			Names: []string{name},
		})
	}
	return out
}

// plugIntoUnderlay connects namespace ns to the underlay bridge in
// underlay with a veth and gives it addr.
func plugIntoUnderlay(underlay, ns string, addr netip.Addr) error {
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer nsh.Close()
	ul, err := topo.Handle(underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	br, err := ul.LinkByName(topo.UnderlayBridge)
	if err != nil {
		return fmt.Errorf("find %q in %q: %w", topo.UnderlayBridge, underlay, err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "pinj", MasterIndex: br.Attrs().Index},
		PeerName:  topo.HostLink, PeerNamespace: netlink.NsFd(nsh),
	}
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth into %q: %w", underlay, err)
	}
	if err := ul.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %q up in %q: %w", veth.Name, underlay, err)
	}
	h, err := topo.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(topo.HostLink)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(topo.UnderlayPrefix.Bits(), 32)}}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s in %q: %w", addr, ns, err)
	}
	return h.LinkSetUp(l)
}

// waitRemote polls every agent of rec until each reports at least n
// remote endpoints and returns how long that took.
func waitRemote(ctx context.Context, rec *lab.Record, n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	cls := clients(rec)
	for {
		var behind []string
		for _, h := range rec.Hosts {
			st, err := cls[h.Name].Status(ctx)
			switch {
			case err != nil:
				behind = append(behind, fmt.Sprintf("%s: %v", h.Name, err))
			case st.Endpoints.Remote < n:
				behind = append(behind, fmt.Sprintf("%s: %d remote", h.Name, st.Endpoints.Remote))
			}
		}
		if len(behind) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout || ctx.Err() != nil {
			return 0, fmt.Errorf("agents hold fewer than %d remote endpoints after %s: %v", n, timeout, behind)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// waitPass polls until every agent of rec has finished a reconcile pass
// that started after since, so a sample after it sees the steady state
// rather than the programming.
func waitPass(ctx context.Context, rec *lab.Record, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cls := clients(rec)
	for {
		var behind []string
		for _, h := range rec.Hosts {
			st, err := cls[h.Name].Status(ctx)
			if err != nil || !st.LastReconcile.After(since) {
				behind = append(behind, h.Name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no reconcile pass since %s on %v within %s", since.Format(time.TimeOnly), behind, timeout)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// clients is one API client per host of rec, for polling loops: a client
// per poll left its keep-alive connection open in the agent (hundreds of
// idle goroutines in the cost area's goroutine count).
func clients(rec *lab.Record) map[string]*api.Client {
	out := make(map[string]*api.Client, len(rec.Hosts))
	for _, h := range rec.Hosts {
		out[h.Name] = client(rec, h.Name)
	}
	return out
}
