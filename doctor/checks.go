package doctor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vxmesh/vxmesh/config"
)

// AliasPrefix starts the alias of every link vxmesh makes (bridge/ and
// overlay/ both write "vxmesh:…").
const AliasPrefix = "vxmesh:"

// check is one check: a pure function of the facts.
type check func(f *Facts) []Result

// checks run in this order, which is also the printed order: the host
// first, then the cluster, then the paths to the peers, then leftovers.
var checks = []check{
	checkAgent, checkFeatures, checkIptables, checkConntrack, checkBrNetfilter,
	checkVXLANPorts, checkOffload, checkDuplicates, checkTiming, checkClocks,
	checkKeys, checkPaths, checkLeftovers,
}

// Evaluate runs every check over f.
func Evaluate(host string, f *Facts) *Report {
	r := &Report{Host: host}
	for _, c := range checks {
		r.Results = append(r.Results, c(f)...)
	}
	return r
}

func res(name string, s Status, evidence, fix string) Result {
	return Result{Check: name, Status: s, Evidence: evidence, Fix: fix}
}

func checkAgent(f *Facts) []Result {
	var out []Result
	switch {
	case f.Config != nil:
		out = append(out, res("config", OK, fmt.Sprintf("host %s at %s, %d networks", f.Config.Host.Name, f.Config.Host.Address, len(f.Config.Networks)), ""))
	case f.ConfigErr != "":
		out = append(out, res("config", Fail, f.ConfigErr, "fix the config: 'vxmesh validate FILE' lists every error"))
	default:
		out = append(out, res("config", Warn, "no config: checks that need the networks and peers are skipped", "give --config FILE, or start the agent"))
	}
	switch {
	case f.Status == nil:
		out = append(out, res("agent", Warn, "the agent does not answer: "+f.AgentErr, "start it ('systemctl start vxmesh' or 'vxmesh agent --config FILE'); its checks are skipped"))
	case f.Status.LastError != "":
		out = append(out, res("agent", Fail, "last reconcile pass failed: "+f.Status.LastError, "see the agent's log (journalctl -u vxmesh) and 'vxmesh status'"))
	default:
		var bad []string
		for _, c := range f.Status.Containers {
			if c.State == "error" {
				bad = append(bad, c.Name+": "+c.Error)
			}
		}
		if len(bad) > 0 {
			out = append(out, res("agent", Warn, fmt.Sprintf("%d containers in error: %s", len(bad), strings.Join(bad, "; ")), "'vxmesh status' shows why; the agent retries with backoff"))
		} else {
			out = append(out, res("agent", OK, fmt.Sprintf("host %s answers, %d peers, %d containers", f.Status.Host, len(f.Peers), len(f.Status.Containers)), ""))
		}
	}
	return out
}

// hasDriver reports whether the config has a network with driver d.
func hasDriver(c *config.Config, d string) bool {
	if c == nil {
		return false
	}
	for _, n := range c.Networks {
		if string(n.Driver) == d {
			return true
		}
	}
	return false
}

func checkFeatures(f *Facts) []Result {
	var out []Result
	for _, ft := range f.Kernel.Features {
		name := "kernel " + ft.Name
		if ft.OK {
			out = append(out, res(name, OK, ft.Name+" works (made one in a scratch namespace)", ""))
			continue
		}
		s := Fail
		if ft.Name == "macvlan" && !hasDriver(f.Config, "macvlan") {
			s = Warn // only macvlan networks need it
		}
		out = append(out, res(name, s, "cannot make a "+ft.Name+": "+ft.Err, "load the module (modprobe "+ft.Name+") or use a kernel with CONFIG_"+strings.ToUpper(ft.Name)))
	}
	return out
}

func checkIptables(f *Facts) []Result {
	k := f.Kernel
	if k.Iptables == "" {
		return []Result{res("iptables", Fail, "no usable iptables: "+k.IptablesErr, "install the iptables package")}
	}
	ev := fmt.Sprintf("iptables uses %s; rules in the host namespace: nf_tables %s, legacy %s", k.Iptables, count(k.NftRules), count(k.LegacyRules))
	if k.NftRules > 0 && k.LegacyRules > 0 {
		other := "iptables-legacy-save"
		if k.Iptables == "legacy" {
			other = "iptables-nft-save"
		}
		return []Result{res("iptables", Warn, ev+": both backends filter every packet, and rules in the one vxmesh does not use can drop its traffic silently",
			"see them with '"+other+"'; move them to the backend in use ('update-alternatives --config iptables') or remove them")}
	}
	return []Result{res("iptables", OK, ev, "")}
}

func count(n int) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.Itoa(n)
}

func checkConntrack(f *Facts) []Result {
	k := f.Kernel
	switch {
	case !k.Conntrack:
		return []Result{res("conntrack", OK, "nf_conntrack not loaded (no NAT in use yet; iptables loads it with the first NAT rule)", "")}
	case k.ConntrackMax > 0 && k.ConntrackCount*10 >= k.ConntrackMax*9:
		return []Result{res("conntrack", Fail, fmt.Sprintf("conntrack table %d/%d full: new connections are dropped", k.ConntrackCount, k.ConntrackMax),
			"raise net.netfilter.nf_conntrack_max, or find what opens so many connections (conntrack -L)")}
	}
	return []Result{res("conntrack", OK, fmt.Sprintf("nf_conntrack loaded, %d/%d entries", k.ConntrackCount, k.ConntrackMax), "")}
}

func checkBrNetfilter(f *Facts) []Result {
	k := f.Kernel
	switch {
	case !k.BrNetfilter:
		return []Result{res("br_netfilter", OK, "not loaded: traffic inside a bridge skips iptables", "")}
	case k.CallIptables == "1" && k.ForwardPolicy == "DROP":
		return []Result{res("br_netfilter", Warn, "loaded with bridge-nf-call-iptables=1 and FORWARD policy DROP: traffic between containers on one bridge passes that chain",
			"if containers on one host cannot reach each other, accept their bridges in FORWARD or set net.bridge.bridge-nf-call-iptables=0")}
	}
	return []Result{res("br_netfilter", OK, fmt.Sprintf("loaded, bridge-nf-call-iptables=%s, FORWARD policy %s", k.CallIptables, dashIfEmpty(k.ForwardPolicy)), "")}
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// overlayNet is an overlay network as the checks need it.
type overlayNet struct {
	name       string
	vni, port  int
	mtu        int
	device     string
	gatewayMAC string
}

// overlays lists the overlay networks, from the agent when it answers (it
// knows the derived VNI and MTU), else from the config.
func overlays(f *Facts) []overlayNet {
	var out []overlayNet
	if f.Status != nil {
		for _, n := range f.Status.Networks {
			if n.Driver == "overlay" {
				out = append(out, overlayNet{name: n.Name, vni: int(n.VNI), port: n.VXLANPort, mtu: n.MTU, device: n.VXLAN})
			}
		}
		for i := range out {
			for _, b := range inspectBridges(f) {
				if b.name == out[i].name {
					out[i].gatewayMAC = b.mac
				}
			}
		}
		return out
	}
	if f.Config != nil {
		for _, n := range f.Config.Networks {
			if string(n.Driver) == "overlay" {
				out = append(out, overlayNet{name: n.Name, vni: int(n.VNI), port: n.VXLANPort, mtu: n.MTU})
			}
		}
	}
	return out
}

type bridgeInfo struct{ name, mac string }

func inspectBridges(f *Facts) []bridgeInfo {
	if f.Inspect == nil {
		return nil
	}
	var out []bridgeInfo
	for _, b := range f.Inspect.Bridges {
		out = append(out, bridgeInfo{name: b.Network, mac: b.MAC})
	}
	return out
}

func checkVXLANPorts(f *Facts) []Result {
	var out []Result
	for _, o := range overlays(f) {
		var foreign []string
		external := false
		for _, l := range f.Kernel.Links {
			if l.Kind != "vxlan" || l.VXLANPort != o.port || strings.HasPrefix(l.Alias, AliasPrefix) || l.Name == o.device {
				continue
			}
			foreign = append(foreign, fmt.Sprintf("%s (vni %d)", l.Name, l.VNI))
			external = external || l.External
		}
		name := "vxlan port " + o.name
		switch {
		case len(foreign) == 0:
			out = append(out, res(name, OK, fmt.Sprintf("UDP %d is vxmesh's alone on this host", o.port), ""))
		case external:
			out = append(out, res(name, Fail, fmt.Sprintf("UDP %d is also used by %s, a VXLAN device in external (metadata) mode, which takes every VNI on that port", o.port, strings.Join(foreign, ", ")),
				fmt.Sprintf("give network %s another vxlan_port on every host, or move the other overlay (flannel, Calico, Cilium) to another port", o.name)))
		default:
			out = append(out, res(name, Warn, fmt.Sprintf("UDP %d is also used by %s, a VXLAN device vxmesh did not make; they must agree on every VNI and option", o.port, strings.Join(foreign, ", ")),
				fmt.Sprintf("give network %s its own vxlan_port on every host", o.name)))
		}
	}
	return out
}
