package agent

import (
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
)

// addrString is p's address, "" when p is invalid (no address of that
// family).
func addrString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.Addr().String()
}

// prefixString is p, "" when invalid (an IPv6-only network's subnet).
func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// dualStack adds n's IPv6 side to an.
func dualStack(an *api.Network, n *config.Network) {
	an.Subnet6 = prefixString(n.Subnet6)
	an.IPRange6 = prefixString(n.IPRange6)
	if n.Gateway6.IsValid() {
		an.Gateway6 = n.Gateway6.String()
	}
}
