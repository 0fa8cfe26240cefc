package portmap

import (
	"cmp"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// The chains portmap fills (see docs/architecture.md, "iptables layout").
const (
	// ChainDNAT (nat) holds one DNAT per mapping; PREROUTING and OUTPUT
	// jump to it for local destinations (Jumps).
	ChainDNAT = "VXMESH-DNAT"
	// ChainHairpin (nat) holds the MASQUERADE for a container reaching its
	// own published port; bridge's VXMESH-POSTROUTING jumps to it.
	ChainHairpin = "VXMESH-HAIRPIN"
	// ChainPublished (filter) accepts DNATed traffic to published container
	// ports; bridge's VXMESH-FORWARD jumps to it before the isolation rules.
	ChainPublished = "VXMESH-PUBLISHED"
)

// Jumps are the rules in built-in chains that lead into ChainDNAT: one for
// traffic arriving at a local address, one for the host's own traffic to a
// local non-loopback address (so `curl HOSTADDR:8080` on the host works).
func Jumps() []ipt.Jump {
	return []ipt.Jump{
		{Table: "nat", From: "PREROUTING", Rule: "-m addrtype --dst-type LOCAL -j " + ChainDNAT},
		{Table: "nat", From: "OUTPUT", Rule: "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j " + ChainDNAT},
	}
}

// SplitFamilies splits mappings into IPv4 ones (for Rules on iptables)
// and IPv6 ones (for Rules on ip6tables), keeping their order.
func SplitFamilies(ms []Mapping) (v4, v6 []Mapping) {
	for _, m := range ms {
		if isV6(m) {
			v6 = append(v6, m)
		} else {
			v4 = append(v4, m)
		}
	}
	return v4, v6
}

// maxComment is the longest comment the kernel keeps (XT_MAX_COMMENT_LEN
// less the NUL).
const maxComment = 255

// CommentPrefix starts the comment of every rule portmap writes; the next
// word is the container's name.
const CommentPrefix = "vxmesh "

// comment returns the -m comment text for a rule of container: "vxmesh
// NAME TAIL", the name shortened with a hash when it would not fit.
func comment(container, tail string) string {
	if room := maxComment - len(CommentPrefix) - 1 - len(tail); len(container) > room {
		h := fnv.New32a()
		h.Write([]byte(container))
		sum := strconv.FormatUint(uint64(h.Sum32()), 16)
		keep := max(room-len(sum)-1, 0)
		container = container[:keep] + "~" + sum
	}
	return CommentPrefix + container + " " + tail
}

// ContainerOfRule returns the container named in the comment of a rule
// line portmap wrote (as `iptables -S` prints it), for `vxmesh inspect`.
// A name that was too long for the comment comes back shortened
// ("NAME~HASH").
func ContainerOfRule(rule string) (string, bool) {
	_, after, ok := strings.Cut(rule, ` --comment "`+CommentPrefix)
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(after, " ")
	return name, ok && name != ""
}

// hostPrefix writes an address as the single-address prefix iptables prints.
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// Rules returns the contents of the chains portmap owns for the given
// mappings, in the form `iptables -S` prints them: nat holds ChainDNAT and
// ChainHairpin, filter holds ChainPublished. Chains are returned even when
// empty, so syncing them removes the rules of mappings that went away. The
// mappings must be of one IP version (SplitFamilies: IPv4 for iptables,
// IPv6 for ip6tables, where addresses read "fd00::2/128" and
// "[fd00::2]:80" as ip6tables -S prints them); rules come out sorted,
// whatever the order of the mappings.
//
// Per mapping, with C = "vxmesh CONTAINER CPORT/PROTO":
//
//	VXMESH-DNAT      [-d HOSTIP/32] -p P -m P --dport HPORT -m comment --comment "C -> HOST:HPORT" -j DNAT --to-destination CIP:CPORT
//	VXMESH-HAIRPIN   -s CIP/32 -d CIP/32 -p P -m P --dport CPORT -m comment --comment "C" -j MASQUERADE
//	VXMESH-PUBLISHED -d CIP/32 ! -i BR -o BR -p P -m P --dport CPORT -m conntrack --ctstate DNAT -m comment --comment "C" -j ACCEPT
//
// The hairpin and accept rules are per container port, shared by all host
// ports that lead to it.
func Rules(mappings []Mapping) (nat, filter []ipt.Chain) {
	ms := slices.Clone(mappings)
	slices.SortFunc(ms, func(a, b Mapping) int {
		return cmp.Or(
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.HostPort, b.HostPort),
			a.HostIP.Compare(b.HostIP),
			cmp.Compare(a.Container, b.Container),
			cmp.Compare(a.ContainerPort, b.ContainerPort),
			a.ContainerIP.Compare(b.ContainerIP),
			cmp.Compare(a.Bridge, b.Bridge),
		)
	})
	dnat := ipt.Chain{Name: ChainDNAT, Rules: []string{}}
	ms = slices.Compact(ms)
	for _, m := range ms {
		var r strings.Builder
		if m.HostIP.IsValid() {
			r.WriteString("-d " + hostPrefix(m.HostIP) + " ")
		}
		r.WriteString(protoMatch(m.Proto, m.HostPort))
		r.WriteString(` -m comment --comment "` + comment(m.Container, m.containerSide()+" -> "+m.hostSide()) + `"`)
		r.WriteString(" -j DNAT --to-destination " + netip.AddrPortFrom(m.ContainerIP, m.ContainerPort).String())
		dnat.Rules = append(dnat.Rules, r.String())
	}

	// One hairpin and one accept rule per container port.
	slices.SortFunc(ms, func(a, b Mapping) int {
		return cmp.Or(
			a.ContainerIP.Compare(b.ContainerIP),
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.ContainerPort, b.ContainerPort),
			cmp.Compare(a.Bridge, b.Bridge),
			cmp.Compare(a.Container, b.Container),
		)
	})
	ms = slices.CompactFunc(ms, func(a, b Mapping) bool {
		return a.ContainerIP == b.ContainerIP && a.Proto == b.Proto && a.ContainerPort == b.ContainerPort &&
			a.Bridge == b.Bridge && a.Container == b.Container
	})
	hairpin := ipt.Chain{Name: ChainHairpin, Rules: []string{}}
	published := ipt.Chain{Name: ChainPublished, Rules: []string{}}
	for _, m := range ms {
		cip := hostPrefix(m.ContainerIP)
		match := protoMatch(m.Proto, m.ContainerPort)
		c := `-m comment --comment "` + comment(m.Container, m.containerSide()) + `"`
		hairpin.Rules = append(hairpin.Rules,
			"-s "+cip+" -d "+cip+" "+match+" "+c+" -j MASQUERADE")
		published.Rules = append(published.Rules,
			"-d "+cip+" ! -i "+m.Bridge+" -o "+m.Bridge+" "+match+" -m conntrack --ctstate DNAT "+c+" -j ACCEPT")
	}
	return []ipt.Chain{dnat, hairpin}, []ipt.Chain{published}
}

func protoMatch(proto string, port uint16) string {
	return "-p " + proto + " -m " + proto + " --dport " + strconv.Itoa(int(port))
}
