package doctor

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vxmesh/vxmesh/gossip"
)

// kernelVersion parses "6.12.3-foo" into 6, 12.
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	minor, err2 := strconv.Atoi(minorStr)
	return major, minor, err1 == nil && err2 == nil
}

// virtualDrivers are underlay drivers with no NIC behind them: checksum
// offload there is a software shortcut, not hardware.
var virtualDrivers = []string{"veth", "bridge", "dummy", "vxlan", "macvlan", "ipvlan", "bond", "team", "vlan", "tun"}

// checkOffload flags the known kernel/driver cases where TX checksum
// offload on a VXLAN device breaks or slows TCP: kernels before 5.7 with
// NAT on the path compute wrong checksums (calico#3145, kubernetes#88986;
// Calico switches the offload off there), and on 6.12+ a VXLAN device with
// tx-checksum-ip-generic on over a real NIC runs at a fraction of line rate
// (calico#11435).
func checkOffload(f *Facts) []Result {
	major, minor, ok := kernelVersion(f.Kernel.Release)
	if !ok {
		return []Result{res("checksum offload", Skip, "kernel release "+strconv.Quote(f.Kernel.Release)+" not understood", "")}
	}
	var on []string
	for _, l := range f.Kernel.Links {
		if l.Kind == "vxlan" && strings.HasPrefix(l.Alias, AliasPrefix) && l.TxChecksum != nil && *l.TxChecksum {
			on = append(on, l.Name)
		}
	}
	under := underlayLink(f)
	ev := fmt.Sprintf("kernel %s", f.Kernel.Release)
	if under != nil {
		ev += fmt.Sprintf(", underlay %s driver %s", under.Name, dashIfEmpty(under.Driver))
	}
	if len(on) == 0 {
		return []Result{res("checksum offload", OK, ev+", no vxmesh VXLAN device with tx checksum offload on", "")}
	}
	ev += ", tx checksum offload on " + strings.Join(on, ", ")
	fix := "ethtool -K DEV tx off for each (" + strings.Join(on, ", ") + "), e.g. from an ExecStartPost= of the unit"
	switch {
	case major < 5 || major == 5 && minor < 7:
		return []Result{res("checksum offload", Fail, ev+": kernels before 5.7 write wrong checksums for VXLAN behind NAT, and TCP stalls (calico#3145, kubernetes#88986)", fix)}
	case (major > 6 || major == 6 && minor >= 12) && under != nil && !slices.Contains(virtualDrivers, under.Driver):
		fix = strings.Replace(fix, "tx off", "tx-checksum-ip-generic off", 1)
		return []Result{res("checksum offload", Warn, ev+": on 6.12+ kernels this can cap VXLAN throughput at a fraction of the NIC's (calico#11435)", fix)}
	}
	return []Result{res("checksum offload", OK, ev+": not a known-bad kernel and driver", "")}
}

// underlayLink is the link holding the host's underlay address.
func underlayLink(f *Facts) *Link {
	addr := hostAddress(f)
	if !addr.IsValid() {
		return nil
	}
	for i, l := range f.Kernel.Links {
		for _, p := range l.Addrs {
			if p.Addr() == addr {
				return &f.Kernel.Links[i]
			}
		}
	}
	return nil
}

func checkDuplicates(f *Facts) []Result {
	var out []Result
	if addr := hostAddress(f); addr.IsValid() && len(f.Kernel.Links) > 0 && underlayLink(f) == nil {
		out = append(out, res("host address", Fail, fmt.Sprintf("host.address %s is on no link of this host", addr), "put the underlay address on a link, or fix host.address"))
	}
	if f.Peers == nil {
		return append(out, res("duplicates", Skip, "no peers known (agent not answering or no cluster)", ""))
	}
	byName, byAddr := map[string][]string{}, map[string][]string{}
	for _, p := range f.Peers {
		if p.State == "left" || p.State == "dead" {
			continue // a dead member's address may be a live one's now
		}
		n := strings.ToLower(p.Name)
		byName[n] = appendNew(byName[n], p.Address)
		byAddr[p.Address] = appendNew(byAddr[p.Address], p.Name)
	}
	var dups []string
	for n, addrs := range byName {
		if len(addrs) > 1 {
			dups = append(dups, fmt.Sprintf("name %s at %s", n, strings.Join(addrs, " and ")))
		}
	}
	for a, names := range byAddr {
		if len(names) > 1 {
			dups = append(dups, fmt.Sprintf("address %s claimed by %s", a, strings.Join(names, " and ")))
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		return append(out, res("duplicates", Fail, strings.Join(dups, "; "), "give every host a unique host.name and host.address ('vxmesh validate a.yaml b.yaml …' checks several hosts' files)"))
	}
	out = append(out, res("duplicates", OK, fmt.Sprintf("%d members, names and addresses unique", len(f.Peers)), ""))
	return append(out, checkMembers(f)...)
}

// checkMembers reports members gossip holds dead: their hosts are down or
// cut off, and their endpoints go at reap time.
func checkMembers(f *Facts) []Result {
	var dead []string
	for _, p := range f.Peers {
		if p.State == "dead" || p.State == "suspect" {
			dead = append(dead, fmt.Sprintf("%s (%s, %s)", p.Name, p.Address, p.State))
		}
	}
	if len(dead) == 0 {
		return []Result{res("members", OK, fmt.Sprintf("%d members, all alive", len(f.Peers)), "")}
	}
	return []Result{res("members", Warn, "not alive: "+strings.Join(dead, ", ")+"; their paths are not probed",
		"start their agents, or check the underlay to them; a host gone for good leaves the list at reap time")}
}

func appendNew(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

// detection is how long memberlist takes at most to declare a silent
// member of an n-member cluster dead with the agent's tuning: a probe
// round, then the suspicion timeout, which starts at
// SuspicionMult·max(1, log10 n)·ProbeInterval and may stretch to
// SuspicionMaxTimeoutMult times that.
func detection(n int) time.Duration {
	t := gossip.DefaultTuning()
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	susp := time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
	return t.ProbeInterval + t.ProbeTimeout + time.Duration(t.SuspicionMaxTimeoutMult)*susp
}

// maxReap is where a longer reap_after stops helping restarts and starts
// black-holing traffic to hosts that really died.
const maxReap = 30 * time.Minute

func checkTiming(f *Facts) []Result {
	if f.Config == nil {
		return []Result{res("reap_after", Skip, "no config", "")}
	}
	reap := time.Duration(f.Config.Cluster.ReapAfter)
	det := detection(len(f.Peers))
	restart := det + gossip.DefaultTuning().RejoinInterval
	ev := fmt.Sprintf("reap_after %s; failure detection takes up to %s with %d members", reap, det.Round(100*time.Millisecond), max(1, len(f.Peers)))
	switch {
	case reap < restart:
		return []Result{res("reap_after", Warn, ev+fmt.Sprintf(": a restart or partition longer than %s removes this host's endpoints everywhere, and traffic to them stops", reap),
			fmt.Sprintf("set cluster.reap_after to at least %s (the default is 60s)", (2*restart).Round(time.Second)))}
	case reap > maxReap:
		return []Result{res("reap_after", Warn, ev+": a host that died keeps its endpoints programmed for "+reap.String()+" and traffic to them is lost",
			"set cluster.reap_after to minutes, not hours")}
	}
	return []Result{res("reap_after", OK, ev, "")}
}

// maxSkew is the clock difference that doctor flags: gossip orders records
// by Lamport versions, not clocks, but reap times and logs compare badly.
const maxSkew = 2 * time.Second

func checkClocks(f *Facts) []Result {
	if f.Members == nil {
		return []Result{res("clock skew", Skip, "the agent does not serve its members' clocks yet", "")}
	}
	var skewed []string
	for _, m := range f.Members {
		if m.HaveClock && (m.ClockOffset > maxSkew || m.ClockOffset < -maxSkew) {
			skewed = append(skewed, fmt.Sprintf("%s %+.1fs", m.Name, m.ClockOffset.Seconds()))
		}
	}
	if len(skewed) > 0 {
		return []Result{res("clock skew", Warn, "clocks differ from this host's by more than "+maxSkew.String()+": "+strings.Join(skewed, ", "), "run NTP (chrony, systemd-timesyncd) on every host")}
	}
	return []Result{res("clock skew", OK, fmt.Sprintf("%d members within %s of this host's clock", len(f.Members), maxSkew), "")}
}

func checkKeys(f *Facts) []Result {
	if f.Config == nil {
		return []Result{res("gossip keys", Skip, "no config", "")}
	}
	if len(f.Config.Cluster.Keys) == 0 {
		return []Result{res("gossip keys", OK, "gossip is not encrypted (no secret_file): nothing to compare", "")}
	}
	primary := KeyFingerprint(f.Config.Cluster.Keys[0])
	var ours []string
	for _, k := range f.Config.Cluster.Keys {
		ours = append(ours, KeyFingerprint(k))
	}
	if f.Members == nil {
		return []Result{res("gossip keys", Skip, "this host encrypts with "+primary+"; the agent does not serve its members' keys yet (compare 'vxmesh keys' on each host)", "")}
	}
	var bad []string
	for _, m := range f.Members {
		switch {
		case m.KeyFingerprints == nil:
		case !slices.Contains(m.KeyFingerprints, primary):
			bad = append(bad, m.Name+" cannot decrypt this host's "+primary)
		case !slices.Contains(ours, m.KeyFingerprints[0]):
			bad = append(bad, m.Name+" encrypts with "+m.KeyFingerprints[0]+", which this host lacks")
		}
	}
	if len(bad) > 0 {
		return []Result{res("gossip keys", Fail, strings.Join(bad, "; "), "put the same secret_file on every host and reload (docs/operations.md, Gossip keys)")}
	}
	return []Result{res("gossip keys", OK, fmt.Sprintf("every member holds %s", primary), "")}
}
