package pass

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// Runtime attachments (api/attach.go) in a pass: State.Attachments holds
// the requests the agent accepted; Build turns those of one runtime
// container (Runtime + ID) into one ContainerView whose Source is the
// runtime, whose Netns is the runtime's namespace by path, and whose
// interfaces have the names the runtime asked for. Everything downstream
// (IPAM, bridge, gossip, DNS, ports) treats it as any other container.

// FindAttachment returns the index of the attachment with key k in
// st.Attachments, -1 when there is none.
func (st *State) FindAttachment(k api.AttachmentKey) int {
	for i, a := range st.Attachments {
		if a.Key() == k {
			return i
		}
	}
	return -1
}

// addAttachments adds a view per runtime container of the state's
// attachments, in the order they were first made.
func (b *builder) addAttachments() {
	type ctr struct{ runtime, id string }
	var order []ctr
	groups := map[ctr][]api.AttachRequest{}
	for _, a := range b.st.Attachments {
		k := ctr{a.Runtime, a.ID}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], a)
	}
	for _, k := range order {
		c, err := AttachedContainer(groups[k])
		n := len(b.d.Containers)
		b.add(c, k.runtime)
		v := b.d.Containers[n]
		v.Attached = groups[k]
		if err != nil && v.Err == nil {
			v.Err = err
		}
	}
}

// AttachedContainer is the container one runtime container's attachments
// make: the first one's name and namespace, a network (and an interface)
// per attachment, their static addresses and published ports.
func AttachedContainer(reqs []api.AttachRequest) (config.Container, error) {
	first := reqs[0]
	c := config.Container{Name: first.Name, Netns: first.Netns, Aliases: first.Aliases, IP: map[string]netip.Addr{}}
	if HostPlaced(first) {
		// The runtime's sandbox is not ours to enter: the namespace name
		// only keys the veths (bridge.HostVethName) and their MACs.
		c.Netns = first.Runtime + "-" + first.ID
	}
	var errs error
	for _, r := range reqs {
		c.Networks = append(c.Networks, r.Network)
		if r.IP != "" {
			ip, err := netip.ParseAddr(r.IP)
			if err != nil && errs == nil {
				errs = fmt.Errorf("attachment %s: ip %q: %w", r.Key(), r.IP, err)
			}
			c.IP[r.Network] = ip
		}
		for _, p := range r.Ports {
			spec, err := config.ParsePortSpec(PortSpecString(p))
			if err != nil {
				if errs == nil {
					errs = fmt.Errorf("attachment %s: port %d/%s: %w", r.Key(), p.ContainerPort, p.Proto, err)
				}
				continue
			}
			c.Publish = append(c.Publish, spec)
		}
	}
	return WithDefaults(c), errs
}

// PortSpecString is a PortRequest in `docker run -p` syntax
// ([IP:][HOSTPORT[-END]]:PORT/PROTO; host port 0 or none: a random one).
func PortSpecString(p api.PortRequest) string {
	s := strconv.Itoa(int(p.ContainerPort)) + "/" + p.Proto
	host := ""
	if p.HostPort != 0 {
		host = strconv.Itoa(int(p.HostPort))
		if p.HostPortEnd > p.HostPort {
			host += "-" + strconv.Itoa(int(p.HostPortEnd))
		}
	}
	switch {
	case p.HostIP != "":
		ip, _ := netip.ParseAddr(p.HostIP)
		hip := ip.String()
		if ip.Is6() {
			hip = "[" + hip + "]"
		}
		return hip + ":" + host + ":" + s
	case host != "":
		return host + ":" + s
	}
	return s
}

// ifName is the name of v's i-th interface: the runtime's for an
// attached container, eth0, eth1… otherwise.
func (v *ContainerView) ifName(i int) string {
	if i < len(v.Attached) {
		return v.Attached[i].IfName
	}
	return fmt.Sprintf("eth%d", i)
}

// IsAttached reports whether v is a runtime's container (CNI, Docker).
func (v *ContainerView) IsAttached() bool { return len(v.Attached) > 0 }

// reservedOwner owns the addresses a runtime's IPAM holds.
const reservedOwner = "reserved"

// reservedAddrs holds the reserved addresses in their pools, after the
// static ones: an attachment that asks for its reserved address statically
// holds it already, which is fine.
func (b *builder) reservedAddrs() {
	for net, addrs := range b.st.Reserved {
		p := b.pools[net]
		if p == nil {
			continue
		}
		for _, ip := range addrs {
			p.Reserve(ip, reservedOwner)
		}
	}
}

// ReserveAddress picks an address on network over the snapshot, as Build
// would hand it out (the overlay's cluster IPAM through pools): want when
// free, else (want invalid) any free one. The caller records it in
// State.Reserved.
func ReserveAddress(s *Snapshot, pools PoolSource, network string, want netip.Addr, v6 bool) (netip.Addr, error) {
	b := build(s, pools)
	n, p := b.nets[network], b.pools[network]
	if n == nil || p == nil {
		return netip.Addr{}, fmt.Errorf("network %q not found", network)
	}
	if n.Subnet.Addr().Is6() != v6 {
		return netip.Addr{}, fmt.Errorf("network %q has no subnet of that family (subnet %s)", network, n.Subnet)
	}
	if want.IsValid() {
		if s.State != nil && slices.Contains(s.State.Reserved[network], want) {
			return netip.Addr{}, fmt.Errorf("reserve %s on %q: already reserved", want, network)
		}
		if err := p.Reserve(want, reservedOwner); err != nil {
			return netip.Addr{}, fmt.Errorf("reserve %s on %q: %w", want, network, err)
		}
		return want, nil
	}
	ip, err := p.Allocate(reservedOwner)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reserve an address on %q: %w", network, err)
	}
	return ip, nil
}

// HostPlaced reports whether an attachment's veth is made in the host
// namespace for the runtime to move (Docker's Join), or only reserved.
func HostPlaced(r api.AttachRequest) bool { return r.Placement == api.PlacementHost || r.Reserve }

// reserveOnly reports whether every attachment of v only holds its
// address (Docker's CreateEndpoint before Join): no veth yet.
func (v *ContainerView) reserveOnly() bool {
	return v.IsAttached() && !slices.ContainsFunc(v.Attached, func(r api.AttachRequest) bool { return !r.Reserve })
}

// HostPlaced reports whether v's veths are made in the host namespace
// (Docker): v.Netns then only keys them; the namespace is the runtime's.
func (v *ContainerView) HostPlaced() bool { return v.IsAttached() && HostPlaced(v.Attached[0]) }

// HostPeerName is the name of a host-placed veth's container end while it
// waits in the host namespace: "vc" + the hash of HostVethName, so the
// two ends of a pair are found from each other's key.
func HostPeerName(netns, network string) string {
	return "vc" + bridge.HostVethName(netns, network)[2:]
}
