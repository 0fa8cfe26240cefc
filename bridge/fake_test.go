package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// fakeKernel is an in-memory Kernel: enough of the kernel's behaviour
// (veth pairs die together, links die with their namespace, routes with
// their link) to test plans without root.
type fakeKernel struct {
	mu     sync.Mutex
	ns     map[string]*fakeNS // "" is the host
	sysctl map[string]string
	writes int64
	index  int
	// fail, when set, may fail a write: it gets the method and link or
	// namespace name.
	fail   func(method, name string) error
	ipvlan bool
	// announced lists the announcements sent, as "ns:link ip".
	announced []string
}

type fakeNS struct {
	links  []Link
	routes []Route
}

func newFakeKernel(hostLinks ...Link) *fakeKernel {
	k := &fakeKernel{ns: map[string]*fakeNS{"": {}}, index: 100, sysctl: map[string]string{SysctlForward: "0", SysctlBridgeNF: "1"}}
	for _, l := range hostLinks {
		l.Index = k.nextIndex()
		k.ns[""].links = append(k.ns[""].links, l)
	}
	k.ns[""].links = append(k.ns[""].links, Link{Name: "lo", Index: 1, Kind: "device", Up: true})
	return k
}

func (k *fakeKernel) nextIndex() int { k.index++; return k.index }

func (k *fakeKernel) write(method, name string) error {
	k.writes++
	if k.fail != nil {
		return k.fail(method, name)
	}
	return nil
}

func (k *fakeKernel) get(ns string) (*fakeNS, error) {
	n, ok := k.ns[ns]
	if !ok {
		return nil, fmt.Errorf("netns %q: %w", ns, errors.New("no such namespace"))
	}
	return n, nil
}

func (k *fakeKernel) link(ns, name string) (*fakeNS, *Link, error) {
	n, err := k.get(ns)
	if err != nil {
		return nil, nil, err
	}
	for i := range n.links {
		if n.links[i].Name == name {
			return n, &n.links[i], nil
		}
	}
	return n, nil, fmt.Errorf("link %q not found in %q", name, ns)
}

func cloneLink(l Link) Link {
	l.Addrs = slices.Clone(l.Addrs)
	l.MAC = slices.Clone(l.MAC)
	return l
}

func (k *fakeKernel) Links(ns string) ([]Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n, err := k.get(ns)
	if err != nil {
		return nil, err
	}
	out := make([]Link, len(n.links))
	for i, l := range n.links {
		out[i] = cloneLink(l)
	}
	return out, nil
}

func (k *fakeKernel) DefaultRoutes(ns string) ([]Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n, err := k.get(ns)
	if err != nil {
		return nil, err
	}
	return slices.Clone(n.routes), nil
}

func (k *fakeKernel) NetnsExists(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.ns[name]
	return ok && name != ""
}

func (k *fakeKernel) Sysctl(key string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.sysctl[key]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}

func (k *fakeKernel) SetSysctl(key, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("SetSysctl", key); err != nil {
		return err
	}
	k.sysctl[key] = value
	return nil
}

func (k *fakeKernel) SetHairpin(name string, on bool) error {
	return k.modify("SetHairpin", "", name, func(l *Link) { l.Hairpin = on })
}

func (k *fakeKernel) fwd() bool { return k.sysctl[SysctlForward] == "1" }

func (k *fakeKernel) CreateNetns(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("CreateNetns", name); err != nil {
		return err
	}
	if _, ok := k.ns[name]; ok {
		return fmt.Errorf("netns %q exists", name)
	}
	k.ns[name] = &fakeNS{links: []Link{{Name: "lo", Index: 1, Kind: "device", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}}}}
	return nil
}

func (k *fakeKernel) DeleteNetns(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("DeleteNetns", name); err != nil {
		return err
	}
	n, ok := k.ns[name]
	if !ok {
		return nil
	}
	for _, l := range slices.Clone(n.links) {
		k.deleteLocked(name, l.Name)
	}
	delete(k.ns, name)
	return nil
}

func (k *fakeKernel) addLink(ns string, l Link) error {
	n, err := k.get(ns)
	if err != nil {
		return err
	}
	for _, x := range n.links {
		if x.Name == l.Name {
			return fmt.Errorf("link %q exists in %q", l.Name, ns)
		}
	}
	if l.MAC == nil {
		l.MAC = RandomMAC()
	}
	if l.MTU == 0 {
		l.MTU = 1500
	}
	n.links = append(n.links, l)
	return nil
}

func (k *fakeKernel) AddBridge(name, alias string, mtu int, mac net.HardwareAddr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("AddBridge", name); err != nil {
		return err
	}
	return k.addLink("", Link{Name: name, Index: k.nextIndex(), Kind: "bridge", Alias: alias, MTU: mtu, MAC: mac, Up: true})
}

func (k *fakeKernel) AddVeth(hostName, master, ns, peerName, alias string, mtu int, mac net.HardwareAddr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("AddVeth", hostName); err != nil {
		return err
	}
	_, br, err := k.link("", master)
	if err != nil {
		return err
	}
	if _, err := k.get(ns); err != nil {
		return err
	}
	hi, pi := k.nextIndex(), k.nextIndex()
	if err := k.addLink("", Link{Name: hostName, Index: hi, Kind: "veth", Alias: alias, MasterIndex: br.Index, ParentIndex: pi, MTU: mtu, Up: true, Hairpin: true}); err != nil {
		return err
	}
	if err := k.addLink(ns, Link{Name: peerName, Index: pi, Kind: "veth", Alias: alias, ParentIndex: hi, MTU: mtu, MAC: mac}); err != nil {
		k.deleteLocked("", hostName)
		return err
	}
	return nil
}

func (k *fakeKernel) AddMacvlan(ns, name, parent, alias string, mtu int, mac net.HardwareAddr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("AddMacvlan", name); err != nil {
		return err
	}
	_, p, err := k.link("", parent)
	if err != nil {
		return err
	}
	return k.addLink(ns, Link{Name: name, Index: k.nextIndex(), Kind: "macvlan", Alias: alias, ParentIndex: p.Index, MTU: mtu, MAC: mac})
}

func (k *fakeKernel) AddIPvlan(ns, name, parent, alias string, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.ipvlan {
		return ErrNoIPvlan
	}
	if err := k.write("AddIPvlan", name); err != nil {
		return err
	}
	_, p, err := k.link("", parent)
	if err != nil {
		return err
	}
	return k.addLink(ns, Link{Name: name, Index: k.nextIndex(), Kind: "ipvlan", Alias: alias, ParentIndex: p.Index, MTU: mtu, MAC: p.MAC})
}

// deleteLocked removes a link, its veth peer and their routes.
func (k *fakeKernel) deleteLocked(ns, name string) {
	n, l, err := k.link(ns, name)
	if err != nil {
		return
	}
	idx, kind, peer := l.Index, l.Kind, l.ParentIndex
	n.links = slices.DeleteFunc(n.links, func(x Link) bool { return x.Name == name })
	n.routes = slices.DeleteFunc(n.routes, func(r Route) bool { return r.Link == name })
	if kind != "veth" {
		return
	}
	for other, on := range k.ns {
		for _, x := range on.links {
			if x.Kind == "veth" && x.Index == peer && x.ParentIndex == idx {
				k.deleteLocked(other, x.Name)
				return
			}
		}
	}
}

func (k *fakeKernel) DeleteLink(ns, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, _, err := k.link(ns, name); err != nil {
		return nil
	}
	if err := k.write("DeleteLink", name); err != nil {
		return err
	}
	k.deleteLocked(ns, name)
	return nil
}

func (k *fakeKernel) modify(method, ns, name string, fn func(l *Link)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write(method, name); err != nil {
		return err
	}
	_, l, err := k.link(ns, name)
	if err != nil {
		return err
	}
	fn(l)
	return nil
}

func (k *fakeKernel) SetAlias(ns, name, alias string) error {
	return k.modify("SetAlias", ns, name, func(l *Link) { l.Alias = alias })
}

func (k *fakeKernel) SetUp(ns, name string) error {
	return k.modify("SetUp", ns, name, func(l *Link) { l.Up = true })
}

func (k *fakeKernel) SetMTU(ns, name string, mtu int) error {
	return k.modify("SetMTU", ns, name, func(l *Link) { l.MTU = mtu })
}

func (k *fakeKernel) SetMAC(ns, name string, mac net.HardwareAddr) error {
	return k.modify("SetMAC", ns, name, func(l *Link) { l.MAC = mac })
}

func (k *fakeKernel) SetMaster(name, master string) error {
	k.mu.Lock()
	_, br, err := k.link("", master)
	k.mu.Unlock()
	if err != nil {
		return err
	}
	return k.modify("SetMaster", "", name, func(l *Link) { l.MasterIndex = br.Index })
}

func (k *fakeKernel) AddAddr(ns, name string, p netip.Prefix) error {
	return k.modify("AddAddr", ns, name, func(l *Link) {
		if !slices.Contains(l.Addrs, p) {
			l.Addrs = append(l.Addrs, p)
		}
	})
}

func (k *fakeKernel) DelAddr(ns, name string, p netip.Prefix) error {
	return k.modify("DelAddr", ns, name, func(l *Link) {
		l.Addrs = slices.DeleteFunc(l.Addrs, func(x netip.Prefix) bool { return x == p })
	})
}

func (k *fakeKernel) ReplaceDefaultRoute(ns, link string, gw netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.write("ReplaceDefaultRoute", link); err != nil {
		return err
	}
	n, _, err := k.link(ns, link)
	if err != nil {
		return err
	}
	n.routes = slices.DeleteFunc(n.routes, func(r Route) bool { return r.IPv6 == gw.Is6() })
	n.routes = append(n.routes, Route{Link: link, Gateway: gw, IPv6: gw.Is6()})
	return nil
}

func (k *fakeKernel) Writes() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

// fakeIPT is an in-memory ipt.Iptables.
type fakeIPT struct {
	mu     sync.Mutex
	chains map[string][]string // "table/chain" -> rules
	jumps  map[ipt.Jump]bool
	writes int
}

func newFakeIPT() *fakeIPT {
	return &fakeIPT{chains: map[string][]string{}, jumps: map[ipt.Jump]bool{}}
}

func (f *fakeIPT) SyncChains(table string, chains []ipt.Chain) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	for _, c := range chains {
		key := table + "/" + c.Name
		have, ok := f.chains[key]
		if ok && slices.Equal(have, c.Rules) {
			continue
		}
		f.chains[key] = slices.Clone(c.Rules)
		if f.chains[key] == nil {
			f.chains[key] = []string{}
		}
		changed = true
	}
	if changed {
		f.writes++
	}
	return changed, nil
}

func (f *fakeIPT) EnsureJump(j ipt.Jump) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jumps[j] {
		return false, nil
	}
	f.jumps[j] = true
	f.writes++
	return true, nil
}

func (f *fakeIPT) DeleteJump(j ipt.Jump) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jumps[j] {
		delete(f.jumps, j)
		f.writes++
	}
	return nil
}

func (f *fakeIPT) DeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := table + "/" + chain
	if _, ok := f.chains[key]; !ok {
		return nil
	}
	for j := range f.jumps {
		if j.Table == table && strings.HasSuffix(j.Rule, "-j "+chain) {
			return fmt.Errorf("chain %s is referenced", chain)
		}
	}
	for k, rules := range f.chains {
		if strings.HasPrefix(k, table+"/") && k != key && slices.Contains(rules, "-j "+chain) {
			return fmt.Errorf("chain %s is referenced by %s", chain, k)
		}
	}
	delete(f.chains, key)
	f.writes++
	return nil
}

func (f *fakeIPT) ListChains(table, prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.chains {
		t, c, _ := strings.Cut(k, "/")
		if t == table && strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeIPT) Rules(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for j := range f.jumps {
		if j.Table == table && j.From == chain {
			out = append(out, "-A "+chain+" "+j.Rule)
		}
	}
	if rules, ok := f.chains[table+"/"+chain]; ok {
		for _, r := range rules {
			out = append(out, "-A "+chain+" "+r)
		}
	}
	return out, nil
}

func (k *fakeKernel) Announce(ns, name string, ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, _, err := k.link(ns, name); err != nil {
		return err
	}
	k.announced = append(k.announced, ns+":"+name+" "+ip.String())
	return nil
}
