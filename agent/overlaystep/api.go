package overlaystep

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
)

// The cluster half of the read API: peers, remote endpoints, the overlay
// networks' VXLAN side and the gossip counters. Each reads a gossip view
// it is given (the last pass's) and what the last pass left in the step;
// none reads gossip or changes anything.

// Peers lists the cluster members of v (empty without a cluster).
func Peers(v *pass.GossipView) []api.Peer {
	out := []api.Peer{}
	if v == nil {
		return out
	}
	for _, m := range v.Members {
		p := api.Peer{Name: m.Name, State: m.State.String(), Records: m.Records, LastSeen: m.LastSeen, ReapAt: m.ReapAt, Self: m.Self,
			KeyFingerprints: m.KeyFingerprints}
		if m.Addr.IsValid() {
			p.Address = m.Addr.Addr().String()
		}
		if m.ClockKnown {
			ms := m.ClockOffset.Milliseconds()
			p.ClockOffsetMS = &ms
		}
		out = append(out, p)
	}
	return out
}

// GossipStatus returns the gossip counters of v (nil without a cluster).
func GossipStatus(v *pass.GossipView) *api.GossipStatus {
	if v == nil {
		return nil
	}
	st := v.Stats
	var keys []string
	for _, m := range v.Members {
		if m.Self {
			keys = m.KeyFingerprints
		}
	}
	return &api.GossipStatus{
		KeyFingerprints: keys,
		Ready:           v.Ready, Members: st.Members,
		Rejected: st.Rejected, RejectedVTEP: st.RejectedVTEP, RejectedUnknownOwner: st.RejectedUnknownOwner,
		RejectedMalformed: st.RejectedMalformed, InvalidRecords: st.InvalidRecords,
		Conflicts: st.Conflicts, LocalRecords: st.LocalRecords, RemoteRecords: st.RemoteRecords,
	}
}

// Status describes each overlay network's VXLAN side as the last pass
// left it.
func (s *Step) Status(cfg *config.Config) []api.OverlayStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.OverlayStatus
	for _, n := range Networks(cfg) {
		o := api.OverlayStatus{Network: n.Name, VXLAN: Device(cfg, n).LinkName(), VNI: n.VNI, Port: n.VXLANPort, MTU: s.mtu[n.Name]}
		if ns := s.status[n.Name]; ns != nil {
			o.RemoteEndpoints, o.Expected, o.Programmed, o.Synced, o.Error = ns.Remote, ns.Expected, ns.Programmed, ns.Synced, ns.Err
		}
		out = append(out, o)
	}
	return out
}

// DecorateNetworks adds the VXLAN device, port and MTU of overlay networks.
func (s *Step) DecorateNetworks(cfg *config.Config, nets []api.Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range nets {
		n := cfg.NetworkByName(nets[i].Name)
		if n == nil || n.Driver != config.DriverOverlay {
			continue
		}
		nets[i].VXLAN, nets[i].VXLANPort = Device(cfg, n).LinkName(), n.VXLANPort
		if m := s.mtu[n.Name]; m != 0 {
			nets[i].MTU = m
		}
	}
}

// LastRemote are the remote endpoints last resolved for programming, by a
// pass or by the fast path after it.
func (s *Step) LastRemote() []pass.RemoteEndpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lastRemote)
}

// RemoteEndpoints lists the other hosts' endpoints in v (on network, or
// all), each with a note when it is not programmed here.
func (s *Step) RemoteEndpoints(v *pass.GossipView, network string) []api.Endpoint {
	out := []api.Endpoint{}
	if v == nil {
		return out
	}
	snap := v.Snapshot
	s.mu.Lock()
	notes := s.notes
	s.mu.Unlock()
	g := endpointGroups{at: map[api.Endpoint]int{}}
	for _, list := range [][]gossip.Endpoint{snap.Endpoints, snap.Shadowed} {
		for _, e := range list {
			if e.Host == snap.Self || (network != "" && e.Network != network) {
				continue
			}
			g.add(api.Endpoint{
				Container: e.Container, Network: e.Network, Host: e.Host,
				MAC: e.MAC.String(), VTEP: e.VTEP.String(), Note: notes[epKey{Host: e.Host, Network: e.Network, IP: e.IP}],
			}, e.IP)
		}
	}
	out = append(out, g.out...)
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

// endpointGroups shows a dual-stack container, which publishes one record
// per address (same MAC), as one endpoint with IP and IP6; records with a
// note stay apart.
type endpointGroups struct {
	out []api.Endpoint
	at  map[api.Endpoint]int // the endpoint without addresses -> index in out
}

// add adds ep with address ip.
func (g *endpointGroups) add(ep api.Endpoint, ip netip.Addr) {
	key := ep
	i, ok := g.at[key]
	if !ok || ep.Note != "" || (ip.Is4() && g.out[i].IP != "") || (ip.Is6() && g.out[i].IP6 != "") {
		i = len(g.out)
		g.out = append(g.out, ep)
		if ep.Note == "" {
			g.at[key] = i
		}
	}
	if ip.Is4() {
		g.out[i].IP = ip.String()
	} else {
		g.out[i].IP6 = ip.String()
	}
}
