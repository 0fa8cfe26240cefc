package agent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// OverlayMTU is the MTU of an overlay network's bridge until the overlay
// step derives it from the underlay: 1500 minus the VXLAN overhead.
const OverlayMTU = config.DefaultBridgeMTU - config.VXLANOverheadIPv4

// Desired is the desired state of one reconcile pass: a plain value built
// from the inputs (config, run-time containers, state file, and the
// snapshots of extra sources such as gossip). Every step reads the same
// value; steps that run before the bridge step may add to it (portmap
// fills Bridge.Ports).
type Desired struct {
	// Config is the config in force.
	Config *config.Config
	// Containers are all containers, config ones first, then run-time ones,
	// resolved (addresses, namespace).
	Containers []*ContainerView
	// Bridge is what the bridge reconciler makes real.
	Bridge bridge.State
	// Allocations are the dynamic addresses after this build (to persist).
	Allocations map[string]map[string]netip.Addr
	// Sources holds each extra input's snapshot by source name.
	Sources map[string]any
	// Conflicts are problems between inputs, one sentence each.
	Conflicts []string
	// Remote are the endpoints other hosts announced on this host's overlay
	// networks (from the gossip table), filled by the overlay step's
	// Prepare. Consumers (FDB/neighbour programming, DNS views, status)
	// read them after every Prepare has run.
	Remote []RemoteEndpoint
}

// RemoteEndpoint is a container interface on another host, as gossip
// announced it.
type RemoteEndpoint struct {
	Network   string
	Container string
	Host      string
	IP        netip.Addr
	MAC       net.HardwareAddr
	VTEP      netip.Addr
	// Names are the container's name first, then its aliases.
	Names []string
}

// ContainerView is one container as the agent resolved it.
type ContainerView struct {
	// Spec is the container with its defaults filled in.
	Spec config.Container
	// Source is api.SourceConfig or api.SourceAPI.
	Source string
	// Netns is the namespace the container lives in: its own, the other
	// container's for mode container:X, "" for mode host.
	Netns string
	// Interfaces are its interfaces (eth0 first), with their addresses.
	Interfaces []bridge.Interface
	// Err is why the container cannot be attached (bad address, name or
	// namespace taken); such a container is left out of Bridge.
	Err error
	// Joins is the container whose namespace a container:X joiner shares.
	Joins string
}

// Container returns the view of the named container, or nil.
func (d *Desired) Container(name string) *ContainerView {
	for _, v := range d.Containers {
		if v.Spec.Name == name {
			return v
		}
	}
	return nil
}

// withDefaults fills a run-time container's defaults as SetDefaults does
// for config ones.
func withDefaults(c config.Container) config.Container {
	tmp := config.Config{Containers: []config.Container{c}}
	tmp.SetDefaults()
	return tmp.Containers[0]
}

// bridgeNetwork maps a config network to the bridge reconciler's view.
// Overlay networks are bridge networks on their vxb- bridge until the
// overlay step adds the VXLAN side.
func bridgeNetwork(n *config.Network) bridge.Network {
	bn := bridge.Network{Name: n.Name, Subnet: n.Subnet.Masked(), Gateway: n.Gateway, MTU: n.MTU, Internal: n.Internal}
	switch n.Driver {
	case config.DriverBridge, config.DriverOverlay:
		bn.Driver, bn.Device = bridge.DriverBridge, n.Bridge
		if bn.Device == "" {
			bn.Device = n.BridgeName()
		}
		if n.Driver == config.DriverOverlay && bn.MTU == 0 {
			bn.MTU = OverlayMTU
		}
	case config.DriverMacvlan:
		bn.Driver, bn.Parent = bridge.DriverMacvlan, n.Parent
	case config.DriverIPvlan:
		bn.Driver, bn.Parent = bridge.DriverIPvlan, n.Parent
	default:
		bn.Driver = n.Driver
	}
	return bn
}

// buildDesired resolves config and run-time containers into a Desired:
// static addresses first, then the addresses recorded in the state, then
// new ones from each network's range, so an address never moves between
// restarts. Containers on a network get resolv.conf pointing at the
// embedded DNS server; hostDNS are the host's nameservers for those
// without networks (mode none) and without dns.
func buildDesired(cfg *config.Config, runtime []config.Container, st *State, hostDNS []netip.Addr) *Desired {
	return buildDesiredPools(cfg, runtime, st, hostDNS, nil)
}

// addrPool hands out one network's addresses: a local bridge.Pool, or the
// overlay's cluster IPAM (overlay_ipam.go).
type addrPool interface {
	Reserve(ip netip.Addr, owner string) error
	Allocate(owner string) (netip.Addr, error)
}

// buildDesiredPools is buildDesired with the pools of some networks taken
// from poolOf (nil, or a nil result: a local bridge.Pool).
func buildDesiredPools(cfg *config.Config, runtime []config.Container, st *State, hostDNS []netip.Addr, poolOf func(*config.Network, *State) addrPool) *Desired {
	d := &Desired{Config: cfg, Allocations: map[string]map[string]netip.Addr{}, Sources: map[string]any{}}
	netByName := map[string]*config.Network{}
	pools := map[string]addrPool{}
	for i := range cfg.Networks {
		n := &cfg.Networks[i]
		netByName[n.Name] = n
		d.Bridge.Networks = append(d.Bridge.Networks, bridgeNetwork(n))
		pools[n.Name] = bridge.NewPool(n.Subnet, n.IPRange, n.Gateway)
		if poolOf != nil {
			if p := poolOf(n, st); p != nil {
				pools[n.Name] = p
			}
		}
	}

	names := map[string]bool{}
	netnsOwner := map[string]string{}
	add := func(c config.Container, source string) {
		v := &ContainerView{Spec: c, Source: source}
		d.Containers = append(d.Containers, v)
		if names[c.Name] {
			v.Err = conflict{fmt.Errorf("name %q is taken by a container of the config", c.Name)}
			d.Conflicts = append(d.Conflicts, fmt.Sprintf("run-time container %q is shadowed by the config's container of that name", c.Name))
			return
		}
		names[c.Name] = true
		if other, joins := c.JoinsContainer(); joins {
			v.Joins = other
			return
		}
		if c.Mode == config.ModeHost {
			return
		}
		v.Netns = c.NetnsName()
		if owner, taken := netnsOwner[v.Netns]; taken {
			v.Err = conflict{fmt.Errorf("netns %q is taken by container %q", v.Netns, owner)}
			d.Conflicts = append(d.Conflicts, fmt.Sprintf("containers %q and %q both want netns %q", owner, c.Name, v.Netns))
			return
		}
		netnsOwner[v.Netns] = c.Name
		for _, net := range c.Networks {
			if netByName[net] == nil {
				v.Err = fmt.Errorf("network %q not found", net)
				return
			}
		}
	}
	for _, c := range cfg.Containers {
		add(c, api.SourceConfig)
	}
	for _, c := range runtime {
		add(withDefaults(c), api.SourceAPI)
	}

	// Addresses: static, then recorded, then new.
	addrs := map[*ContainerView]map[string]netip.Addr{}
	attached := func(v *ContainerView) bool { return v.Err == nil && v.Netns != "" }
	for _, v := range d.Containers {
		if !attached(v) {
			continue
		}
		addrs[v] = map[string]netip.Addr{}
		for _, net := range v.Spec.Networks {
			ip, ok := v.Spec.IP[net]
			if !ok {
				continue
			}
			if err := pools[net].Reserve(ip, v.Spec.Name); err != nil {
				v.Err = fmt.Errorf("ip.%s: %w", net, err)
				d.Conflicts = append(d.Conflicts, fmt.Sprintf("container %q: ip.%s: %v", v.Spec.Name, net, err))
				break
			}
			addrs[v][net] = ip
		}
	}
	for _, v := range d.Containers {
		if !attached(v) {
			continue
		}
		for _, net := range v.Spec.Networks {
			if _, static := v.Spec.IP[net]; static {
				continue
			}
			if prev, ok := st.Allocations[net][v.Spec.Name]; ok && pools[net].Reserve(prev, v.Spec.Name) == nil {
				addrs[v][net] = prev
			}
		}
	}
	for _, v := range d.Containers {
		if !attached(v) {
			continue
		}
		for _, net := range v.Spec.Networks {
			if _, done := addrs[v][net]; done {
				continue
			}
			ip, err := pools[net].Allocate(v.Spec.Name)
			if err != nil {
				v.Err = fmt.Errorf("network %q: %w", net, err)
				break
			}
			addrs[v][net] = ip
		}
	}

	// Interfaces, name files, and the bridge state.
	for _, v := range d.Containers {
		if !attached(v) {
			continue
		}
		c := &v.Spec
		var own []netip.Addr
		for i, net := range c.Networks {
			n := netByName[net]
			ip := addrs[v][net]
			if _, static := c.IP[net]; !static {
				if d.Allocations[net] == nil {
					d.Allocations[net] = map[string]netip.Addr{}
				}
				d.Allocations[net][c.Name] = ip
			}
			ifc := bridge.Interface{
				Network: net,
				IfName:  fmt.Sprintf("eth%d", i),
				Addr:    netip.PrefixFrom(ip, n.Subnet.Bits()),
				MTU:     bridgeNetwork(n).MTU,
			}
			if i == 0 {
				ifc.Gateway = n.Gateway
			}
			if mac, err := parseMAC(st.Bridge.MACs[bridge.MACKey(v.Netns, net)]); err == nil {
				ifc.MAC = mac
			}
			v.Interfaces = append(v.Interfaces, ifc)
			own = append(own, ip)
		}
		// Containers on a network use the embedded DNS server (which
		// forwards to c.DNS or the host's resolvers); mode none gets those
		// servers directly, as in Docker.
		resolv := dns.ResolvConf(c.DNSSearch, c.DNSOptions)
		if len(c.Networks) == 0 {
			nameservers := c.DNS
			if len(nameservers) == 0 {
				nameservers = hostDNS
			}
			resolv = bridge.ResolvConf(nameservers, c.DNSSearch, c.DNSOptions)
		}
		var extra []bridge.HostEntry
		for _, e := range c.ExtraHosts {
			extra = append(extra, bridge.HostEntry{Name: e.Name, IP: e.IP})
		}
		d.Bridge.Containers = append(d.Bridge.Containers, bridge.Container{
			Name:       c.Name,
			Netns:      v.Netns,
			Interfaces: slices.Clone(v.Interfaces),
			Files: map[string][]byte{
				bridge.FileHostname: bridge.HostnameFile(c.HostnameOrName()),
				bridge.FileHosts:    bridge.HostsFile(bridge.HostsInput{Hostname: c.HostnameOrName(), Name: c.Name, Aliases: c.Aliases, Addrs: own, Extra: extra}),
				bridge.FileResolv:   resolv,
			},
		})
	}

	// Joiners live in the other container's namespace.
	for _, v := range d.Containers {
		if v.Joins == "" || v.Err != nil {
			continue
		}
		other := d.Container(v.Joins)
		switch {
		case other == nil:
			v.Err = fmt.Errorf("mode %q: container %q does not exist", v.Spec.Mode, v.Joins)
		case other.Joins != "":
			v.Err = fmt.Errorf("mode %q: container %q itself joins %q", v.Spec.Mode, v.Joins, other.Joins)
		default:
			v.Netns = other.Netns
		}
	}
	return d
}

// conflict marks an error as a clash with another container (a name or a
// namespace it holds), which the API answers with 409, keeping the message.
type conflict struct{ error }

func (c conflict) Unwrap() error        { return c.error }
func (c conflict) Is(target error) bool { return target == config.ErrConflict }
