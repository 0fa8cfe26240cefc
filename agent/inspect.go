package agent

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/explain"
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
	r := explain.Readers{Kernel: a.br.Kernel, IPT: a.br.IPT, EtcDir: a.etcDir}
	if a.ovl.h != nil {
		r.Netlink, r.Netns = a.ovl.h.Handle, a.ovl.ns
	}
	return explain.Explain(explain.Read(ctx, r, &c), c)
}

// inspectCauses is what the agent knows, to explain the kernel with: the
// last pass's Desired (the current inputs' before the first pass), the
// published ports, the peers, and the remote endpoints the agent
// programs: those of the current gossip table, then the last pass's
// Desired.Remote (gossip changes are programmed between passes, so either
// may be the one in the kernel for a moment).
func (a *Agent) inspectCauses() explain.Causes {
	s := a.snapshot()
	d := s.d
	if s.last != nil {
		d = s.last
	}
	var remote []RemoteEndpoint
	if a.gossip != nil {
		if gv := a.gossip.view(); gv.Ready {
			nets := map[string]bool{}
			for _, n := range overlayNets(d.Config) {
				nets[n.Name] = true
			}
			remote = resolveRemote(d.Config.Host.Name, nets, gv, localEndpoints(d, a.stateCopy().Bridge.MACs)).Remote
		}
	}
	c := causesOf(d, append(remote, d.Remote...))
	c.Gossip = a.remoteEndpoints("")
	for _, p := range a.peers() {
		if ip, err := netip.ParseAddr(p.Address); err == nil && !p.Self {
			c.Peers[ip] = p.Name
		}
	}
	for ctr, pv := range s.ports {
		c.Ports[ctr] = pv.mappings
	}
	return c
}

// causesOf fills the parts of explain.Causes a Desired and the remote
// endpoints hold.
func causesOf(d *Desired, remote []RemoteEndpoint) explain.Causes {
	cfg := d.Config
	c := explain.Causes{Host: cfg.Host.Name, Address: cfg.Host.Address, Peers: map[netip.Addr]string{}, Ports: map[string][]portmap.Mapping{}}
	for i := range cfg.Networks {
		n := &cfg.Networks[i]
		en := explain.Network{Name: n.Name, Driver: n.Driver, Bridge: bridgeNetwork(n).Device, Gateway: n.Gateway, Internal: n.Internal}
		if n.Driver == config.DriverOverlay {
			en.VXLAN = device(cfg, n).LinkName()
		}
		c.Networks = append(c.Networks, en)
	}
	for _, v := range d.Containers {
		ec := explain.Container{Name: v.Spec.Name, Netns: v.Netns, Joins: v.Joins, Failed: v.Err != nil}
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
