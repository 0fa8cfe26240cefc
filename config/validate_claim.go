package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// binding is a host port range taken on an address (invalid or unspecified:
// every address) for a protocol.
type binding struct {
	ip     netip.Addr
	ports  PortRange
	proto  string
	owner  string // "container \"web1\"", "gossip (cluster.bind_port)"
	byUser bool   // published by a container (not used by the agent itself)
}

func (b binding) anyAddr() bool { return !b.ip.IsValid() || b.ip.IsUnspecified() }

// sameAddrs reports whether both take the same addresses.
func (b binding) sameAddrs(o binding) bool {
	nb, no := b.ip, o.ip
	if !nb.IsValid() {
		nb = netip.IPv4Unspecified()
	}
	if !no.IsValid() {
		no = netip.IPv4Unspecified()
	}
	return nb == no
}

func (b binding) clashes(o binding) bool {
	if b.ip.IsValid() && o.ip.IsValid() && b.ip.Is4() != o.ip.Is4() {
		return false // 0.0.0.0 and :: take one family each; no address takes both
	}
	return b.proto == o.proto &&
		b.ports.Start <= o.ports.End && o.ports.Start <= b.ports.End &&
		(b.anyAddr() || o.anyAddr() || b.ip == o.ip)
}

func (b binding) String() string {
	switch {
	case !b.ip.IsValid():
		return "0.0.0.0:" + b.ports.String() + "/" + b.proto
	case b.ip.Is6():
		return "[" + b.ip.String() + "]:" + b.ports.String() + "/" + b.proto
	}
	return b.ip.String() + ":" + b.ports.String() + "/" + b.proto
}

// registry holds what containers claimed so far on one host: names,
// namespaces, static addresses and host ports.
type registry struct {
	runtime bool // checking a container added at run time
	names   map[string]string
	netns   map[string]string
	ips     map[string]map[netip.Addr]string
	ports   []binding
}

// newRegistry starts with the host ports the agent itself uses.
func newRegistry(c *Config, runtime bool) *registry {
	r := &registry{runtime: runtime, names: map[string]string{}, netns: map[string]string{}, ips: map[string]map[netip.Addr]string{}}
	if h := c.Host.Address; h.IsValid() {
		if bp := c.Cluster.BindPort; bp > 0 && bp <= 65535 {
			for _, proto := range []string{ProtoTCP, ProtoUDP} {
				r.ports = append(r.ports, binding{ip: h, ports: PortRange{uint16(bp), uint16(bp)}, proto: proto, owner: fmt.Sprintf("gossip on %s (cluster.bind_port)", netip.AddrPortFrom(h, uint16(bp)))})
			}
		}
		for i := range c.Networks {
			n := &c.Networks[i]
			if effDriver(n) == DriverOverlay && n.VXLANPort > 0 && n.VXLANPort <= 65535 {
				r.ports = append(r.ports, binding{ip: h, ports: PortRange{uint16(n.VXLANPort), uint16(n.VXLANPort)}, proto: ProtoUDP, owner: fmt.Sprintf("VXLAN of network %q on %s/udp (vxlan_port)", n.Name, netip.AddrPortFrom(h, uint16(n.VXLANPort)))})
			}
		}
	}
	if a, port, ok := metricsBinding(c); ok {
		r.ports = append(r.ports, binding{ip: a, ports: PortRange{port, port}, proto: ProtoTCP, owner: fmt.Sprintf("metrics on %s (metrics.listen)", c.Metrics.Listen)})
	}
	return r
}

// claim checks ct against everything claimed before it, then records its
// claims. With v nil it only records (containers already validated).
func (v *validator) claim(r *registry, ct *Container, p string) {
	f := func(name string) string { return fieldPath(p, name) }
	report := func(path string, format string, args ...any) {
		if v != nil {
			n := len(v.errs)
			v.errorf(path, format, args...)
			for _, e := range v.errs[n:] {
				e.err = ErrConflict
			}
		}
	}
	nameTaken := false
	if ct.Name != "" {
		key := strings.ToLower(ct.Name)
		if owner, dup := r.names[key]; dup {
			nameTaken = true
			switch {
			case r.runtime:
				report(f("name"), "container %q already exists", owner)
			case owner != ct.Name:
				report(f("name"), "container name %q differs from %q only in case (DNS names ignore case)", ct.Name, owner)
			default:
				report(f("name"), "duplicate container name %q", ct.Name)
			}
		} else {
			r.names[key] = ct.Name
		}
	}
	if ownsNetns(ct) && ct.NetnsName() != "" {
		ns := ct.NetnsName()
		if owner, dup := r.netns[ns]; dup {
			if !(nameTaken && ns == ct.Name) {
				report(f("netns"), "netns %q is already used by container %q", ns, owner)
			}
		} else {
			r.netns[ns] = ct.Name
		}
	}
	onNet := map[string]bool{}
	for _, n := range ct.Networks {
		onNet[n] = true
	}
	claimIPs(r, ct, ct.IP, f("ip"), onNet, report)
	claimIPs(r, ct, ct.IP6, f("ip6"), onNet, report)
	for j, s := range ct.Publish {
		if s.HostPort.IsZero() || s.ContainerPort.IsZero() {
			continue // a random host port, or a spec that did not parse
		}
		owner := fmt.Sprintf("container %q", ct.Name)
		if !r.runtime {
			owner += " (" + indexPath(f("publish"), j) + ")"
		}
		b := binding{ip: s.HostIP, ports: s.HostPort, proto: s.Proto, owner: owner, byUser: true}
		clash := false
		for _, o := range r.ports {
			if !b.clashes(o) {
				continue
			}
			clash = true
			sp := indexPath(f("publish"), j)
			switch {
			case !o.byUser:
				report(sp, "host port %s clashes with %s", b, o.owner)
			case b.ports == o.ports && b.sameAddrs(o):
				report(sp, "host port %s is already published by %s", b, o.owner)
			default:
				report(sp, "host port %s overlaps %s, published by %s", b, o, o.owner)
			}
			break
		}
		if !clash {
			r.ports = append(r.ports, b)
		}
	}
}

// claimIPs records static addresses per network (ip or ip6), reporting
// one taken before.
func claimIPs(r *registry, ct *Container, ips map[string]netip.Addr, field string, onNet map[string]bool, report func(string, string, ...any)) {
	keys := make([]string, 0, len(ips))
	for k := range ips {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := ips[k]
		if !a.IsValid() || !onNet[k] {
			continue
		}
		m := r.ips[k]
		if m == nil {
			m = map[netip.Addr]string{}
			r.ips[k] = m
		}
		if owner, dup := m[a]; dup {
			report(keyPath(field, k), "%s is already the address of container %q on network %q", a, owner, k)
			continue
		}
		m[a] = ct.Name
	}
}
