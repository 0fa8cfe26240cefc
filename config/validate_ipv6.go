package config

import (
	"fmt"
	"net/netip"
)

// IPv6 checks of networks and containers: subnet6, gateway6, ip_range6 and
// ip6, kept apart from the IPv4 ones they mirror.

// subnet6Problem says why p cannot be a container network's IPv6 subnet,
// or "".
func subnet6Problem(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "missing"
	case !p.Addr().Is6() || p.Addr().Is4In6():
		return fmt.Sprintf("%s is not IPv6 (subnet6 is the IPv6 subnet; the IPv4 one is subnet)", p)
	case p.Addr().Zone() != "":
		return fmt.Sprintf("%s: an IPv6 zone is not allowed here", p)
	case p != p.Masked():
		return fmt.Sprintf("%s is not a network address: host bits are set (did you mean %s?)", p, p.Masked())
	case p.Bits() > 126:
		return fmt.Sprintf("%s is too small: a network needs at least a /126 (subnet-router anycast, gateway, containers)", p)
	case p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() || p.Addr().IsLoopback() || p.Addr().IsUnspecified():
		return fmt.Sprintf("%s is not a unicast prefix for containers (multicast, link-local, loopback or unspecified)", p)
	}
	return ""
}

// addrInSubnet6 says why a cannot be an IPv6 address inside subnet s, or "".
// IPv6 has no broadcast address; the network address is the subnet-router
// anycast address, which hosts must not take.
func addrInSubnet6(a netip.Addr, s netip.Prefix) string {
	switch {
	case !a.Is6() || a.Is4In6() || a.Zone() != "" || !s.Contains(a):
		return fmt.Sprintf("%s is outside subnet6 %s", a, s)
	case a == s.Addr():
		return fmt.Sprintf("%s is the subnet-router anycast address of %s", a, s)
	}
	return ""
}

// effGateway6 is the network's IPv6 gateway: Gateway6, or the first
// address of Subnet6.
func effGateway6(n *Network) netip.Addr {
	if !n.Gateway6.IsValid() && n.Subnet6.IsValid() {
		return n.Subnet6.Masked().Addr().Next()
	}
	return n.Gateway6
}

// networkAddrs6 checks subnet6, gateway6 and ip_range6; it reports whether
// subnet6 is usable (so addresses can be checked against it).
func (v *validator) networkAddrs6(n *Network, p string) bool {
	usable := false
	switch msg := subnet6Problem(n.Subnet6); msg {
	case "missing":
	case "":
		usable = true
	default:
		v.errorf(p+".subnet6", "%s", msg)
	}
	if gw := n.Gateway6; gw.IsValid() {
		switch {
		case !n.Subnet6.IsValid():
			v.errorf(p+".gateway6", "gateway6 needs subnet6")
		case usable:
			if msg := addrInSubnet6(gw, n.Subnet6); msg != "" {
				v.errorf(p+".gateway6", "%s", msg)
			}
		}
	}
	if r := n.IPRange6; r.IsValid() {
		switch {
		case !n.Subnet6.IsValid():
			v.errorf(p+".ip_range6", "ip_range6 needs subnet6")
		case !r.Addr().Is6() || r.Addr().Is4In6():
			v.errorf(p+".ip_range6", "%s is not IPv6", r)
		case r != r.Masked():
			v.errorf(p+".ip_range6", "%s is not a network address: host bits are set (did you mean %s?)", r, r.Masked())
		case usable && (r.Bits() < n.Subnet6.Bits() || !n.Subnet6.Contains(r.Addr())):
			v.errorf(p+".ip_range6", "%s is outside subnet6 %s", r, n.Subnet6)
		}
	}
	return usable
}

// subnet6Clashes reports IPv6 subnets that overlap another network's.
func (v *validator) subnet6Clashes(c *Config) {
	var seen []int
	for i := range c.Networks {
		n := &c.Networks[i]
		if subnet6Problem(n.Subnet6) != "" {
			continue
		}
		for _, j := range seen {
			if o := &c.Networks[j]; n.Subnet6.Overlaps(o.Subnet6) {
				v.errorf(indexPath("networks", i)+".subnet6", "%s overlaps subnet6 %s of network %q", n.Subnet6, o.Subnet6, o.Name)
				break
			}
		}
		seen = append(seen, i)
	}
}

// containerIPs6 checks the static IPv6 addresses against the networks.
func (v *validator) containerIPs6(env *netEnv, c *Container, f func(string) string, onNet map[string]bool) {
	for s := range v.staticAddrs(env, c.IP6, f("ip6"), onNet) {
		a, k, kp, n := s.addr, s.net, s.path, s.n
		if !a.IsValid() || n == nil {
			continue
		}
		switch {
		case !n.Subnet6.IsValid():
			v.errorf(kp, "network %q has no subnet6 (it is IPv4 only)", k)
		case !env.usable6[k]:
		case addrInSubnet6(a, n.Subnet6) != "":
			v.errorf(kp, "%s of network %q", addrInSubnet6(a, n.Subnet6), k)
		case a == effGateway6(n):
			v.errorf(kp, "%s is the gateway6 of network %q", a, k)
		}
	}
}
