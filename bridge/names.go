package bridge

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// AliasPrefix starts the alias of every link vxmesh creates.
const AliasPrefix = "vxmesh:"

// DefaultEtcNetns is where `ip netns exec` looks for a namespace's name files.
const DefaultEtcNetns = "/etc/netns"

// Name files written for each container, as `ip netns exec` bind-mounts them
// over /etc.
const (
	FileHostname = "hostname"
	FileHosts    = "hosts"
	FileResolv   = "resolv.conf"
)

// NameFiles lists the files Reconciler writes (and may remove) per namespace.
var NameFiles = []string{FileHostname, FileHosts, FileResolv}

// hash8 is 8 hex digits of FNV-32a of s.
func hash8(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// HostVethName is the host end of the veth that attaches namespace netns to
// network: "vh" + 8 hex of FNV-32a(netns + "/" + network). It is stable, so
// a restarted agent finds its veths.
func HostVethName(netns, network string) string { return "vh" + hash8(netns+"/"+network) }

// NetworkAlias is the alias of a network's bridge.
func NetworkAlias(network string) string { return AliasPrefix + "net=" + network }

// ContainerAlias is the alias of both ends of a container's veth (and of its
// macvlan child) on network.
func ContainerAlias(container, network string) string {
	return AliasPrefix + "ctr=" + container + ",net=" + network
}

// parsedAlias is a decoded vxmesh link alias.
type parsedAlias struct {
	ctr, net string
}

// parseAlias decodes an alias written by NetworkAlias or ContainerAlias.
func parseAlias(a string) (parsedAlias, bool) {
	rest, ok := strings.CutPrefix(a, AliasPrefix)
	if !ok {
		return parsedAlias{}, false
	}
	var p parsedAlias
	for kv := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "ctr":
			p.ctr = v
		case "net":
			p.net = v
		}
	}
	return p, true
}

// isNetworkAlias reports whether a is the alias of one of our bridges.
func isNetworkAlias(a string) bool {
	p, ok := parseAlias(a)
	return ok && p.ctr == "" && p.net != "" && a == NetworkAlias(p.net)
}

// isContainerAlias reports whether a is the alias of one of our container
// links, and for which network.
func isContainerAlias(a string) (network string, ok bool) {
	p, ok := parseAlias(a)
	if !ok || p.ctr == "" || p.net == "" {
		return "", false
	}
	return p.net, true
}
