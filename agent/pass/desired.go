package pass

import (
	"errors"
	"net"
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/overlay"
)

// OverlayMTU is the MTU of an overlay network's bridge until the overlay
// step derives it from the underlay: 1500 minus the VXLAN overhead.
const OverlayMTU = config.DefaultBridgeMTU - config.VXLANOverheadIPv4

// Desired is the desired state of one reconcile pass: a plain value built
// from the pass's Snapshot. Every step reads the same value; in Prepare,
// before anything is applied, steps may add to it (the ports step fills
// Bridge.Ports, the overlay step Remote and the overlay bridges' MAC and
// MTU).
type Desired struct {
	// Snapshot are the inputs the value was built from (Config among them).
	*Snapshot
	// Containers are all containers, config ones first, then run-time ones,
	// resolved (addresses, namespace).
	Containers []*ContainerView
	// Bridge is what the bridge reconciler makes real.
	Bridge bridge.State
	// Allocations are the dynamic addresses after this build (to persist).
	Allocations map[string]map[string]netip.Addr
	// Conflicts are problems between inputs, one sentence each.
	Conflicts []string
	// Remote are the endpoints other hosts announced on this host's overlay
	// networks (from Snapshot.Gossip), filled by the overlay step's
	// Prepare. Consumers (FDB/neighbour programming, DNS views, status)
	// read them after every Prepare has run.
	Remote []RemoteEndpoint
}

// RemoteEndpoint is a container interface on another host, as gossip
// announced it (overlay.ResolveRemote decides which ones are programmed).
type RemoteEndpoint = overlay.RemoteEndpoint

// ContainerView is one container as the agent resolved it.
type ContainerView struct {
	// Spec is the container with its defaults filled in.
	Spec config.Container
	// Source is api.SourceConfig or api.SourceAPI.
	Source string
	// Netns is the namespace the container lives in: its own, the other
	// container's for mode container:X, "" for mode host.
	Netns string
	// Interfaces are its interfaces (eth0 first), with their addresses.
	Interfaces []bridge.Interface
	// Err is why the container cannot be attached (bad address, name or
	// namespace taken); such a container is left out of Bridge.
	Err error
	// Joins is the container whose namespace a container:X joiner shares.
	Joins string
	// Attached are the runtime attachments a runtime's container is made
	// of, one per network in Spec.Networks order (nil for the others).
	Attached []api.AttachRequest
}

// Container returns the view of the named container, or nil.
func (d *Desired) Container(name string) *ContainerView {
	for _, v := range d.Containers {
		if v.Spec.Name == name {
			return v
		}
	}
	return nil
}

// BridgeNetwork maps a config network to the bridge reconciler's view.
// Overlay networks are bridge networks on their vxb- bridge until the
// overlay step adds the VXLAN side.
func BridgeNetwork(n *config.Network) bridge.Network {
	bn := bridge.Network{Name: n.Name, Subnet: n.Subnet.Masked(), Gateway: n.Gateway, MTU: n.MTU, Internal: n.Internal}
	if n.Subnet6.IsValid() {
		bn.Subnet6, bn.Gateway6 = n.Subnet6.Masked(), n.Gateway6
	}
	switch n.Driver {
	case config.DriverBridge, config.DriverOverlay:
		bn.Driver, bn.Device = bridge.DriverBridge, n.Bridge
		if bn.Device == "" {
			bn.Device = n.BridgeName()
		}
		if n.Driver == config.DriverOverlay && bn.MTU == 0 {
			bn.MTU = OverlayMTU
		}
	case config.DriverMacvlan:
		bn.Driver, bn.Parent = bridge.DriverMacvlan, n.Parent
	case config.DriverIPvlan:
		bn.Driver, bn.Parent = bridge.DriverIPvlan, n.Parent
	default:
		bn.Driver = n.Driver
	}
	return bn
}

// ParseMAC parses a MAC of the bridge record ("" is an error).
func ParseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, errors.New("no MAC")
	}
	return net.ParseMAC(s)
}
