package overlaystep

import (
	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/overlay"
)

// FaultMidFDBSync is the crash point (agent.FaultEnv) right after the
// first FDB or neighbour write of an overlay Sync, before the rest.
const FaultMidFDBSync = "mid-fdb-sync"

// syncHandle is the handle overlay.Sync writes through: the step's own,
// or, with Fault set (crash tests), one that calls Fault at
// FaultMidFDBSync after its first entry write.
func (s *Step) syncHandle() overlay.Netlink {
	if s.Fault == nil {
		return s.h
	}
	return &faultNetlink{Netlink: s.h, fault: s.Fault}
}

// faultNetlink counts entry writes and calls fault after the first.
type faultNetlink struct {
	overlay.Netlink
	fault  func(point string)
	writes int
}

func (f *faultNetlink) wrote() {
	f.writes++
	if f.writes == 1 {
		f.fault(FaultMidFDBSync)
	}
}

// NeighSet implements overlay.Netlink.
func (f *faultNetlink) NeighSet(n *netlink.Neigh) error {
	defer f.wrote()
	return f.Netlink.NeighSet(n)
}

// NeighAppend implements overlay.Netlink.
func (f *faultNetlink) NeighAppend(n *netlink.Neigh) error {
	defer f.wrote()
	return f.Netlink.NeighAppend(n)
}

// NeighDel implements overlay.Netlink.
func (f *faultNetlink) NeighDel(n *netlink.Neigh) error {
	defer f.wrote()
	return f.Netlink.NeighDel(n)
}
