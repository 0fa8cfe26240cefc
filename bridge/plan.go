package bridge

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// OpKind names what an operation does.
type OpKind string

// Operation kinds.
const (
	OpCreateNetns     OpKind = "create netns"
	OpDeleteNetns     OpKind = "delete netns"
	OpForgetNetns     OpKind = "forget netns" // drop a namespace from the Record
	OpAddBridge       OpKind = "add bridge"
	OpAddVeth         OpKind = "add veth"
	OpAddMacvlan      OpKind = "add macvlan"
	OpAddIPvlan       OpKind = "add ipvlan"
	OpDeleteLink      OpKind = "delete link"
	OpSetAlias        OpKind = "set alias"
	OpSetUp           OpKind = "set up"
	OpSetMTU          OpKind = "set mtu"
	OpSetMaster       OpKind = "set master"
	OpSetMAC          OpKind = "set mac"
	OpAddAddr         OpKind = "add address"
	OpDelAddr         OpKind = "delete address"
	OpReplaceRoute    OpKind = "set default route"
	OpSetSysctl       OpKind = "set sysctl"
	OpSetHairpin      OpKind = "set hairpin"
	OpWriteFile       OpKind = "write file"
	OpRemoveFile      OpKind = "remove file"
	OpRemoveDir       OpKind = "remove dir"
	OpSyncFirewall    OpKind = "sync firewall"
	OpRemoveFirewall  OpKind = "remove firewall"
	OpAnnounce        OpKind = "announce"     // gratuitous ARP (IPv4) or unsolicited NA (IPv6) for Addr from Link
	opRecordNamespace OpKind = "record netns" // internal: note a namespace before touching it
)

// Op is one step of a plan. Only the fields its Kind needs are set.
type Op struct {
	Kind OpKind
	// Netns is where the object lives ("" is the host namespace); for
	// OpAddVeth it is the namespace of the peer.
	Netns string
	// Link is the link the op is about (for OpAddVeth: the host end).
	Link string
	// Peer is the veth peer's name inside Netns, or a macvlan/ipvlan parent.
	Peer    string
	Master  string
	Alias   string
	MTU     int
	MAC     net.HardwareAddr
	Addr    netip.Prefix
	Gateway netip.Addr
	// On is the wanted hairpin mode.
	On bool
	// Sysctl and Value are a sysctl's /proc/sys path and wanted value.
	Sysctl, Value string
	// File is the path of a name file or directory.
	File    string
	Content []byte
	// NAT and Filter are the chains of OpSyncFirewall; NAT6 and Filter6
	// those of ip6tables.
	NAT, Filter   []ipt.Chain
	NAT6, Filter6 []ipt.Chain

	// Container and Network own the op: they name it in logs, and a failed
	// op fails its owner.
	Container string
	Network   string
	// Reason says why the op is needed.
	Reason string
}

// where names a link with its namespace: "vh1234abcd" or "web1:eth0".
func where(ns, link string) string {
	if ns == "" {
		return link
	}
	return ns + ":" + link
}

// String prints the op and its reason, for logs and test failures.
func (o Op) String() string {
	s := o.Describe()
	if o.Reason != "" {
		s += " (" + o.Reason + ")"
	}
	return s
}

// Describe prints the op without its reason.
func (o Op) Describe() string {
	var s string
	switch o.Kind {
	case OpCreateNetns, OpDeleteNetns, OpForgetNetns, opRecordNamespace:
		s = fmt.Sprintf("%s %s", o.Kind, o.Netns)
	case OpAddBridge:
		s = fmt.Sprintf("add bridge %s mtu %d mac %s", o.Link, o.MTU, o.MAC)
	case OpAddVeth:
		s = fmt.Sprintf("add veth %s on %s <-> %s mac %s", o.Link, o.Master, where(o.Netns, o.Peer), o.MAC)
	case OpAddMacvlan, OpAddIPvlan:
		s = fmt.Sprintf("%s %s on %s", o.Kind, where(o.Netns, o.Link), o.Peer)
		if o.MAC != nil {
			s += " mac " + o.MAC.String()
		}
	case OpDeleteLink, OpSetUp:
		s = fmt.Sprintf("%s %s", o.Kind, where(o.Netns, o.Link))
	case OpSetAlias:
		s = fmt.Sprintf("set alias of %s to %q", where(o.Netns, o.Link), o.Alias)
	case OpSetMTU:
		s = fmt.Sprintf("set mtu of %s to %d", where(o.Netns, o.Link), o.MTU)
	case OpSetMaster:
		s = fmt.Sprintf("set master of %s to %s", o.Link, o.Master)
	case OpSetMAC:
		s = fmt.Sprintf("set mac of %s to %s", where(o.Netns, o.Link), o.MAC)
	case OpAddAddr:
		s = fmt.Sprintf("add address %s to %s", o.Addr, where(o.Netns, o.Link))
	case OpDelAddr:
		s = fmt.Sprintf("delete address %s from %s", o.Addr, where(o.Netns, o.Link))
	case OpAnnounce:
		s = fmt.Sprintf("announce %s from %s", o.Addr.Addr(), where(o.Netns, o.Link))
	case OpReplaceRoute:
		s = fmt.Sprintf("set default route of %s via %s dev %s", o.Netns, o.Gateway, o.Link)
	case OpSetSysctl:
		s = fmt.Sprintf("set sysctl %s to %s", o.Sysctl, o.Value)
	case OpSetHairpin:
		s = fmt.Sprintf("set hairpin of %s to %v", o.Link, o.On)
	case OpWriteFile, OpRemoveFile, OpRemoveDir:
		s = fmt.Sprintf("%s %s", o.Kind, o.File)
	default:
		s = string(o.Kind)
	}
	return s
}

// Plan is the difference between a desired and an actual state.
type Plan struct {
	// Ops in the order they must run: removals first, then networks, then
	// containers, then the firewall.
	Ops []Op
	// ContainerErrors are containers that cannot be set up as wanted (a
	// link of one of their names exists and is not ours, a network is
	// missing); their ops are left out.
	ContainerErrors map[string]error
	// NetworkErrors likewise for networks.
	NetworkErrors map[string]error
	// ContainerNetworks lists each container's networks: a container whose
	// network fails while applying fails too.
	ContainerNetworks map[string][]string
	// MACs seen on existing interfaces, by MACKey, for the Record.
	MACs map[string]string
}

// String prints one op per line.
func (p *Plan) String() string {
	var b strings.Builder
	for _, o := range p.Ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Changes returns the ops that change something for certain: every op but
// the firewall syncs (which write only when the chains differ), the
// announcements (packets, no state) and the internal bookkeeping ones.
func (p *Plan) Changes() []Op {
	var out []Op
	for _, o := range p.Ops {
		switch o.Kind {
		case OpSyncFirewall, OpRemoveFirewall, OpAnnounce, opRecordNamespace:
			continue
		case OpSetSysctl:
			if o.Value == "" {
				continue
			}
		}
		out = append(out, o)
	}
	return out
}

// Planner computes plans.
type Planner struct {
	// EtcNetns is the root of the name files; default DefaultEtcNetns.
	EtcNetns string
	// NewMAC makes the MAC of a new bridge, and of a new interface that has
	// none wanted and no IPv4 address to derive one from (AddrMAC); default
	// RandomMAC.
	NewMAC func() net.HardwareAddr
}

// RandomMAC returns a random locally administered unicast MAC.
func RandomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	if _, err := rand.Read(m); err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	m[0] = m[0]&0xfe | 0x02
	return m
}

func (pl Planner) etc() string {
	if pl.EtcNetns == "" {
		return DefaultEtcNetns
	}
	return pl.EtcNetns
}

func (pl Planner) newMAC() net.HardwareAddr {
	if pl.NewMAC != nil {
		return pl.NewMAC()
	}
	return RandomMAC()
}

// planner holds one Plan computation.
type planner struct {
	Planner
	want *State
	have *Actual
	rec  Record
	p    *Plan
	nets map[string]*Network
	// macs holds, by network, the MACs wanted or kept by the containers
	// that stay: a derived MAC already taken (an interface whose address
	// changed in place keeps the MAC of its old address) is not handed out
	// twice.
	macs map[string]map[string]bool
}

// Plan computes the ops that take the kernel from have to want. rec tells
// which namespaces are ours.
func (pl Planner) Plan(want *State, have *Actual, rec Record) *Plan {
	x := &planner{Planner: pl, want: want, have: have, rec: rec, nets: map[string]*Network{}, p: &Plan{
		ContainerErrors:   map[string]error{},
		NetworkErrors:     map[string]error{},
		ContainerNetworks: map[string][]string{},
		MACs:              map[string]string{},
	}}
	wantHost := map[string]bool{}
	hasBridge, hasV6 := false, false
	for i := range want.Networks {
		n := &want.Networks[i]
		x.nets[n.Name] = n
		if n.Driver == DriverBridge {
			wantHost[n.Device] = true
			hasBridge = true
			hasV6 = hasV6 || n.Subnet6.IsValid()
		}
	}
	wantNetns := map[string]bool{}
	for _, c := range want.Containers {
		wantNetns[c.Netns] = true
		x.p.ContainerNetworks[c.Name] = []string{}
		for _, ifc := range c.Interfaces {
			x.p.ContainerNetworks[c.Name] = append(x.p.ContainerNetworks[c.Name], ifc.Network)
			if n := x.nets[ifc.Network]; n != nil && n.Driver == DriverBridge {
				wantHost[HostVethName(c.Netns, ifc.Network)] = true
			}
			if c.HostPlaced && ifc.HostPeer != "" {
				wantHost[ifc.HostPeer] = true
			}
		}
	}

	// 1. Namespaces of containers that are gone.
	var known []string
	for _, ns := range append(slices.Clone(rec.Namespaces), rec.CreatedNetns...) {
		if !slices.Contains(known, ns) {
			known = append(known, ns)
		}
	}
	slices.Sort(known)
	for _, ns := range known {
		if !wantNetns[ns] {
			x.staleNetns(ns)
		}
	}

	// 2. Host links of ours that nothing wants any more.
	for _, l := range have.Host {
		if wantHost[l.Name] {
			continue
		}
		if net, ok := isContainerAlias(l.Alias); ok && l.Kind == "veth" {
			pa, _ := parseAlias(l.Alias)
			x.add(Op{Kind: OpDeleteLink, Link: l.Name, Container: pa.ctr, Network: net, Reason: "container no longer on network"})
		} else if isNetworkAlias(l.Alias) && l.Kind == "bridge" {
			pa, _ := parseAlias(l.Alias)
			x.add(Op{Kind: OpDeleteLink, Link: l.Name, Network: pa.net, Reason: "network removed"})
		}
	}

	// 3. Sysctls: set while there are bridge networks; put back what we
	// changed on cleanup.
	x.sysctls(hasBridge, hasV6)

	// 4. Networks, 5. containers.
	for i := range want.Networks {
		x.network(&want.Networks[i])
	}
	x.macs = usedMACs(want, have)
	for i := range want.Containers {
		if want.Containers[i].HostPlaced {
			x.hostPlaced(&want.Containers[i])
			continue
		}
		x.container(&want.Containers[i])
	}

	// 6. Firewall.
	if hasBridge {
		nat, filter := Firewall(want.Networks, want.Ports)
		nat6, filter6 := Firewall6(want.Networks, want.Ports)
		x.add(Op{Kind: OpSyncFirewall, NAT: nat, Filter: filter, NAT6: nat6, Filter6: filter6, Reason: "networks in config"})
	} else {
		x.add(Op{Kind: OpRemoveFirewall, Reason: "no bridge network"})
	}
	return x.p
}

func (x *planner) add(ops ...Op) { x.p.Ops = append(x.p.Ops, ops...) }

// sysctls sets the host sysctls bridge networks need (the IPv6 ones only
// when a network has an IPv6 subnet), or puts back what vxmesh changed.
func (x *planner) sysctls(hasBridge, hasV6 bool) {
	if hasBridge {
		set := HostSysctls
		if hasV6 {
			set = append(slices.Clone(set), HostSysctls6...)
		}
		for _, s := range set {
			if v, ok := x.have.Sysctls[s.Key]; ok && v != s.Value {
				x.add(Op{Kind: OpSetSysctl, Sysctl: s.Key, Value: s.Value, Reason: "bridge networks route through the host"})
			}
		}
		return
	}
	if !x.want.RestoreSysctls {
		return
	}
	keys := make([]string, 0, len(x.rec.Sysctls))
	for k := range x.rec.Sysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := x.have.Sysctls[k]; ok && v != x.rec.Sysctls[k] {
			x.add(Op{Kind: OpSetSysctl, Sysctl: k, Value: x.rec.Sysctls[k], Reason: "restore what vxmesh found"})
		} else {
			x.add(Op{Kind: OpSetSysctl, Sysctl: k, Reason: "forget"})
		}
	}
}

// staleNetns removes what we made in a namespace no container wants.
func (x *planner) staleNetns(ns string) {
	if !netnsutil.ValidName(ns) && !netnsutil.IsPath(ns) {
		x.add(Op{Kind: OpForgetNetns, Netns: ns, Reason: "invalid name in record"})
		return
	}
	st := x.have.Netns[ns]
	const why = "container removed"
	if st != nil && st.Exists {
		if x.rec.created(ns) {
			// A namespace dies asynchronously, its links with it; a macvlan
			// child's MAC (derived from its address) stays taken on the
			// parent until then, and a new container with that address
			// could not come up. Delete those first: that is synchronous.
			for _, l := range st.Links {
				if net, ok := isContainerAlias(l.Alias); ok && l.Kind == DriverMacvlan {
					pa, _ := parseAlias(l.Alias)
					x.add(Op{Kind: OpDeleteLink, Netns: ns, Link: l.Name, Container: pa.ctr, Network: net, Reason: why + ": free its MAC at once"})
				}
			}
			x.add(Op{Kind: OpDeleteNetns, Netns: ns, Reason: why})
		} else {
			for _, l := range st.Links {
				if net, ok := isContainerAlias(l.Alias); ok {
					pa, _ := parseAlias(l.Alias)
					x.add(Op{Kind: OpDeleteLink, Netns: ns, Link: l.Name, Container: pa.ctr, Network: net, Reason: why})
				}
			}
		}
	}
	dir := filepath.Join(x.etc(), ns)
	files := x.have.Files[ns]
	for _, name := range NameFiles {
		if _, ok := files[name]; ok {
			x.add(Op{Kind: OpRemoveFile, Netns: ns, File: filepath.Join(dir, name), Reason: why})
		}
	}
	if len(files) > 0 {
		x.add(Op{Kind: OpRemoveDir, Netns: ns, File: dir, Reason: why})
	}
	x.add(Op{Kind: OpForgetNetns, Netns: ns, Reason: why})
}

// network makes a network's host side.
func (x *planner) network(n *Network) {
	fail := func(format string, a ...any) { x.p.NetworkErrors[n.Name] = fmt.Errorf(format, a...) }
	switch n.Driver {
	case DriverBridge:
		var ops []Op
		l := linkByName(x.have.Host, n.Device)
		alias := NetworkAlias(n.Name)
		var have []netip.Prefix
		if l == nil {
			// A bridge whose MAC is not set follows its lowest port's MAC, so
			// a container leaving would change the gateway's MAC under the
			// others' ARP caches. Give it one of its own.
			mac := n.MAC
			if mac == nil {
				mac = x.newMAC()
			}
			ops = append(ops, Op{Kind: OpAddBridge, Link: n.Device, Alias: alias, MTU: n.MTU, MAC: mac, Network: n.Name, Reason: "network in config"})
		} else {
			if l.Kind != "bridge" {
				fail("link %q exists and is not a bridge (kind %s)", n.Device, l.Kind)
				return
			}
			if !strings.HasPrefix(l.Alias, AliasPrefix) {
				fail("bridge %q exists and was not created by vxmesh (no %q alias)", n.Device, AliasPrefix)
				return
			}
			if l.Alias != alias {
				ops = append(ops, Op{Kind: OpSetAlias, Link: n.Device, Alias: alias, Network: n.Name, Reason: "bridge now serves this network"})
			}
			if n.MTU != 0 && l.MTU != n.MTU {
				ops = append(ops, Op{Kind: OpSetMTU, Link: n.Device, MTU: n.MTU, Network: n.Name, Reason: "mtu in config"})
			}
			if n.MAC != nil && !bytes.Equal(l.MAC, n.MAC) {
				ops = append(ops, Op{Kind: OpSetMAC, Link: n.Device, MAC: n.MAC, Network: n.Name, Reason: "shared gateway mac"})
			}
			have = l.Addrs
		}
		var want []netip.Prefix
		if n.Gateway.IsValid() {
			want = append(want, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
		}
		if n.Gateway6.IsValid() {
			want = append(want, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
		}
		ops = append(ops, addrOps("", n.Device, have, want, "", n.Name, "gateway of network")...)
		if l != nil && !l.Up {
			ops = append(ops, Op{Kind: OpSetUp, Link: n.Device, Network: n.Name, Reason: "bridge down"})
		}
		x.add(ops...)
	case DriverMacvlan, DriverIPvlan:
		if n.Parent == "" {
			fail("%s network has no parent link", n.Driver)
		} else if linkByName(x.have.Host, n.Parent) == nil {
			fail("parent link %q of %s network not found", n.Parent, n.Driver)
		}
	default:
		fail("unknown driver %q", n.Driver)
	}
}

// addrOps makes link hold exactly want among its addresses.
func addrOps(ns, link string, have, want []netip.Prefix, ctr, network, why string) []Op {
	var ops []Op
	for _, a := range have {
		if !slices.Contains(want, a) {
			ops = append(ops, Op{Kind: OpDelAddr, Netns: ns, Link: link, Addr: a, Container: ctr, Network: network, Reason: "address not in config"})
		}
	}
	for _, a := range want {
		if !slices.Contains(have, a) {
			ops = append(ops, Op{Kind: OpAddAddr, Netns: ns, Link: link, Addr: a, Container: ctr, Network: network, Reason: why})
		}
	}
	return ops
}
