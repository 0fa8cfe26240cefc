package portmap

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

func protoNum(proto string) uint8 {
	switch proto {
	case config.ProtoTCP:
		return unix.IPPROTO_TCP
	case config.ProtoUDP:
		return unix.IPPROTO_UDP
	}
	return 0
}

func ipEqual(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip)
	return ok && b.Unmap() == a.Unmap()
}

// mappedFlows matches conntrack flows that went through one of the
// mappings: original destination HostIP:HostPort (any local address when
// HostIP is unset), translated to ContainerIP:ContainerPort, so the reply
// comes from there.
type mappedFlows []Mapping

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f mappedFlows) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	for _, m := range f {
		if flow.Forward.Protocol == protoNum(m.Proto) &&
			flow.Forward.DstPort == m.HostPort &&
			(!m.HostIP.IsValid() || ipEqual(flow.Forward.DstIP, m.HostIP)) &&
			flow.Reverse.SrcPort == m.ContainerPort &&
			ipEqual(flow.Reverse.SrcIP, m.ContainerIP) {
			return true
		}
	}
	return false
}

// unmappedFlows matches UDP flows to a mapping's host port that were not
// translated to its container: entries made before the mapping existed,
// which would keep a client's datagrams (same 5-tuple every time) from
// ever meeting the new DNAT rule.
type unmappedFlows []Mapping

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f unmappedFlows) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	for _, m := range f {
		if m.Proto != config.ProtoUDP || flow.Forward.Protocol != unix.IPPROTO_UDP ||
			flow.Forward.DstPort != m.HostPort ||
			(m.HostIP.IsValid() && !ipEqual(flow.Forward.DstIP, m.HostIP)) {
			continue
		}
		if !(flow.Reverse.SrcPort == m.ContainerPort && ipEqual(flow.Reverse.SrcIP, m.ContainerIP)) {
			return true
		}
	}
	return false
}

// FlushConntrack deletes the conntrack entries of flows that went through
// the removed mappings, in namespace ns (the current one for netns.None()),
// so established connections and UDP flows do not keep reaching the
// container through a mapping that no longer exists. It returns the number
// of entries deleted. Call it after the rules are gone.
func FlushConntrack(ns netns.NsHandle, removed []Mapping) (uint, error) {
	return deleteFlows(ns, "removed", removed, mappedFlows(removed))
}

// FlushUnmapped deletes UDP conntrack entries to the host ports of newly
// added mappings that were not translated by them (made before the mapping
// existed), in namespace ns. Without it a client that keeps sending from
// the same address and port never reaches the container until its entry
// times out. Call it after the rules are in place.
func FlushUnmapped(ns netns.NsHandle, added []Mapping) (uint, error) {
	var udp []Mapping
	for _, m := range added {
		if m.Proto == config.ProtoUDP {
			udp = append(udp, m)
		}
	}
	return deleteFlows(ns, "unmapped", udp, unmappedFlows(udp))
}

func deleteFlows(ns netns.NsHandle, what string, ms []Mapping, filter netlink.CustomConntrackFilter) (uint, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return 0, fmt.Errorf("flush conntrack of %d %s mappings: open netlink: %w", len(ms), what, err)
	}
	defer h.Close()
	var total uint
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		if !hasFamily(ms, fam) {
			continue
		}
		// A dump interrupted by concurrent changes deletes what it saw;
		// go again for the rest, counting every attempt's deletions.
		_, err := nlsafe.Dump(func() (struct{}, error) {
			n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
			total += n
			return struct{}{}, err
		})
		if err != nil {
			return total, fmt.Errorf("flush conntrack of %d %s mappings (first %s): %w", len(ms), what, ms[0], err)
		}
	}
	return total, nil
}

func hasFamily(ms []Mapping, fam netlink.InetFamily) bool {
	for _, m := range ms {
		if m.ContainerIP.Is4() == (fam == unix.AF_INET) {
			return true
		}
	}
	return false
}
