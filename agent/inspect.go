package agent

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/explain"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
)

// `vxmesh inspect`: the kernel state this agent made, read back from the
// kernel and tied to what caused it. The readers live next to what they
// read (bridge/, overlay/), the explaining in agent/explain; the agent
// only says what it knows (inspectCauses) and hands over its handles.

func (a *Agent) hInspect(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.inspect(r.Context()))
}

// inspect reads the kernel and explains it.
func (a *Agent) inspect(ctx context.Context) *api.Inspect {
	c := a.inspectCauses()
	r := explain.Readers{Kernel: a.br.Kernel, IPT: a.br.IPT, IPT6: a.br.IPT6, EtcDir: a.etcDir}
	if h := a.ovl.Handle(); h != nil {
		r.Netlink, r.Netns = h.Handle, a.ovl.Netns()
	}
	return explain.Explain(explain.Read(ctx, r, &c), c)
}

// inspectCauses is what the agent knows, to explain the kernel with: the
// last pass's pass.Desired and gossip view, the published ports, the peers,
// and the remote endpoints the agent programs: those the overlay step
// resolved last (a pass, or the fast path after it), then the last pass's
// pass.Desired.Remote (gossip changes are programmed between passes, so either
// may be the one in the kernel for a moment). Nothing is built here.
func (a *Agent) inspectCauses() explain.Causes {
	s := a.snapshot()
	d := s.d
	c := causesOf(d, append(a.ovl.LastRemote(), d.Remote...))
	c.Gossip = a.ovl.RemoteEndpoints(s.gossip(), "")
	for _, p := range overlaystep.Peers(s.gossip()) {
		if ip, err := netip.ParseAddr(p.Address); err == nil && !p.Self {
			c.Peers[ip] = p.Name
		}
	}
	for ctr, pv := range s.ports {
		c.Ports[ctr] = pv.Mappings
	}
	return c
}

// causesOf fills the parts of explain.Causes a pass.Desired and the remote
// endpoints hold.
func causesOf(d *pass.Desired, remote []pass.RemoteEndpoint) explain.Causes {
	cfg := d.Config
	c := explain.Causes{Host: cfg.Host.Name, Address: cfg.Host.Address, Peers: map[netip.Addr]string{}, Ports: map[string][]portmap.Mapping{}}
	for i := range cfg.Networks {
		n := &cfg.Networks[i]
		en := explain.Network{Name: n.Name, Driver: n.Driver, Bridge: pass.BridgeNetwork(n).Device, Gateway: n.Gateway, Internal: n.Internal}
		if n.Driver == config.DriverOverlay {
			en.VXLAN = overlaystep.Device(cfg, n).LinkName()
		}
		c.Networks = append(c.Networks, en)
	}
	for _, v := range d.Containers {
		ec := explain.Container{Name: v.Spec.Name, Netns: v.Netns, Joins: v.Joins, Failed: v.Err != nil}
		if len(v.Attached) > 0 {
			ec.Runtime, ec.RuntimeID, ec.HostPlaced = v.Attached[0].Runtime, v.Attached[0].ID, pass.HostPlaced(v.Attached[0])
		}
		for _, ifc := range v.Interfaces {
			ec.Networks = append(ec.Networks, ifc.Network)
		}
		c.Containers = append(c.Containers, ec)
	}
	for _, r := range remote {
		c.Remote = append(c.Remote, explain.Remote{Network: r.Network, Container: r.Container, Host: r.Host, IP: r.IP, MAC: r.MAC, VTEP: r.VTEP})
	}
	return c
}
