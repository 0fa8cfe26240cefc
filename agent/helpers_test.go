package agent

import (
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
)

// buildDesired is the desired value of the inputs without cluster pools,
// as a pass builds it.
func buildDesired(cfg *config.Config, runtime []config.Container, st *pass.State, hostDNS []netip.Addr) *pass.Desired {
	return pass.Build(&pass.Snapshot{Config: cfg, Runtime: runtime, State: st, HostDNS: hostDNS}, nil)
}
