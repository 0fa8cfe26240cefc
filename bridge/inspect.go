package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// Readers for `vxmesh inspect`: what the kernel has, read back as plain
// values, for the agent to explain (agent/explain). They never write.

// BridgeAttrs are what `brctl show` says of a bridge beyond its ports.
type BridgeAttrs struct {
	STP bool
	// ID is the bridge id as brctl prints it: "8000.06cd9936a3c5".
	ID string
}

// ReadBridgeAttrs dumps the links of namespace ns (netns.None(): the
// current one) and returns the STP state and bridge id of each bridge by
// index. The netlink library does not decode those attributes, so the
// dump is parsed here.
func ReadBridgeAttrs(ns netns.NsHandle) (map[int]BridgeAttrs, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	defer s.Close()
	msgs, err := nlsafe.Dump(func() ([][]byte, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	})
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", err)
	}
	return parseBridgeAttrs(msgs), nil
}

// parseBridgeAttrs reads the bridges' attributes out of RTM_NEWLINK
// messages, by link index; messages it cannot parse are skipped.
func parseBridgeAttrs(msgs [][]byte) map[int]BridgeAttrs {
	out := map[int]BridgeAttrs{}
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := nl.DeserializeIfInfomsg(m)
		attrs, err := routeAttrs(m[unix.SizeofIfInfomsg:])
		if err != nil {
			continue
		}
		if at, ok := parseBridgeInfo(attrs); ok {
			out[int(ifi.Index)] = at
		}
	}
	return out
}

// routeAttrs splits netlink attributes. Unlike nl.ParseRouteAttr it
// checks every length against the buffer, so malformed bytes are an error,
// not a panic.
func routeAttrs(b []byte) ([]syscall.NetlinkRouteAttr, error) {
	var out []syscall.NetlinkRouteAttr
	for len(b) >= unix.SizeofRtAttr {
		n := int(nl.NativeEndian().Uint16(b[0:2]))
		if n < unix.SizeofRtAttr || n > len(b) {
			return nil, fmt.Errorf("netlink attribute of length %d in %d bytes", n, len(b))
		}
		out = append(out, syscall.NetlinkRouteAttr{
			Attr:  syscall.RtAttr{Len: uint16(n), Type: nl.NativeEndian().Uint16(b[2:4])},
			Value: b[unix.SizeofRtAttr:n],
		})
		b = b[min(len(b), (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return out, nil
}

// nlaTypeMask strips the nested and byte-order flags off an attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// parseBridgeInfo finds IFLA_LINKINFO of kind "bridge" and reads its
// IFLA_BR_STP_STATE and IFLA_BR_BRIDGE_ID.
func parseBridgeInfo(attrs []syscall.NetlinkRouteAttr) (BridgeAttrs, bool) {
	for _, a := range attrs {
		if a.Attr.Type&nlaTypeMask != unix.IFLA_LINKINFO {
			continue
		}
		info, err := routeAttrs(a.Value)
		if err != nil {
			return BridgeAttrs{}, false
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
			return BridgeAttrs{}, false
		}
		return parseBridgeData(data), true
	}
	return BridgeAttrs{}, false
}

// parseBridgeData reads IFLA_INFO_DATA of a bridge.
func parseBridgeData(data []byte) BridgeAttrs {
	var at BridgeAttrs
	br, err := routeAttrs(data)
	if err != nil {
		return at
	}
	for _, b := range br {
		switch b.Attr.Type & nlaTypeMask {
		case unix.IFLA_BR_STP_STATE:
			if len(b.Value) >= 4 {
				at.STP = nl.NativeEndian().Uint32(b.Value) != 0
			}
		case unix.IFLA_BR_BRIDGE_ID:
			if len(b.Value) >= 8 {
				at.ID = fmt.Sprintf("%02x%02x.%x", b.Value[0], b.Value[1], b.Value[2:8])
			}
		}
	}
	return at
}

// ChainRules is one iptables chain as read back: one of ours with all its
// rules, or a built-in chain with only its jumps into ours.
type ChainRules struct {
	Table string
	Chain string
	// Builtin marks a built-in chain.
	Builtin bool
	// Rules as `iptables -t TABLE -S` prints them ("-A CHAIN …").
	Rules []string
}

// builtinJumps are the built-in chains vxmesh jumps from, per table.
var builtinJumps = map[string][]string{
	"nat":    {"PREROUTING", "OUTPUT", "POSTROUTING"},
	"filter": {"FORWARD"},
}

// chainOrder is the order our chains are listed in (the order traffic
// meets them); other chains of ours follow by name.
var chainOrder = []string{
	ChainDNAT, ChainPostrouting, ChainHairpin,
	ChainForward, ChainPublished, ChainIsolation,
}

// ReadChains lists, per table, the jumps into our chains from the
// built-in ones, then each of our chains with all its rules.
func ReadChains(it ipt.Iptables) ([]ChainRules, []error) {
	out := []ChainRules{}
	var errs []error
	for _, table := range []string{"nat", "filter"} {
		out, errs = readJumps(it, table, out, errs)
		out, errs = readOurChains(it, table, out, errs)
	}
	return out, errs
}

// readJumps appends the built-in chains of table that jump into ours,
// with only those jumps.
func readJumps(it ipt.Iptables, table string, out []ChainRules, errs []error) ([]ChainRules, []error) {
	for _, from := range builtinJumps[table] {
		rules, err := it.Rules(table, from)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := ChainRules{Table: table, Chain: from, Builtin: true, Rules: []string{}}
		for _, r := range rules {
			if JumpTarget(r) != "" {
				c.Rules = append(c.Rules, r)
			}
		}
		if len(c.Rules) > 0 {
			out = append(out, c)
		}
	}
	return out, errs
}

// readOurChains appends our chains of table with all their rules, in
// chainOrder.
func readOurChains(it ipt.Iptables, table string, out []ChainRules, errs []error) ([]ChainRules, []error) {
	names, err := it.ListChains(table, ChainPrefix)
	if err != nil {
		return out, append(errs, err)
	}
	slices.SortFunc(names, compareChains)
	for _, name := range names {
		rules, err := it.Rules(table, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ChainRules{Table: table, Chain: name, Rules: append([]string{}, rules...)})
	}
	return out, errs
}

// compareChains orders chain names as chainOrder, others after by name.
func compareChains(x, y string) int {
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
}

// JumpTarget is the chain of ours a rule jumps or goes to, "" for none.
func JumpTarget(rule string) string {
	w, _ := ipt.RuleFields(rule)
	for i := 0; i+1 < len(w); i++ {
		if (w[i] == "-j" || w[i] == "-g") && strings.HasPrefix(w[i+1], ChainPrefix) {
			return w[i+1]
		}
	}
	return ""
}

// Namespace is a container namespace as read from inside.
type Namespace struct {
	// Exists tells whether the namespace is there; nothing else is read
	// when it is not.
	Exists bool
	// Links are its links; LinksErr why they could not be read (then
	// the routes are not read either).
	Links    []Link
	LinksErr error
	// Routes are its main routing table as `ip route` prints it; on
	// RoutesErr, those read before the error.
	Routes    []string
	RoutesErr error
	// EtcDir is the namespace's name-file directory; Files tells which
	// of NameFiles it holds.
	EtcDir string
	Files  map[string]bool
}

// ReadNamespace reads namespace ns from inside: links, routes, and which
// name files etcDir holds.
func ReadNamespace(k Kernel, ns, etcDir string) Namespace {
	out := Namespace{EtcDir: etcDir, Files: map[string]bool{}}
	for _, f := range NameFiles {
		_, err := os.Stat(filepath.Join(etcDir, f))
		out.Files[f] = err == nil
	}
	if !k.NetnsExists(ns) {
		return out
	}
	out.Exists = true
	out.Links, out.LinksErr = k.Links(ns)
	if out.LinksErr != nil {
		return out
	}
	out.Routes, out.RoutesErr = readRoutes(ns)
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
	if ls, err := nlsafe.Dump(h.LinkList); err == nil {
		for _, l := range ls {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := nlsafe.Dump(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
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

// routeLine prints a route the way `ip route` does, names being the link
// names by index; "" for IPv6 link-local and multicast routes, which the
// kernel adds by itself.
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
