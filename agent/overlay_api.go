package agent

import (
	"net/http"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
)

// The cluster half of the read API: peers, remote endpoints, the overlay
// networks' VXLAN side and the gossip counters.

// peers lists the cluster members (empty without a cluster).
func (a *Agent) peers() []api.Peer {
	out := []api.Peer{}
	if a.gossip == nil || a.gossip.c() == nil {
		return out
	}
	for _, m := range a.gossip.c().Members() {
		p := api.Peer{Name: m.Name, State: m.State.String(), Records: m.Records, LastSeen: m.LastSeen, ReapAt: m.ReapAt, Self: m.Self}
		if m.Addr.IsValid() {
			p.Address = m.Addr.Addr().String()
		}
		out = append(out, p)
	}
	return out
}

func (a *Agent) hPeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.peers())
}

// gossipStatus returns the gossip counters (nil without a cluster).
func (a *Agent) gossipStatus() *api.GossipStatus {
	if a.gossip == nil {
		return nil
	}
	v := a.gossip.view()
	st := v.Stats
	return &api.GossipStatus{
		Ready: v.Ready, Members: st.Members,
		Rejected: st.Rejected, RejectedVTEP: st.RejectedVTEP, RejectedUnknownOwner: st.RejectedUnknownOwner,
		RejectedMalformed: st.RejectedMalformed, InvalidRecords: st.InvalidRecords,
		Conflicts: st.Conflicts, LocalRecords: st.LocalRecords, RemoteRecords: st.RemoteRecords,
	}
}

// overlayStatus describes each overlay network's VXLAN side as the last
// pass left it.
func (a *Agent) overlayStatus(cfg *config.Config) []api.OverlayStatus {
	s := a.ovl
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.OverlayStatus
	for _, n := range overlayNets(cfg) {
		o := api.OverlayStatus{Network: n.Name, VXLAN: device(cfg, n).LinkName(), VNI: n.VNI, Port: n.VXLANPort, MTU: s.mtu[n.Name]}
		if ns := s.status[n.Name]; ns != nil {
			o.RemoteEndpoints, o.Expected, o.Programmed, o.Synced, o.Error = ns.Remote, ns.Expected, ns.Programmed, ns.Synced, ns.Err
		}
		out = append(out, o)
	}
	return out
}

// overlayConflicts are the conflicts the overlay step found in its last
// pass (addresses claimed twice, overlapping ip_ranges).
func (a *Agent) overlayConflicts() []string {
	s := a.ovl
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conflicts)
}

// decorateNetworks adds the VXLAN device, port and MTU of overlay networks.
func (a *Agent) decorateNetworks(cfg *config.Config, nets []api.Network) {
	s := a.ovl
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range nets {
		n := cfg.NetworkByName(nets[i].Name)
		if n == nil || n.Driver != config.DriverOverlay {
			continue
		}
		nets[i].VXLAN, nets[i].VXLANPort = device(cfg, n).LinkName(), n.VXLANPort
		if m := s.mtu[n.Name]; m != 0 {
			nets[i].MTU = m
		}
	}
}

// remoteEndpoints lists the other hosts' endpoints gossip knows (on
// network, or all), each with a note when it is not programmed here.
func (a *Agent) remoteEndpoints(network string) []api.Endpoint {
	out := []api.Endpoint{}
	if a.gossip == nil || a.gossip.c() == nil {
		return out
	}
	snap := a.gossip.c().Snapshot()
	a.ovl.mu.Lock()
	notes := a.ovl.notes
	a.ovl.mu.Unlock()
	for _, list := range [][]gossip.Endpoint{snap.Endpoints, snap.Shadowed} {
		for _, e := range list {
			if e.Host == snap.Self || (network != "" && e.Network != network) {
				continue
			}
			out = append(out, api.Endpoint{
				Container: e.Container, Network: e.Network, Host: e.Host, IP: e.IP.String(),
				MAC: e.MAC.String(), VTEP: e.VTEP.String(), Note: notes[epKey{e.Host, e.Network, e.IP}],
			})
		}
	}
	slices.SortFunc(out, func(x, y api.Endpoint) int {
		if c := strings.Compare(x.Network, y.Network); c != 0 {
			return c
		}
		if c := strings.Compare(x.Host, y.Host); c != 0 {
			return c
		}
		return strings.Compare(x.Container, y.Container)
	})
	return out
}
