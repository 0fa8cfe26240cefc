package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// Readers for `vxmesh inspect`: the VXLAN devices with their FDB and
// neighbour entries, read back as plain values (agent/explain explains
// them). They never write.

// InspectedVXLAN is a VXLAN device as `ip -d link show` describes it, with its
// entries.
type InspectedVXLAN struct {
	Name     string
	VNI      uint32
	Local    string // "" when the device has no local address
	Port     int
	Learning bool
	Proxy    bool
	L2Miss   bool
	L3Miss   bool
	MTU      int
	MAC      string
	Master   string // the bridge's name, "" for none
	Up       bool
	Alias    string
	// FDB are its entries as `bridge fdb show dev NAME` prints them: the
	// device's own (self) and the bridge's for the port (master).
	FDB []InspectedFDB
	// Neigh are its entries as `ip neigh show dev NAME` prints them
	// (proxy entries left out).
	Neigh []InspectedNeigh
}

// InspectedFDB is one FDB entry of a VXLAN device.
type InspectedFDB struct {
	// Line is the entry as `bridge fdb show dev DEV` prints it.
	Line string
	MAC  string
	// Dst is the remote VTEP (self entries).
	Dst string
	// Self marks the device's own table; Master names the bridge whose
	// table the entry is in otherwise.
	Self   bool
	Master string
	// State is "permanent", "static", "stale" or "" (dynamic).
	State string
}

// InspectedNeigh is one neighbour entry of a VXLAN device.
type InspectedNeigh struct {
	// Line is the entry as `ip neigh show dev DEV` prints it.
	Line  string
	IP    string
	MAC   string
	State string
}

// ReadVXLANs lists our VXLAN devices (by alias or wanted name) with every
// FDB and neighbour entry on them, sorted by name. names are the link
// names by index, to name bridges. What could not be read is in errs.
func ReadVXLANs(h *netlink.Handle, names map[int]string, wanted map[string]bool) ([]InspectedVXLAN, []error) {
	out := []InspectedVXLAN{}
	ls, err := nlsafe.Dump(h.LinkList)
	if err != nil {
		return out, []error{fmt.Errorf("list links: %w", err)}
	}
	var errs []error
	for _, l := range ls {
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			continue
		}
		at := vx.Attrs()
		if !strings.HasPrefix(at.Alias, AliasPrefix) && !wanted[at.Name] {
			continue
		}
		x := vxlanInfo(vx, names)
		var nerrs []error
		x.FDB, err = readFDB(h, at.Index, names)
		if err != nil {
			errs = append(errs, fmt.Errorf("list fdb of %q: %w", at.Name, err))
		}
		x.Neigh, nerrs = readNeigh(h, at.Index)
		for _, e := range nerrs {
			errs = append(errs, fmt.Errorf("list neighbours of %q: %w", at.Name, e))
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(x, y InspectedVXLAN) int { return strings.Compare(x.Name, y.Name) })
	return out, errs
}

// vxlanInfo describes the device itself.
func vxlanInfo(vx *netlink.Vxlan, names map[int]string) InspectedVXLAN {
	at := vx.Attrs()
	x := InspectedVXLAN{
		Name: at.Name, VNI: uint32(vx.VxlanId), Port: vx.Port, Learning: vx.Learning, Proxy: vx.Proxy,
		L2Miss: vx.L2miss, L3Miss: vx.L3miss, MTU: at.MTU, MAC: macString(at.HardwareAddr),
		Up: at.Flags&net.FlagUp != 0, Alias: at.Alias, FDB: []InspectedFDB{}, Neigh: []InspectedNeigh{},
	}
	if ip, ok := netip.AddrFromSlice(vx.SrcAddr); ok {
		x.Local = ip.Unmap().String()
	}
	if m, ok := names[at.MasterIndex]; ok {
		x.Master = m
	}
	return x
}

// readFDB lists the FDB entries of link index.
func readFDB(h *netlink.Handle, index int, names map[int]string) ([]InspectedFDB, error) {
	out := []InspectedFDB{}
	list, err := dumpNeighs(h, netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(index)})
	for _, n := range list {
		if n.LinkIndex == index {
			out = append(out, fdbEntry(n, names))
		}
	}
	return out, err
}

// readNeigh lists the IPv4 and IPv6 neighbour entries of link index,
// proxy entries left out.
func readNeigh(h *netlink.Handle, index int) ([]InspectedNeigh, []error) {
	out := []InspectedNeigh{}
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		list, err := dumpNeighs(h, netlink.Ndmsg{Family: uint8(fam), Index: uint32(index)})
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range list {
			if n.LinkIndex == index && n.Flags&netlink.NTF_PROXY == 0 {
				out = append(out, neighEntry(n))
			}
		}
	}
	return out, errs
}

// dumpNeighs lists neighbour or FDB entries.
func dumpNeighs(h *netlink.Handle, msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	return nlsafe.Dump(func() ([]netlink.Neigh, error) { return h.NeighListExecute(msg) })
}

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

// fdbState names an FDB entry's state the way `bridge fdb` does.
func fdbState(s int) string {
	switch {
	case s&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case s&netlink.NUD_NOARP != 0:
		return "static"
	case s&netlink.NUD_STALE != 0:
		return "stale"
	}
	return ""
}

// fdbEntry describes an FDB entry, its Line as `bridge fdb show dev DEV`
// prints it.
func fdbEntry(n netlink.Neigh, names map[int]string) InspectedFDB {
	e := InspectedFDB{MAC: macString(n.HardwareAddr), Self: n.Flags&netlink.NTF_SELF != 0, State: fdbState(n.State)}
	parts := []string{e.MAC}
	if n.Vlan != 0 {
		parts = append(parts, "vlan "+strconv.Itoa(n.Vlan))
	}
	if ip, ok := netip.AddrFromSlice(n.IP); ok {
		e.Dst = ip.Unmap().String()
		parts = append(parts, "dst "+e.Dst)
	}
	if n.VNI != 0 {
		parts = append(parts, "vni "+strconv.Itoa(n.VNI))
	}
	if e.Self {
		parts = append(parts, "self")
	}
	if n.Flags&netlink.NTF_EXT_LEARNED != 0 {
		parts = append(parts, "extern_learn")
	}
	if n.MasterIndex != 0 {
		e.Master = strconv.Itoa(n.MasterIndex)
		if m, ok := names[n.MasterIndex]; ok {
			e.Master = m
		}
		parts = append(parts, "master "+e.Master)
	} else if n.Flags&netlink.NTF_MASTER != 0 {
		parts = append(parts, "master")
	}
	if e.State != "" {
		parts = append(parts, e.State)
	}
	e.Line = strings.Join(parts, " ")
	return e
}

// neighState names a neighbour state the way `ip neigh` does.
func neighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, " ")
}

// neighEntry describes a neighbour entry, its Line as `ip neigh show dev
// DEV` prints it.
func neighEntry(n netlink.Neigh) InspectedNeigh {
	e := InspectedNeigh{MAC: macString(n.HardwareAddr), State: neighState(n.State)}
	if ip, ok := netip.AddrFromSlice(n.IP); ok {
		e.IP = ip.Unmap().String()
	}
	parts := []string{e.IP}
	if e.MAC != "" {
		parts = append(parts, "lladdr "+e.MAC)
	}
	if n.Flags&netlink.NTF_ROUTER != 0 {
		parts = append(parts, "router")
	}
	parts = append(parts, e.State)
	e.Line = strings.Join(parts, " ")
	return e
}
