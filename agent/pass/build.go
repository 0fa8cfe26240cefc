package pass

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// Build resolves the snapshot's config and run-time containers into a
// Desired: static addresses first, then the addresses recorded in the
// state, then new ones from each network's pool (pools: the overlay's
// cluster IPAM, nil or a nil result a local bridge.Pool), so an address
// never moves between restarts. Containers on a network get resolv.conf
// pointing at the embedded DNS server; those without networks (mode none)
// and without dns get the host's nameservers (Snapshot.HostDNS).
func Build(s *Snapshot, pools PoolSource) *Desired {
	return build(s, pools).d
}

// build is Build, returning the builder with its pools.
func build(s *Snapshot, pools PoolSource) *builder {
	st := s.State
	if st == nil {
		st = NewState()
	}
	b := &builder{
		d:       &Desired{Snapshot: s, Allocations: map[string]map[string]netip.Addr{}},
		st:      st,
		nets:    map[string]*config.Network{},
		pools:   map[string]AddrPool{},
		names:   map[string]bool{},
		netns:   map[string]string{},
		addrs:   map[*ContainerView]map[string]netip.Addr{},
		hostDNS: s.HostDNS,
	}
	b.networks(pools)
	for _, c := range s.Config.Containers {
		b.add(c, api.SourceConfig)
	}
	for _, c := range s.Runtime {
		b.add(WithDefaults(c), api.SourceAPI)
	}
	b.addAttachments()
	b.staticAddrs()
	b.reservedAddrs()
	b.recordedAddrs()
	b.newAddrs()
	for _, v := range b.d.Containers {
		if attached(v) {
			b.bridgeContainer(v)
		}
	}
	b.joiners()
	return b
}

// builder holds Build's work in progress.
type builder struct {
	d       *Desired
	st      *State
	nets    map[string]*config.Network
	pools   map[string]AddrPool
	names   map[string]bool   // container names taken
	netns   map[string]string // namespace -> the container holding it
	addrs   map[*ContainerView]map[string]netip.Addr
	hostDNS []netip.Addr
}

// attached reports whether v gets interfaces of its own.
func attached(v *ContainerView) bool { return v.Err == nil && v.Netns != "" }

// networks maps the config's networks and makes their pools.
func (b *builder) networks(pools PoolSource) {
	cfg := b.d.Config
	for i := range cfg.Networks {
		n := &cfg.Networks[i]
		b.nets[n.Name] = n
		b.d.Bridge.Networks = append(b.d.Bridge.Networks, BridgeNetwork(n))
		for _, fv := range Families(n) {
			b.pools[fv.Key] = bridge.NewPool(fv.Net.Subnet, fv.Net.IPRange, fv.Net.Gateway)
			if pools != nil {
				if p := pools.Pool(fv.Net, b.d.Snapshot); p != nil {
					b.pools[fv.Key] = p
				}
			}
		}
	}
}

// add resolves one container's name, namespace and networks.
func (b *builder) add(c config.Container, source string) {
	v := &ContainerView{Spec: c, Source: source}
	b.d.Containers = append(b.d.Containers, v)
	if b.names[c.Name] {
		v.Err = conflict{fmt.Errorf("name %q is taken by a container of the config", c.Name)}
		b.d.Conflicts = append(b.d.Conflicts, fmt.Sprintf("run-time container %q is shadowed by the config's container of that name", c.Name))
		return
	}
	b.names[c.Name] = true
	if other, joins := c.JoinsContainer(); joins {
		v.Joins = other
		return
	}
	if c.Mode == config.ModeHost {
		return
	}
	v.Netns = c.NetnsName()
	if owner, taken := b.netns[v.Netns]; taken {
		v.Err = conflict{fmt.Errorf("netns %q is taken by container %q", v.Netns, owner)}
		b.d.Conflicts = append(b.d.Conflicts, fmt.Sprintf("containers %q and %q both want netns %q", owner, c.Name, v.Netns))
		return
	}
	b.netns[v.Netns] = c.Name
	for _, net := range c.Networks {
		if b.nets[net] == nil {
			v.Err = fmt.Errorf("network %q not found", net)
			return
		}
	}
}

// staticAddrs reserves the configured addresses.
func (b *builder) staticAddrs() {
	for _, v := range b.d.Containers {
		if !attached(v) {
			continue
		}
		b.addrs[v] = map[string]netip.Addr{}
		for _, sl := range b.slots(v) {
			if !sl.static.IsValid() {
				continue
			}
			if err := b.pools[sl.key].Reserve(sl.static, v.Spec.Name); err != nil {
				v.Err = fmt.Errorf("%s.%s: %w", sl.field, sl.net, err)
				b.d.Conflicts = append(b.d.Conflicts, fmt.Sprintf("container %q: %s.%s: %v", v.Spec.Name, sl.field, sl.net, err))
				break
			}
			b.addrs[v][sl.key] = sl.static
		}
	}
}

// recordedAddrs keeps the addresses the state recorded, where still free.
func (b *builder) recordedAddrs() {
	for _, v := range b.d.Containers {
		if !attached(v) {
			continue
		}
		for _, sl := range b.slots(v) {
			if sl.static.IsValid() {
				continue
			}
			if prev, ok := b.st.Allocations[sl.key][v.Spec.Name]; ok && b.pools[sl.key].Reserve(prev, v.Spec.Name) == nil {
				b.addrs[v][sl.key] = prev
			}
		}
	}
}

// newAddrs allocates the addresses still missing.
func (b *builder) newAddrs() {
	for _, v := range b.d.Containers {
		if !attached(v) {
			continue
		}
		for _, sl := range b.slots(v) {
			if _, done := b.addrs[v][sl.key]; done {
				continue
			}
			ip, err := b.pools[sl.key].Allocate(v.Spec.Name)
			if err != nil {
				v.Err = fmt.Errorf("network %q: %w", sl.net, err)
				break
			}
			b.addrs[v][sl.key] = ip
		}
	}
}

// bridgeContainer makes v's interfaces, name files and bridge container.
func (b *builder) bridgeContainer(v *ContainerView) {
	c := &v.Spec
	var own []netip.Addr
	for _, sl := range b.slots(v) {
		if !sl.static.IsValid() {
			if b.d.Allocations[sl.key] == nil {
				b.d.Allocations[sl.key] = map[string]netip.Addr{}
			}
			b.d.Allocations[sl.key][c.Name] = b.addrs[v][sl.key]
		}
	}
	for i, net := range c.Networks {
		n := b.nets[net]
		ifc := bridge.Interface{
			Network: net,
			IfName:  v.ifName(i),
			MTU:     BridgeNetwork(n).MTU,
		}
		b.addresses(&ifc, v, n, i == 0)
		if mac, err := ParseMAC(b.st.Bridge.MACs[bridge.MACKey(v.Netns, net)]); err == nil {
			ifc.MAC = mac
		}
		v.Interfaces = append(v.Interfaces, ifc)
		own = append(own, IfAddrs(ifc)...)
	}
	var extra []bridge.HostEntry
	for _, e := range c.ExtraHosts {
		extra = append(extra, bridge.HostEntry{Name: e.Name, IP: e.IP})
	}
	bc := bridge.Container{
		Name:       c.Name,
		Netns:      v.Netns,
		Interfaces: slices.Clone(v.Interfaces),
		Files: map[string][]byte{
			bridge.FileHostname: bridge.HostnameFile(c.HostnameOrName()),
			bridge.FileHosts:    bridge.HostsFile(bridge.HostsInput{Hostname: c.HostnameOrName(), Name: c.Name, Aliases: c.Aliases, Addrs: own, Extra: extra, Links: b.links(c)}),
			bridge.FileResolv:   b.resolvConf(c),
		},
	}
	if v.IsAttached() {
		bc.Files = nil // the runtime writes the container's /etc
	}
	if v.HostPlaced() {
		bc.HostPlaced = true
		for i := range bc.Interfaces {
			bc.Interfaces[i].HostPeer = HostPeerName(v.Netns, bc.Interfaces[i].Network)
		}
	}
	if v.reserveOnly() {
		return // the address is held (Allocations); the veth comes at Join
	}
	b.d.Bridge.Containers = append(b.d.Bridge.Containers, bc)
}

// resolvConf is c's resolv.conf: containers on a network use the embedded
// DNS server (which forwards to c.DNS or the host's resolvers); mode none
// gets those servers directly, as in Docker.
func (b *builder) resolvConf(c *config.Container) []byte {
	if len(c.Networks) > 0 {
		return dns.ResolvConf(c.DNSSearch, c.DNSOptions)
	}
	nameservers := c.DNS
	if len(nameservers) == 0 {
		nameservers = b.hostDNS
	}
	return bridge.ResolvConf(nameservers, c.DNSSearch, c.DNSOptions)
}

// joiners put container:X joiners in the other container's namespace.
func (b *builder) joiners() {
	for _, v := range b.d.Containers {
		if v.Joins == "" || v.Err != nil {
			continue
		}
		other := b.d.Container(v.Joins)
		switch {
		case other == nil:
			v.Err = fmt.Errorf("mode %q: container %q does not exist", v.Spec.Mode, v.Joins)
		case other.Joins != "":
			v.Err = fmt.Errorf("mode %q: container %q itself joins %q", v.Spec.Mode, v.Joins, other.Joins)
		default:
			v.Netns = other.Netns
		}
	}
}

// WithDefaults fills a run-time container's defaults as SetDefaults does
// for config ones.
func WithDefaults(c config.Container) config.Container {
	tmp := config.Config{Containers: []config.Container{c}}
	tmp.SetDefaults()
	return tmp.Containers[0]
}

// conflict marks an error as a clash with another container (a name or a
// namespace it holds), which the API answers with 409, keeping the message.
type conflict struct{ error }

func (c conflict) Unwrap() error        { return c.error }
func (c conflict) Is(target error) bool { return target == config.ErrConflict }
