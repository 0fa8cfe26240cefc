package dnsstep

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/agent/pass"
)

// Gateway resolvers: Docker's embedded DNS answers its own engine's
// containers and forwards every other name to the container's --dns
// servers. With `--dns GATEWAY`, those queries reach the listener this
// step opens on the gateway address of every network that has a
// container attached by Docker here, in the agent's namespace (where the
// network's bridge holds the gateway). It answers with the view of a
// container on that one network — the cluster-wide names of the network —
// and forwards the rest to the host's resolvers. Only the network's subnet
// (and loopback) may ask. A Docker container on several networks here
// widens the view of each of their gateways to all of them: Docker's DNS
// asks its --dns servers in order and stops at the first NXDOMAIN, so the
// first gateway must know the names of the container's other networks
// too (as Docker's own DNS answers a container the names of every network
// it is on). The cost: other containers of that gateway's network may
// resolve those names too (not reach them: isolation stays).

// gatewayKey prefixes the server's keys of gateway listeners; a netns
// name never holds ':'.
const gatewayKey = "gateway:"

// gateway is one wanted gateway listener.
type gateway struct {
	network string
	addr    netip.Addr
	subnet  netip.Prefix
	names   []string // the networks whose names it answers
}

// gatewaysWanted lists the networks with a local Docker-attached
// container, by listener key.
func gatewaysWanted(d *pass.Desired) map[string]gateway {
	out := map[string]gateway{}
	for _, v := range d.Containers {
		if v.Source != api.RuntimeDocker || v.Err != nil {
			continue
		}
		for _, ifc := range v.Interfaces {
			n := d.Config.NetworkByName(ifc.Network)
			if n == nil {
				continue
			}
			gw := n.Gateway
			if !gw.IsValid() && n.Subnet.IsValid() {
				gw = n.Subnet.Masked().Addr().Next()
			}
			if !gw.IsValid() {
				continue
			}
			g, ok := out[gatewayKey+n.Name]
			if !ok {
				g = gateway{network: n.Name, addr: gw, subnet: n.Subnet.Masked()}
			}
			for _, other := range v.Interfaces {
				if !slices.Contains(g.names, other.Network) {
					g.names = append(g.names, other.Network)
				}
			}
			out[gatewayKey+n.Name] = g
		}
	}
	return out
}

// isGatewayKey tells gateway listeners from namespaces.
func isGatewayKey(key string) bool { return strings.HasPrefix(key, gatewayKey) }

// syncGateways opens, updates and closes the gateway listeners; want nil
// closes them all.
func (s *Step) syncGateways(want map[string]gateway, eps []dns.Endpoint, gone []string, subnets []netip.Prefix) error {
	var errs []error
	for _, key := range s.srv.Attached() {
		if _, ok := want[key]; ok || !isGatewayKey(key) {
			continue
		}
		if err := s.srv.Detach(key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("detached dns", "listener", key, "reason", "no docker container left on the network")
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	attached := map[string]bool{}
	for _, key := range s.srv.Attached() {
		attached[key] = true
	}
	if s.gwMemos == nil {
		s.gwMemos = map[string]gwMemo{}
	}
	for key := range s.gwMemos {
		if !attached[key] {
			delete(s.gwMemos, key)
		}
	}
	for _, key := range keys {
		g := want[key]
		// The same input as the listener's view: nothing to compute. The
		// shared generation moves with eps and gone (noteShared, called
		// by attach before this).
		m := gwMemo{shared: s.sharedGen, names: g.names, subnets: subnets, addr: g.addr, allow: g.subnet}
		if old, ok := s.gwMemos[key]; ok && old.equal(m) {
			continue
		}
		delete(s.gwMemos, key)
		view := dns.ComputeView(dns.ViewInput{Networks: g.names, Endpoints: eps, Gone: gone, Subnets: subnets})
		if err := s.srv.AttachAddr(key, g.addr, g.subnet, view); err != nil {
			errs = append(errs, fmt.Errorf("network %q: %w", g.network, err))
			continue
		}
		s.gwMemos[key] = m
	}
	return errors.Join(errs...)
}

// gatewaysFrom syncs the gateway listeners with d. A port 53 taken on a
// gateway must not stop the containers' own DNS or the pass: it is
// logged and retried by the next pass.
func (s *Step) gatewaysFrom(d *pass.Desired, eps []dns.Endpoint, gone []string) {
	subnets := make([]netip.Prefix, 0, len(d.Config.Networks))
	for _, n := range d.Config.Networks {
		subnets = append(subnets, n.Subnet.Masked())
	}
	if err := s.syncGateways(gatewaysWanted(d), eps, gone, subnets); err != nil {
		s.log.Warn("dns on the gateway for docker not served", "err", err)
	}
}
