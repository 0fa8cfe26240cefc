package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
)

// `vxmesh inspect`: the kernel state this agent made, read back from the
// kernel and tied to what caused it.
//
// It happens in two halves. Reading (readInspect and its helpers) fills an
// api.Inspect from the kernel only: the bridge kernel's link list, the
// bridges' STP state and id from a raw RTM_GETLINK dump, the VXLAN devices
// and every FDB and neighbour entry on them through the overlay step's
// netlink handle, our iptables chains through the bridge reconciler's
// iptables handle, and each container namespace from inside. Annotating
// (annotate, pure, unit-tested without root) then ties each item to a
// container, network or peer host from the agent's view: its last pass.Desired
// (containers, pass.Desired.Remote) and the gossip table; what the view does not
// explain is marked Unknown.

func (a *Agent) hInspect(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.inspect(r.Context()))
}

// inspect reads the kernel and annotates it.
func (a *Agent) inspect(ctx context.Context) *api.Inspect {
	v := a.inspectView()
	in := a.readInspect(ctx, v)
	annotate(in, v)
	return in
}

// inspectView is what the agent knows, to annotate kernel state with.
type inspectView struct {
	cfg *config.Config
	// d is the last pass's desired state (the current inputs' before the
	// first pass).
	d *pass.Desired
	// remote are the remote endpoints the agent programs: those of the
	// current gossip table, then the last pass's pass.Desired.Remote (gossip
	// changes are programmed between passes, so either may be the one in
	// the kernel for a moment).
	remote []pass.RemoteEndpoint
	// gossip are the other hosts' endpoints gossip knows, with a note on
	// those not programmed here.
	gossip []api.Endpoint
	// peers maps a peer's underlay address (its VTEP) to its name.
	peers map[netip.Addr]string
	// ports are the published ports by container.
	ports map[string][]portmap.Mapping
	// etcDir is the name-file directory of a namespace.
	etcDir func(ns string) string
}

func (a *Agent) inspectView() *inspectView {
	s := a.snapshot()
	v := &inspectView{cfg: s.cfg, d: s.d, peers: map[netip.Addr]string{}, ports: map[string][]portmap.Mapping{}, etcDir: a.etcDir}
	if s.last != nil {
		v.d, v.cfg = s.last, s.last.Config
	}
	for c, pv := range s.ports {
		v.ports[c] = pv.Mappings
	}
	v.gossip = a.ovl.RemoteEndpoints(s.gossip(), "")
	v.remote = append(a.ovl.LastRemote(), v.d.Remote...)
	for _, p := range overlaystep.Peers(s.gossip()) {
		if ip, err := netip.ParseAddr(p.Address); err == nil && !p.Self {
			v.peers[ip] = p.Name
		}
	}
	return v
}

// readInspect reads what vxmesh made from the kernel; problems go into
// Problems. Nothing is annotated yet.
func (a *Agent) readInspect(ctx context.Context, v *inspectView) *api.Inspect {
	in := &api.Inspect{
		Host: v.cfg.Host.Name, ReadAt: time.Now(),
		Bridges: []api.InspectBridge{}, VXLANs: []api.InspectVXLAN{}, Iptables: []api.InspectChain{}, Containers: []api.InspectContainer{},
	}
	if v.cfg.Host.Address.IsValid() {
		in.Address = v.cfg.Host.Address.String()
	}
	problem := func(format string, args ...any) { in.Problems = append(in.Problems, fmt.Sprintf(format, args...)) }

	k := a.br.Kernel
	links, err := k.Links("")
	if err != nil {
		problem("read the host's links: %v", err)
	}
	byIndex := map[int]bridge.Link{}
	for _, l := range links {
		byIndex[l.Index] = l
	}
	var attrs map[int]bridgeAttrs
	if a.ovl.Handle() != nil {
		if attrs, err = readBridgeAttrs(a.ovl.Netns()); err != nil {
			problem("read the bridges' STP state and id: %v", err)
		}
	}
	in.Bridges = readBridges(links, attrs, v.wantedBridges())

	if a.ovl.Handle() != nil {
		vx, errs := readVXLANs(a.ovl.Handle().Handle, byIndex, v.wantedVXLANs())
		in.VXLANs = vx
		for _, e := range errs {
			problem("%v", e)
		}
	}

	chains, errs := readChains(a.br.IPT)
	in.Iptables = chains
	for _, e := range errs {
		problem("%v", e)
	}

	for _, c := range v.namespaces() {
		if ctx.Err() != nil {
			problem("%v", ctx.Err())
			break
		}
		in.Containers = append(in.Containers, readContainer(k, c, byIndex, v.etcDir(c.Netns)))
	}
	return in
}

// wantedBridges are the bridge devices of the config's bridge and overlay
// networks.
func (v *inspectView) wantedBridges() map[string]bool {
	out := map[string]bool{}
	for i := range v.cfg.Networks {
		if bn := pass.BridgeNetwork(&v.cfg.Networks[i]); bn.Device != "" {
			out[bn.Device] = true
		}
	}
	return out
}

// wantedVXLANs are the VXLAN device names of the overlay networks.
func (v *inspectView) wantedVXLANs() map[string]bool {
	out := map[string]bool{}
	for _, n := range overlaystep.Networks(v.cfg) {
		out[overlaystep.Device(v.cfg, n).LinkName()] = true
	}
	return out
}

// isOurs reports whether a link alias is one vxmesh writes.
func isOurs(alias string) bool { return strings.HasPrefix(alias, bridge.AliasPrefix) }

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func prefixStrings(ps []netip.Prefix) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// readBridges lists our bridges (by alias or wanted name) and their ports,
// as brctl does, ports sorted by name.
func readBridges(links []bridge.Link, attrs map[int]bridgeAttrs, wanted map[string]bool) []api.InspectBridge {
	out := []api.InspectBridge{}
	for _, l := range links {
		if l.Kind != "bridge" || !(isOurs(l.Alias) || wanted[l.Name]) {
			continue
		}
		b := api.InspectBridge{Name: l.Name, MAC: macString(l.MAC), MTU: l.MTU, Up: l.Up, Alias: l.Alias, Addrs: prefixStrings(l.Addrs), Ports: []api.InspectPort{}}
		if at, ok := attrs[l.Index]; ok {
			b.ID, b.STP = at.id, at.stp
		}
		for _, p := range links {
			if p.MasterIndex == l.Index {
				b.Ports = append(b.Ports, api.InspectPort{Name: p.Name, Kind: p.Kind, MAC: macString(p.MAC), MTU: p.MTU, Up: p.Up, Hairpin: p.Hairpin, Alias: p.Alias})
			}
		}
		slices.SortFunc(b.Ports, func(x, y api.InspectPort) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, b)
	}
	slices.SortFunc(out, func(x, y api.InspectBridge) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// bridgeAttrs are what `brctl show` says of a bridge beyond its ports.
type bridgeAttrs struct {
	stp bool
	id  string // "8000.06cd9936a3c5"
}

// readBridgeAttrs dumps the links of namespace ns (netns.None(): the
// current one) and returns the STP state and bridge id of each bridge by
// index. The netlink library does not decode those attributes, so the
// dump is parsed here.
func readBridgeAttrs(ns netns.NsHandle) (map[int]bridgeAttrs, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	defer s.Close()
	var msgs [][]byte
	for range 5 {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", err)
	}
	out := map[int]bridgeAttrs{}
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := nl.DeserializeIfInfomsg(m)
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			continue
		}
		if at, ok := parseBridgeInfo(attrs); ok {
			out[int(ifi.Index)] = at
		}
	}
	return out, nil
}

// nlaTypeMask strips the nested and byte-order flags off an attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// parseBridgeInfo finds IFLA_LINKINFO of kind "bridge" and reads its
// IFLA_BR_STP_STATE and IFLA_BR_BRIDGE_ID.
func parseBridgeInfo(attrs []syscall.NetlinkRouteAttr) (bridgeAttrs, bool) {
	for _, a := range attrs {
		if a.Attr.Type&nlaTypeMask != unix.IFLA_LINKINFO {
			continue
		}
		info, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return bridgeAttrs{}, false
		}
		isBridge := false
		var data []byte
		for _, i := range info {
			switch i.Attr.Type & nlaTypeMask {
			case unix.IFLA_INFO_KIND:
				isBridge = strings.TrimRight(string(i.Value), "\x00") == "bridge"
			case unix.IFLA_INFO_DATA:
				data = i.Value
			}
		}
		if !isBridge {
			return bridgeAttrs{}, false
		}
		var at bridgeAttrs
		br, err := nl.ParseRouteAttr(data)
		if err != nil {
			return at, true
		}
		for _, b := range br {
			switch b.Attr.Type & nlaTypeMask {
			case unix.IFLA_BR_STP_STATE:
				if len(b.Value) >= 4 {
					at.stp = nl.NativeEndian().Uint32(b.Value) != 0
				}
			case unix.IFLA_BR_BRIDGE_ID:
				if len(b.Value) >= 8 {
					at.id = fmt.Sprintf("%02x%02x.%x", b.Value[0], b.Value[1], b.Value[2:8])
				}
			}
		}
		return at, true
	}
	return bridgeAttrs{}, false
}

// readVXLANs lists our VXLAN devices (by alias or wanted name) with every
// FDB and neighbour entry on them.
func readVXLANs(h *netlink.Handle, byIndex map[int]bridge.Link, wanted map[string]bool) ([]api.InspectVXLAN, []error) {
	out := []api.InspectVXLAN{}
	var errs []error
	ls, err := h.LinkList()
	if err != nil {
		return out, []error{fmt.Errorf("list links: %w", err)}
	}
	for _, l := range ls {
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			continue
		}
		at := vx.Attrs()
		if !strings.HasPrefix(at.Alias, overlay.AliasPrefix) && !wanted[at.Name] {
			continue
		}
		x := api.InspectVXLAN{
			Name: at.Name, VNI: uint32(vx.VxlanId), Port: vx.Port, Learning: vx.Learning, Proxy: vx.Proxy,
			L2Miss: vx.L2miss, L3Miss: vx.L3miss, MTU: at.MTU, MAC: macString(at.HardwareAddr),
			Up: at.Flags&net.FlagUp != 0, Alias: at.Alias, FDB: []api.InspectFDB{}, Neigh: []api.InspectNeigh{},
		}
		if ip, ok := netip.AddrFromSlice(vx.SrcAddr); ok {
			x.Local = ip.Unmap().String()
		}
		if m, ok := byIndex[at.MasterIndex]; ok {
			x.Master = m.Name
		}
		fdb, err := dumpNeighs(h, netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(at.Index)})
		if err != nil {
			errs = append(errs, fmt.Errorf("list fdb of %q: %w", at.Name, err))
		}
		for _, n := range fdb {
			if n.LinkIndex == at.Index {
				x.FDB = append(x.FDB, fdbEntry(n, byIndex))
			}
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			list, err := dumpNeighs(h, netlink.Ndmsg{Family: uint8(fam), Index: uint32(at.Index)})
			if err != nil {
				errs = append(errs, fmt.Errorf("list neighbours of %q: %w", at.Name, err))
			}
			for _, n := range list {
				if n.LinkIndex == at.Index && n.Flags&netlink.NTF_PROXY == 0 {
					x.Neigh = append(x.Neigh, neighEntry(n))
				}
			}
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(x, y api.InspectVXLAN) int { return strings.Compare(x.Name, y.Name) })
	return out, errs
}

// dumpNeighs lists neighbour or FDB entries, retrying dumps the kernel
// marks interrupted.
func dumpNeighs(h *netlink.Handle, msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	var err error
	for range 5 {
		var list []netlink.Neigh
		list, err = h.NeighListExecute(msg)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return list, err
		}
	}
	return nil, err
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
func fdbEntry(n netlink.Neigh, byIndex map[int]bridge.Link) api.InspectFDB {
	e := api.InspectFDB{MAC: macString(n.HardwareAddr), Self: n.Flags&netlink.NTF_SELF != 0, State: fdbState(n.State)}
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
		if m, ok := byIndex[n.MasterIndex]; ok {
			e.Master = m.Name
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
func neighEntry(n netlink.Neigh) api.InspectNeigh {
	e := api.InspectNeigh{MAC: macString(n.HardwareAddr), State: neighState(n.State)}
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

// builtinJumps are the built-in chains vxmesh jumps from, per table.
var builtinJumps = map[string][]string{
	"nat":    {"PREROUTING", "OUTPUT", "POSTROUTING"},
	"filter": {"FORWARD"},
}

// chainOrder is the order our chains are listed in (the order traffic
// meets them); other chains of ours follow by name.
var chainOrder = []string{
	bridge.ChainDNAT, bridge.ChainPostrouting, bridge.ChainHairpin,
	bridge.ChainForward, bridge.ChainPublished, bridge.ChainIsolation,
}

// readChains lists, per table, the jumps into our chains from the
// built-in ones, then each of our chains with all its rules.
func readChains(it ipt.Iptables) ([]api.InspectChain, []error) {
	out := []api.InspectChain{}
	var errs []error
	for _, table := range []string{"nat", "filter"} {
		for _, from := range builtinJumps[table] {
			rules, err := it.Rules(table, from)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c := api.InspectChain{Table: table, Chain: from, Builtin: true, Rules: []api.InspectRule{}}
			for _, r := range rules {
				if jumpTarget(r) != "" {
					c.Rules = append(c.Rules, api.InspectRule{Rule: r})
				}
			}
			if len(c.Rules) > 0 {
				out = append(out, c)
			}
		}
		names, err := it.ListChains(table, bridge.ChainPrefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		slices.SortFunc(names, func(x, y string) int {
			i, j := slices.Index(chainOrder, x), slices.Index(chainOrder, y)
			switch {
			case i >= 0 && j >= 0:
				return i - j
			case i >= 0:
				return -1
			case j >= 0:
				return 1
			}
			return strings.Compare(x, y)
		})
		for _, name := range names {
			rules, err := it.Rules(table, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c := api.InspectChain{Table: table, Chain: name, Rules: []api.InspectRule{}}
			for _, r := range rules {
				c.Rules = append(c.Rules, api.InspectRule{Rule: r})
			}
			out = append(out, c)
		}
	}
	return out, errs
}

// ruleFields splits a rule as `iptables -S` prints it into its words
// outside the comment, and the comment.
func ruleFields(rule string) (words []string, comment string) {
	const key = "--comment "
	if i := strings.Index(rule, key); i >= 0 {
		rest := rule[i+len(key):]
		if strings.HasPrefix(rest, `"`) {
			if j := strings.Index(rest[1:], `"`); j >= 0 {
				comment = rest[1 : j+1]
				rest = rest[j+2:]
			}
		} else {
			comment, rest, _ = strings.Cut(rest, " ")
		}
		// Leave out "-m comment" before the comment too.
		head := strings.TrimSuffix(strings.TrimSpace(rule[:i]), "-m comment")
		rule = head + " " + rest
	}
	return strings.Fields(rule), comment
}

// jumpTarget is the chain of ours a rule jumps or goes to, "" for none.
func jumpTarget(rule string) string {
	w, _ := ruleFields(rule)
	for i := 0; i+1 < len(w); i++ {
		if (w[i] == "-j" || w[i] == "-g") && strings.HasPrefix(w[i+1], bridge.ChainPrefix) {
			return w[i+1]
		}
	}
	return ""
}

// ruleDevices are the interfaces a rule matches (-i, -o), in order.
func ruleDevices(rule string) []string {
	w, _ := ruleFields(rule)
	var out []string
	for i := 0; i+1 < len(w); i++ {
		if w[i] == "-i" || w[i] == "-o" {
			out = append(out, w[i+1])
		}
	}
	return out
}

// nsToInspect is one container namespace to look into.
type nsToInspect struct {
	Container string
	Netns     string
	SharedBy  []string
}

// namespaces are the container namespaces of the view: each attached
// container with a namespace of its own, with the containers that join it.
func (v *inspectView) namespaces() []nsToInspect {
	var out []nsToInspect
	idx := map[string]int{}
	for _, c := range v.d.Containers {
		if c.Err != nil || c.Netns == "" || c.Joins != "" {
			continue
		}
		idx[c.Netns] = len(out)
		out = append(out, nsToInspect{Container: c.Spec.Name, Netns: c.Netns})
	}
	for _, c := range v.d.Containers {
		if c.Err == nil && c.Joins != "" {
			if i, ok := idx[c.Netns]; ok {
				out[i].SharedBy = append(out[i].SharedBy, c.Spec.Name)
			}
		}
	}
	return out
}

// readContainer reads one container namespace from inside: interfaces,
// routes and the presence of its name files.
func readContainer(k bridge.Kernel, c nsToInspect, host map[int]bridge.Link, etcDir string) api.InspectContainer {
	out := api.InspectContainer{Name: c.Container, Netns: c.Netns, SharedBy: c.SharedBy, Interfaces: []api.InspectInterface{}, Routes: []string{}, EtcDir: etcDir, Files: map[string]bool{}}
	for _, f := range bridge.NameFiles {
		_, err := os.Stat(filepath.Join(etcDir, f))
		out.Files[f] = err == nil
	}
	if !k.NetnsExists(c.Netns) {
		return out
	}
	out.Exists = true
	links, err := k.Links(c.Netns)
	if err != nil {
		out.Routes = append(out.Routes, "(links unreadable: "+err.Error()+")")
		return out
	}
	for _, l := range links {
		ifc := api.InspectInterface{Name: l.Name, Kind: l.Kind, MAC: macString(l.MAC), MTU: l.MTU, Up: l.Up, Addrs: prefixStrings(l.Addrs), Alias: l.Alias}
		if p, ok := host[l.ParentIndex]; ok && l.ParentIndex != 0 && (l.Kind == "veth" || l.Kind == "macvlan" || l.Kind == "ipvlan") {
			ifc.Peer = p.Name
		}
		out.Interfaces = append(out.Interfaces, ifc)
	}
	routes, err := readRoutes(c.Netns)
	if err != nil {
		out.Routes = append(out.Routes, "(routes unreadable: "+err.Error()+")")
	}
	out.Routes = append(out.Routes, routes...)
	return out
}

// readRoutes lists the main routing table of namespace ns the way `ip
// route` and `ip -6 route` print it (IPv6 link-local routes left out).
func readRoutes(ns string) ([]string, error) {
	nh, err := netnsutil.Open(ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	names := map[int]string{}
	if ls, err := h.LinkList(); err == nil {
		for _, l := range ls {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var rs []netlink.Route
		for range 5 {
			rs, err = h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return out, err
		}
		for _, r := range rs {
			if s := routeLine(r, names); s != "" {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// routeLine prints a route the way `ip route` does; "" for IPv6
// link-local and multicast routes, which the kernel adds by itself.
func routeLine(r netlink.Route, names map[int]string) string {
	dst := "default"
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones != 0 || !r.Dst.IP.IsUnspecified() {
			if r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
				return ""
			}
			dst = r.Dst.String()
		}
	}
	parts := []string{dst}
	if r.Type != unix.RTN_UNICAST && r.Type != 0 {
		parts = []string{routeTypeName(r.Type), dst}
	}
	if r.Gw != nil {
		parts = append(parts, "via "+r.Gw.String())
	}
	if n, ok := names[r.LinkIndex]; ok {
		parts = append(parts, "dev "+n)
	}
	if r.Protocol != unix.RTPROT_BOOT && r.Protocol != unix.RTPROT_UNSPEC {
		parts = append(parts, "proto "+r.Protocol.String())
	}
	if r.Scope != netlink.SCOPE_UNIVERSE {
		parts = append(parts, "scope "+r.Scope.String())
	}
	if r.Src != nil {
		parts = append(parts, "src "+r.Src.String())
	}
	if r.Priority != 0 {
		parts = append(parts, "metric "+strconv.Itoa(r.Priority))
	}
	return strings.Join(parts, " ")
}

func routeTypeName(t int) string {
	switch t {
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	}
	return "type " + strconv.Itoa(t)
}

// The annotating half.

// annotate ties every item of in to its cause from v and adds a problem
// for each wanted device or namespace the kernel lacks.
func annotate(in *api.Inspect, v *inspectView) {
	found := map[string]bool{}
	for i := range in.Bridges {
		b := &in.Bridges[i]
		found[b.Name] = true
		v.annotateBridge(b)
	}
	for i := range in.VXLANs {
		x := &in.VXLANs[i]
		found[x.Name] = true
		v.annotateVXLAN(x)
	}
	for i := range in.Iptables {
		c := &in.Iptables[i]
		for j := range c.Rules {
			v.annotateRule(c, &c.Rules[j])
		}
	}
	for i := range in.Containers {
		c := &in.Containers[i]
		if !c.Exists {
			in.Problems = append(in.Problems, fmt.Sprintf("container %q: namespace %q does not exist", c.Name, c.Netns))
		}
		for j := range c.Interfaces {
			v.annotateInterface(c, &c.Interfaces[j])
		}
	}
	for i := range v.cfg.Networks {
		n := &v.cfg.Networks[i]
		if bn := pass.BridgeNetwork(n); bn.Device != "" && !found[bn.Device] {
			in.Problems = append(in.Problems, fmt.Sprintf("network %q: bridge %q not found", n.Name, bn.Device))
		}
		if n.Driver == config.DriverOverlay {
			if name := overlaystep.Device(v.cfg, n).LinkName(); !found[name] {
				in.Problems = append(in.Problems, fmt.Sprintf("network %q: vxlan device %q not found", n.Name, name))
			}
		}
	}
}

// linkAlias decodes a link alias vxmesh writes: "vxmesh:net=N",
// "vxmesh:ctr=C,net=N" or "vxmesh:vxlan net=N".
func linkAlias(alias string) (ctr, network string, vxlan, ok bool) {
	if rest, found := strings.CutPrefix(alias, overlay.AliasPrefix); found {
		return "", rest, true, rest != ""
	}
	rest, found := strings.CutPrefix(alias, bridge.AliasPrefix)
	if !found {
		return "", "", false, false
	}
	for kv := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "ctr":
			ctr = val
		case "net":
			network = val
		}
	}
	return ctr, network, false, network != ""
}

// networkOfBridge is the network whose bridge is dev.
func (v *inspectView) networkOfBridge(dev string) *config.Network {
	for i := range v.cfg.Networks {
		if pass.BridgeNetwork(&v.cfg.Networks[i]).Device == dev {
			return &v.cfg.Networks[i]
		}
	}
	return nil
}

// vethOwner finds the container and network whose host veth is named dev.
func (v *inspectView) vethOwner(dev string) (ctr, network string, ok bool) {
	for _, c := range v.d.Containers {
		if c.Netns == "" || c.Joins != "" {
			continue
		}
		for _, ifc := range c.Interfaces {
			if bridge.HostVethName(c.Netns, ifc.Network) == dev {
				return c.Spec.Name, ifc.Network, true
			}
		}
	}
	return "", "", false
}

// attached reports whether container ctr is on network in the view.
func (v *inspectView) attached(ctr, network string) bool {
	c := v.d.Container(ctr)
	if c == nil || c.Err != nil {
		return false
	}
	return slices.ContainsFunc(c.Interfaces, func(i bridge.Interface) bool { return i.Network == network })
}

func (v *inspectView) annotateBridge(b *api.InspectBridge) {
	_, network, _, ok := linkAlias(b.Alias)
	n := v.networkOfBridge(b.Name)
	switch {
	case n != nil:
		b.Network, b.Driver = n.Name, n.Driver
		if n.Gateway.IsValid() {
			b.Gateway = n.Gateway.String()
		}
		b.Note = "bridge of network " + n.Name
		if n.Driver == config.DriverOverlay {
			b.Note = "gateway bridge of overlay " + n.Name + " (same gateway IP and MAC on every host)"
		}
		if n.Internal {
			b.Note += ", internal"
		}
		if !ok {
			b.Unknown, b.Note = true, "named like the bridge of network "+n.Name+" but without vxmesh's alias: not vxmesh's"
		}
	case ok:
		b.Network, b.Unknown, b.Note = network, true, "network "+network+" is not configured: stale"
	default:
		b.Unknown, b.Note = true, "not vxmesh's"
	}
	for i := range b.Ports {
		v.annotatePort(b, &b.Ports[i])
	}
}

func (v *inspectView) annotatePort(b *api.InspectBridge, p *api.InspectPort) {
	ctr, network, vxlan, ok := linkAlias(p.Alias)
	switch {
	case vxlan:
		p.Network, p.Note = network, "VXLAN tunnel of overlay "+network+" to the other hosts"
		if n := v.cfg.NetworkByName(network); n == nil || n.Driver != config.DriverOverlay {
			p.Unknown, p.Note = true, "VXLAN device of overlay "+network+", which is not configured: stale"
		}
	case ok && ctr != "":
		p.Container, p.Network = ctr, network
		p.Note = "host end of the container's veth"
		if !v.attached(ctr, network) {
			p.Unknown, p.Note = true, "container is not on this network in the agent's view: stale"
		}
	default:
		if c, n, found := v.vethOwner(p.Name); found {
			p.Container, p.Network, p.Note = c, n, "host end of the container's veth (alias missing)"
			return
		}
		p.Unknown, p.Note = true, "not vxmesh's"
	}
}

// remoteIndex holds the endpoints the agent programs on one network.
type remoteIndex struct {
	byMAC  map[string][]pass.RemoteEndpoint
	byIP   map[netip.Addr][]pass.RemoteEndpoint
	byVTEP map[netip.Addr]string // VTEP -> host
	gossip []api.Endpoint        // gossip's records on the network
}

// remoteOn indexes the endpoints the agent programs for network.
func (v *inspectView) remoteOn(network string) *remoteIndex {
	x := &remoteIndex{byMAC: map[string][]pass.RemoteEndpoint{}, byIP: map[netip.Addr][]pass.RemoteEndpoint{}, byVTEP: map[netip.Addr]string{}}
	for _, r := range v.remote {
		if r.Network != network {
			continue
		}
		m := r.MAC.String()
		x.byMAC[m] = append(x.byMAC[m], r)
		x.byIP[r.IP] = append(x.byIP[r.IP], r)
		if _, ok := x.byVTEP[r.VTEP]; !ok {
			x.byVTEP[r.VTEP] = r.Host
		}
	}
	for _, g := range v.gossip {
		if g.Network == network {
			x.gossip = append(x.gossip, g)
		}
	}
	return x
}

// mac finds the endpoint with mac, preferably behind dst.
func (x *remoteIndex) mac(mac string, dst netip.Addr) (pass.RemoteEndpoint, bool) {
	rs := x.byMAC[mac]
	for _, r := range rs {
		if r.VTEP == dst {
			return r, true
		}
	}
	if len(rs) > 0 {
		return rs[0], true
	}
	return pass.RemoteEndpoint{}, false
}

// ip finds the endpoint with ip, preferably at mac.
func (x *remoteIndex) ip(ip netip.Addr, mac string) (pass.RemoteEndpoint, bool) {
	rs := x.byIP[ip]
	for _, r := range rs {
		if r.MAC.String() == mac {
			return r, true
		}
	}
	if len(rs) > 0 {
		return rs[0], true
	}
	return pass.RemoteEndpoint{}, false
}

// gossipBy finds a record gossip has on the network (programmed or not).
func (x *remoteIndex) gossipBy(match func(api.Endpoint) bool) (api.Endpoint, bool) {
	for _, e := range x.gossip {
		if match(e) {
			return e, true
		}
	}
	return api.Endpoint{}, false
}

func (v *inspectView) annotateVXLAN(x *api.InspectVXLAN) {
	_, network, _, ok := linkAlias(x.Alias)
	n := v.cfg.NetworkByName(network)
	if !ok || n == nil || n.Driver != config.DriverOverlay {
		// Fall back to the device name.
		for _, o := range overlaystep.Networks(v.cfg) {
			if overlaystep.Device(v.cfg, o).LinkName() == x.Name {
				n = o
			}
		}
	}
	switch {
	case n == nil:
		x.Network, x.Unknown, x.Note = network, true, "overlay not configured: stale"
	case !ok:
		x.Network, x.Unknown, x.Note = n.Name, true, "named like overlay "+n.Name+"'s device but without vxmesh's alias: not vxmesh's"
	default:
		x.Network, x.Note = n.Name, "VXLAN device of overlay "+n.Name
	}
	idx := v.remoteOn(x.Network)
	for i := range x.FDB {
		v.annotateFDB(x, idx, &x.FDB[i])
	}
	for i := range x.Neigh {
		annotateNeigh(x, idx, &x.Neigh[i])
	}
}

func isZeroMACString(s string) bool { return s == "00:00:00:00:00:00" }

// notProgrammed explains a record gossip has that the agent does not
// program.
func notProgrammed(g api.Endpoint) string {
	if g.Note != "" {
		return "known to gossip but not programmed here (" + g.Note + ")"
	}
	return "known to gossip but not programmed here"
}

func (v *inspectView) annotateFDB(x *api.InspectVXLAN, idx *remoteIndex, e *api.InspectFDB) {
	network := x.Network
	dst, _ := netip.ParseAddr(e.Dst)
	if !e.Self {
		// The bridge's own table for its port: the kernel's, not ours.
		if strings.EqualFold(e.MAC, x.MAC) {
			e.Note = "bridge " + e.Master + ": the port's own MAC"
			return
		}
		if r, ok := idx.mac(e.MAC, dst); ok {
			e.Container, e.Network, e.Host = r.Container, network, r.Host
		}
		e.Note = "learned by bridge " + e.Master + " from traffic (the kernel's)"
		return
	}
	if isZeroMACString(e.MAC) {
		e.Network = network
		if h, ok := idx.byVTEP[dst]; ok {
			e.Host = h
			e.Note = "flood list: broadcast and unknown unicast go to this peer"
			if e.State != "permanent" {
				e.Unknown, e.Note = true, "flood destination that is not permanent: not written by vxmesh"
			}
			return
		}
		e.Unknown = true
		if h, ok := v.peers[dst]; ok {
			e.Host, e.Note = h, "flood destination, but the peer has no endpoint on "+network+" in the agent's view: stale"
			return
		}
		e.Note = "flood destination not in the agent's view: stale or added by hand"
		return
	}
	if r, ok := idx.mac(e.MAC, dst); ok {
		e.Container, e.Network, e.Host = r.Container, network, r.Host
		switch {
		case r.VTEP != dst:
			e.Unknown, e.Note = true, fmt.Sprintf("stale: the agent has this MAC behind %s", r.VTEP)
		case e.State != "permanent":
			e.Unknown, e.Note = true, "not permanent: not written by vxmesh"
		default:
			e.Note = "frames to it go to " + e.Dst + " over VXLAN"
		}
		return
	}
	e.Unknown = true
	if g, ok := idx.gossipBy(func(g api.Endpoint) bool { return g.MAC == e.MAC }); ok {
		e.Container, e.Network, e.Host, e.Note = g.Container, network, g.Host, notProgrammed(g)
		return
	}
	if h, ok := v.peers[dst]; ok {
		e.Host = h
	}
	e.Note = "not in the agent's view: stale or added by hand"
}

func annotateNeigh(x *api.InspectVXLAN, idx *remoteIndex, e *api.InspectNeigh) {
	network := x.Network
	ip, _ := netip.ParseAddr(e.IP)
	if r, ok := idx.ip(ip, e.MAC); ok {
		e.Container, e.Network, e.Host = r.Container, network, r.Host
		switch {
		case r.MAC.String() != e.MAC:
			e.Unknown, e.Note = true, fmt.Sprintf("stale: the agent has this address at %s", r.MAC)
		case !strings.Contains(e.State, "PERMANENT"):
			e.Unknown, e.Note = true, "not permanent: not written by vxmesh"
		default:
			e.Note = "ARP for it is answered here (proxy)"
		}
		return
	}
	e.Unknown = true
	if g, ok := idx.gossipBy(func(g api.Endpoint) bool { return g.IP == e.IP }); ok {
		e.Container, e.Network, e.Host, e.Note = g.Container, network, g.Host, notProgrammed(g)
		return
	}
	e.Note = "not in the agent's view: stale or added by hand"
}

// chainPurpose says what each chain of ours is for.
var chainPurpose = map[string]string{
	bridge.ChainDNAT:        "published ports (DNAT)",
	bridge.ChainPostrouting: "outbound NAT (masquerade)",
	bridge.ChainHairpin:     "containers reaching their own published port",
	bridge.ChainForward:     "forwarding to and from the networks",
	bridge.ChainPublished:   "traffic to published ports",
	bridge.ChainIsolation:   "isolation between networks",
}

// jumpNote describes a jump into one of our chains.
func jumpNote(target string) string {
	if p, ok := chainPurpose[target]; ok {
		return "jump to " + target + ": " + p
	}
	return "jump to " + target
}

func (v *inspectView) annotateRule(c *api.InspectChain, r *api.InspectRule) {
	if c.Builtin {
		r.Note = jumpNote(jumpTarget(r.Rule))
		return
	}
	words, comment := ruleFields(r.Rule)
	if ctr, ok := portmap.ContainerOfRule(r.Rule); ok {
		r.Container = ctr
		port := strings.TrimPrefix(comment, portmap.CommentPrefix+ctr+" ")
		switch c.Chain {
		case bridge.ChainDNAT:
			r.Note = "published port " + port
		case bridge.ChainHairpin:
			r.Note = port + ": the container reaching its own published port through the host address"
		case bridge.ChainPublished:
			r.Note = port + ": let the published port's traffic in"
		default:
			r.Note = port
		}
		ms := v.ports[ctr]
		if len(ms) == 0 {
			r.Unknown, r.Note = true, "no published port of this container in the agent's view: stale"
			return
		}
		if n := v.networkOfBridge(ms[0].Bridge); n != nil {
			r.Network = n.Name
		}
		return
	}
	var nets []string
	for _, dev := range ruleDevices(r.Rule) {
		n := v.networkOfBridge(dev)
		if n == nil {
			r.Unknown, r.Note = true, fmt.Sprintf("bridge %q is not one of the agent's networks: stale", dev)
			return
		}
		if !slices.Contains(nets, n.Name) {
			nets = append(nets, n.Name)
		}
	}
	if len(nets) > 0 {
		r.Network = nets[0]
	}
	r.Note = ruleNote(comment, words)
}

// ruleNote explains a rule bridge/ wrote, from its comment and words.
func ruleNote(comment string, words []string) string {
	has := func(w string) bool { return slices.Contains(words, w) }
	target := ""
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "-j" || words[i] == "-g" {
			target = words[i+1]
		}
	}
	what, arg, _ := strings.Cut(strings.TrimPrefix(comment, "vxmesh: "), " ")
	switch {
	case !strings.HasPrefix(comment, "vxmesh: "):
		if strings.HasPrefix(target, bridge.ChainPrefix) {
			return jumpNote(target)
		}
		return comment
	case what == "masquerade":
		return "outbound traffic leaves with the host's address"
	case what == "internal":
		return "internal network: nothing in or out"
	case what == "isolate":
		from, to, _ := strings.Cut(arg, " from ")
		return "containers on " + from + " do not reach " + to
	case what == "network" && target == "ACCEPT" && has("-i") && has("-o"):
		return "traffic within the internal network"
	case what == "network" && target == "ACCEPT" && has("-i"):
		return "traffic from its containers may go anywhere"
	case what == "network" && target == "ACCEPT" && has("--ctstate"):
		return "replies come back in"
	case what == "network" && target == "DROP":
		return "nothing else gets in (no route straight to a container)"
	}
	return strings.TrimPrefix(comment, "vxmesh: ")
}

func (v *inspectView) annotateInterface(c *api.InspectContainer, ifc *api.InspectInterface) {
	if ifc.Name == "lo" {
		ifc.Note = "loopback"
		return
	}
	ctr, network, _, ok := linkAlias(ifc.Alias)
	if !ok {
		ifc.Unknown, ifc.Note = true, "not vxmesh's"
		return
	}
	ifc.Container, ifc.Network = ctr, network
	if n := v.cfg.NetworkByName(network); n != nil {
		ifc.Note = n.Driver + " network"
	}
	owner := c.Name
	if ctr != owner && !slices.Contains(c.SharedBy, ctr) {
		ifc.Unknown, ifc.Note = true, "made for container "+ctr+", not this namespace's: stale"
		return
	}
	if !v.attached(ctr, network) {
		ifc.Unknown, ifc.Note = true, "the container is not on this network in the agent's view: stale"
	}
}
