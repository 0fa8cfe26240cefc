package doctor

import (
	"bufio"
	"bytes"

	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// The kernel side of doctor: it only reads, in the host's namespace
// (named, or the current one), except for the feature probes, which make
// and delete devices in an anonymous scratch namespace that vanishes with
// its last file descriptor.

// hostNS is the namespace doctor reads: a named one, or the current.
type hostNS struct {
	name string // "" for the current namespace
	h    netns.NsHandle
}

func openHostNS(name string) (*hostNS, error) {
	if name == "" {
		h, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("open current netns: %w", err)
		}
		return &hostNS{h: h}, nil
	}
	h, err := netnsutil.Open(name)
	if err != nil {
		return nil, err
	}
	return &hostNS{name: name, h: h}, nil
}

func (n *hostNS) close() { n.h.Close() }

// do runs fn on a thread inside the namespace; sockets and child processes
// fn makes live there.
func (n *hostNS) do(fn func() error) error { return netnsutil.DoHandle(n.h, fn) }

// ReadKernel reads the kernel facts of the host namespace netnsName (""
// for the current one).
func ReadKernel(netnsName string) KernelFacts {
	k := KernelFacts{NftRules: -1, LegacyRules: -1, Chains: map[string][]string{}}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		k.Release = unix.ByteSliceToString(u.Release[:])
	}
	k.Features = probeFeatures()
	ns, err := openHostNS(netnsName)
	if err != nil {
		k.Errors = append(k.Errors, err.Error())
		return k
	}
	defer ns.close()
	if err := readLinks(ns, &k); err != nil {
		k.Errors = append(k.Errors, err.Error())
	}
	if err := ns.do(func() error { readNetfilter(&k); return nil }); err != nil {
		k.Errors = append(k.Errors, err.Error())
	}
	readChains(ns, &k)
	k.EtcNetns = readEtcNetns(bridge.DefaultEtcNetns)
	k.Namespaces = readNamedNetns(ns, k.Links)
	return k
}

// probeFeatures makes each device kind once in a scratch namespace.
func probeFeatures() []Feature {
	scratch, err := newScratchNetns()
	if err != nil {
		return []Feature{{Name: "netns", Err: err.Error()}}
	}
	defer scratch.Close()
	h, err := netlink.NewHandleAt(scratch)
	if err != nil {
		return []Feature{{Name: "netns", Err: fmt.Sprintf("netlink in a new namespace: %v", err)}}
	}
	defer h.Close()
	out := []Feature{{Name: "netns", OK: true}}
	try := func(name string, l netlink.Link) {
		f := Feature{Name: name}
		if err := h.LinkAdd(l); err != nil {
			f.Err = err.Error()
		} else {
			f.OK = true
		}
		out = append(out, f)
	}
	try("bridge", &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "dr-br"}})
	try("veth", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dr-v0"}, PeerName: "dr-v1"})
	try("vxlan", &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "dr-vx"}, VxlanId: 42, Port: 4789})
	parent, err := h.LinkByName("dr-v0")
	if err != nil {
		out = append(out, Feature{Name: "macvlan", Err: "no veth to be its parent"})
	} else {
		try("macvlan", &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "dr-mv", ParentIndex: parent.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE})
	}
	return out
}

// newScratchNetns makes an anonymous network namespace and returns a
// handle on it; closing the handle frees it. The thread that made it
// returns to its namespace, or is never reused.
func newScratchNetns() (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{err: fmt.Errorf("make a scratch netns: %w", err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			h.Close()
			// The thread is stuck in the scratch namespace: let it die
			// with this goroutine (still locked).
			c <- result{err: fmt.Errorf("return from the scratch netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		c <- result{h: h}
	}()
	r := <-c
	return r.h, r.err
}

// readLinks lists the host namespace's links with their addresses, and
// reads the ethtool driver and tx checksum state of each.
func readLinks(ns *hostNS, k *KernelFacts) error {
	h, err := netlink.NewHandleAt(ns.h)
	if err != nil {
		return fmt.Errorf("netlink in host netns: %w", err)
	}
	defer h.Close()
	links, err := nlsafe.Dump(h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	addrs, err := nlsafe.Dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		x := Link{Name: a.Name, Kind: l.Type(), Alias: a.Alias, MTU: a.MTU, Master: names[a.MasterIndex]}
		if vx, ok := l.(*netlink.Vxlan); ok {
			x.VXLANPort, x.VNI, x.External = vx.Port, vx.VxlanId, vx.FlowBased
		}
		for _, ad := range addrs {
			if ad.LinkIndex == a.Index {
				if p, ok := netip.AddrFromSlice(ad.IP); ok {
					ones, _ := ad.Mask.Size()
					x.Addrs = append(x.Addrs, netip.PrefixFrom(p.Unmap(), ones))
				}
			}
		}
		k.Links = append(k.Links, x)
	}
	return ns.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket for ethtool: %w", err)
		}
		defer unix.Close(fd)
		for i := range k.Links {
			l := &k.Links[i]
			if info, err := unix.IoctlGetEthtoolDrvinfo(fd, l.Name); err == nil {
				l.Driver = unix.ByteSliceToString(info.Driver[:])
			}
			if on, err := ethtoolTxChecksum(fd, l.Name); err == nil {
				l.TxChecksum = &on
			}
		}
		return nil
	})
}

// readNetfilter reads the iptables backend, both backends' rule counts,
// the FORWARD policy, conntrack and br_netfilter, in the current
// namespace (the caller runs it in the host's).
func readNetfilter(k *KernelFacts) {
	out, err := exec.Command("iptables", "-V").CombinedOutput()
	switch {
	case err != nil:
		k.IptablesErr = fmt.Sprintf("iptables -V: %v", err)
	case bytes.Contains(out, []byte("nf_tables")):
		k.Iptables = "nf_tables"
	case bytes.Contains(out, []byte("legacy")):
		k.Iptables = "legacy"
	default:
		k.Iptables = "legacy" // iptables before 1.8 says neither
	}
	k.NftRules = countRules("iptables-nft-save")
	k.LegacyRules = countRules("iptables-legacy-save")
	if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "-P" {
				k.ForwardPolicy = f[2]
			}
		}
	}
	if v, err := readSysctl("net/netfilter/nf_conntrack_max"); err == nil {
		k.Conntrack = true
		k.ConntrackMax, _ = strconv.Atoi(v)
		c, _ := readSysctl("net/netfilter/nf_conntrack_count")
		k.ConntrackCount, _ = strconv.Atoi(c)
	}
	if v, err := readSysctl("net/bridge/bridge-nf-call-iptables"); err == nil {
		k.BrNetfilter, k.CallIptables = true, v
	}
}

// countRules counts the "-A" lines an iptables-*-save prints (-1 when it
// cannot run).
func countRules(tool string) int {
	if _, err := exec.LookPath(tool); err != nil {
		return -1
	}
	out, err := exec.Command(tool).Output()
	if err != nil {
		return -1
	}
	n := 0
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "-A ") {
			n++
		}
	}
	return n
}

// readSysctl reads /proc/sys/KEY as the calling thread's namespace sees it.
func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	return strings.TrimSpace(string(b)), err
}

// readChains lists the VXMESH-* chains of every table.
func readChains(ns *hostNS, k *KernelFacts) {
	r, err := ipt.New(ns.h, false)
	if err != nil {
		k.Errors = append(k.Errors, err.Error())
		return
	}
	for _, table := range []string{"filter", "nat", "mangle", "raw"} {
		cs, err := r.ListChains(table, "VXMESH-")
		if err != nil {
			k.Errors = append(k.Errors, fmt.Sprintf("list %s chains: %v", table, err))
			continue
		}
		if len(cs) > 0 {
			k.Chains[table] = cs
		}
	}
}

// vxmeshMarker starts every name file vxmesh writes.
const vxmeshMarker = "# written by vxmesh"

// readEtcNetns lists the directories under dir holding a file vxmesh wrote.
func readEtcNetns(dir string) []EtcNetns {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []EtcNetns
	for _, e := range entries {
		if !e.IsDir() || !ours(filepath.Join(dir, e.Name())) {
			continue
		}
		out = append(out, EtcNetns{Name: e.Name(), NetnsExists: netnsutil.Exists(e.Name())})
	}
	return out
}

func ours(dir string) bool {
	for _, f := range bridge.NameFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err == nil && bytes.HasPrefix(b, []byte(vxmeshMarker)) {
			return true
		}
	}
	return false
}

// readNamedNetns finds the named namespaces with a vxmesh container link
// whose host end (bridge.HostVethName) is a link of this host: the
// containers attached here. Other hosts' containers (a lab shares
// /run/netns) have their host ends elsewhere.
func readNamedNetns(ns *hostNS, hostLinks []Link) []NamedNetns {
	names, err := netnsutil.List()
	if err != nil {
		return nil
	}
	here := map[string]bool{}
	for _, l := range hostLinks {
		here[l.Name] = true
	}
	var out []NamedNetns
	for _, name := range names {
		if name == ns.name {
			continue
		}
		ctrs := containerLinks(name, here)
		if len(ctrs) > 0 {
			out = append(out, NamedNetns{Name: name, Containers: ctrs})
		}
	}
	return out
}

// containerLinks returns the containers named by vxmesh link aliases in
// namespace name whose host end is in here.
func containerLinks(name string, here map[string]bool) []string {
	h, err := netnsutil.Open(name)
	if err != nil {
		return nil
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil
	}
	defer nh.Close()
	links, err := nlsafe.Dump(nh.LinkList)
	if err != nil {
		return nil
	}
	var ctrs []string
	for _, l := range links {
		ctr, network, ok := parseContainerAlias(l.Attrs().Alias)
		if ok && here[bridge.HostVethName(name, network)] {
			ctrs = appendNew(ctrs, ctr)
		}
	}
	return ctrs
}

// parseContainerAlias decodes "vxmesh:ctr=C,net=N" (bridge.ContainerAlias).
func parseContainerAlias(a string) (ctr, network string, ok bool) {
	rest, found := strings.CutPrefix(a, AliasPrefix+"ctr=")
	if !found {
		return "", "", false
	}
	ctr, network, ok = strings.Cut(rest, ",net=")
	return ctr, network, ok && ctr != "" && network != ""
}
