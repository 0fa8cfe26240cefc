package config

import (
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// netnsNameProblem checks a name for /run/netns/NAME and /etc/netns/NAME,
// or says "".
func netnsNameProblem(s string) string {
	if s == "." || s == ".." || len(s) > 255 {
		return fmt.Sprintf("%q is not a valid netns name", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c <= ' ' || c == 0x7f {
			return fmt.Sprintf("%q is not a valid netns name (no '/', spaces or control characters)", s)
		}
	}
	return ""
}

// containers checks every container, then what containers must not share.
func (v *validator) containers(c *Config, env *netEnv) {
	reg := newRegistry(c, false)
	for i := range c.Containers {
		ct := &c.Containers[i]
		p := indexPath("containers", i)
		v.container(env, ct, p)
		v.mode(c, ct, p, false)
		v.claim(reg, ct, p)
	}
	v.modeCycles(c)
}

// container checks one container by itself and against the networks.
// p is its path: "containers[2]", or "" for a container added at run time.
func (v *validator) container(env *netEnv, c *Container, p string) {
	f := func(name string) string { return fieldPath(p, name) }
	switch {
	case c.Name == "":
		v.required(f("name"))
	case !ValidDNSName(c.Name):
		v.errorf(f("name"), "%q is not a valid container name (dot-separated labels of letters, digits, '-' and '_')", c.Name)
	}
	v.containerMode(c, f)
	onNet := v.containerNetworks(env, c, f)
	v.containerIPs(env, c, f, onNet)
	v.containerIPs6(env, c, f, onNet)
	v.links(env, c, f, onNet)
	v.containerNames(c, f)
	v.containerDNS(c, f)
	v.publish(env, c, p)
}

// containerMode checks the mode and what it excludes: networks, a netns of
// its own, and the name files of a container that joins another's.
func (v *validator) containerMode(c *Container, f func(string) string) {
	_, joins := c.JoinsContainer()
	switch {
	case c.Mode == "" || c.Mode == ModeHost || c.Mode == ModeNone || joins:
	case c.Mode == ModeContainer:
		v.errorf(f("mode"), "%q names no container (want container:NAME)", c.Mode)
	default:
		v.errorf(f("mode"), "%q is not a mode (want host, none or container:NAME)", c.Mode)
	}
	if c.Mode != "" && len(c.Networks) > 0 {
		v.errorf(f("mode"), "mode %q cannot be combined with networks", c.Mode)
	}
	if c.Netns != "" {
		if !ownsNetns(c) {
			v.errorf(f("netns"), "netns cannot be set with mode %q: the container uses that namespace", c.Mode)
		} else if msg := netnsNameProblem(c.Netns); msg != "" && c.Netns != c.Name {
			v.errorf(f("netns"), "%s", msg)
		}
	}
	if !joins {
		return
	}
	// The other container's namespace comes with its name files.
	for _, x := range []struct {
		field string
		set   bool
	}{
		{"hostname", c.Hostname != ""},
		{"dns", len(c.DNS) > 0},
		{"dns_search", len(c.DNSSearch) > 0},
		{"dns_options", len(c.DNSOptions) > 0},
		{"extra_hosts", len(c.ExtraHosts) > 0},
		{"links", len(c.Links) > 0},
	} {
		if x.set {
			v.errorf(f(x.field), "%s cannot be set with mode %q: the container shares that container's files", x.field, c.Mode)
		}
	}
}

// containerNetworks checks the list of networks and returns them as a set.
func (v *validator) containerNetworks(env *netEnv, c *Container, f func(string) string) map[string]bool {
	onNet := map[string]bool{}
	for j, name := range c.Networks {
		np := indexPath(f("networks"), j)
		switch {
		case name == "":
			v.required(np)
		case onNet[name]:
			v.errorf(np, "network %q is listed twice", name)
		case env.byName[name] == nil && !env.broken:
			v.errorf(np, "network %q does not exist", name)
		}
		onNet[name] = true
	}
	return onNet
}

// staticAddr is one entry of a container's ip or ip6 map whose network
// the container is on.
type staticAddr struct {
	net  string
	addr netip.Addr
	path string   // e.g. containers[0].ip.web
	n    *Network // nil when the network is broken
}

// staticAddrs yields the entries of m (the container's ip or ip6 map, at
// field) in network order, reporting those on a network the container is
// not on, so that ip and ip6 are checked the same way.
func (v *validator) staticAddrs(env *netEnv, m map[string]netip.Addr, field string, onNet map[string]bool) iter.Seq[staticAddr] {
	return func(yield func(staticAddr) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			kp := keyPath(field, k)
			if !onNet[k] {
				if env.byName[k] == nil && !env.broken {
					v.at(kp, true, "network %q does not exist", k)
				} else {
					v.at(kp, true, "the container is not on network %q", k)
				}
				continue
			}
			if !yield(staticAddr{net: k, addr: m[k], path: kp, n: env.byName[k]}) {
				return
			}
		}
	}
}

// containerIPs checks the static addresses against the networks.
func (v *validator) containerIPs(env *netEnv, c *Container, f func(string) string, onNet map[string]bool) {
	for s := range v.staticAddrs(env, c.IP, f("ip"), onNet) {
		a, k, kp, n := s.addr, s.net, s.path, s.n
		if a.IsValid() && n != nil && !n.Subnet.IsValid() && n.Subnet6.IsValid() {
			v.errorf(kp, "network %q has no subnet (it is IPv6 only; static IPv6 addresses go in ip6)", k)
			continue
		}
		if !a.IsValid() || n == nil || !env.usable[k] {
			continue
		}
		if msg := addrInSubnet(a, n.Subnet); msg != "" {
			v.errorf(kp, "%s of network %q", msg, k)
		} else if a == effGateway(n) {
			v.errorf(kp, "%s is the gateway of network %q", a, k)
		}
	}
}

// containerNames checks the aliases and the host name.
func (v *validator) containerNames(c *Container, f func(string) string) {
	for j, a := range c.Aliases {
		if !ValidDNSName(a) {
			v.errorf(indexPath(f("aliases"), j), "%q is not a valid DNS name", a)
		}
	}
	if len(c.Aliases) > 0 && len(c.Networks) == 0 {
		v.errorf(f("aliases"), "aliases need networks (the container is on none)")
	}
	if c.Hostname != "" && c.Hostname != c.Name && !ValidDNSName(c.Hostname) {
		v.errorf(f("hostname"), "%q is not a valid host name (dot-separated labels of letters, digits, '-' and '_')", c.Hostname)
	}
}

// containerDNS checks the resolv.conf settings.
func (v *validator) containerDNS(c *Container, f func(string) string) {
	for j, a := range c.DNS {
		if !a.IsValid() {
			continue
		}
		if msg := unicastProblem(a, false); msg != "" {
			v.errorf(indexPath(f("dns"), j), "%s", msg)
		} else if a == embeddedDNS {
			v.errorf(indexPath(f("dns"), j), "%s is the embedded DNS server itself; name the servers it should forward to", a)
		}
	}
	for j, d := range c.DNSSearch {
		if d != "." && !ValidDNSName(strings.TrimSuffix(d, ".")) {
			v.errorf(indexPath(f("dns_search"), j), "%q is not a valid domain", d)
		}
	}
	for j, o := range c.DNSOptions {
		if o == "" || strings.ContainsFunc(o, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			v.errorf(indexPath(f("dns_options"), j), "%q is not a resolv.conf option (e.g. ndots:2)", o)
		}
	}
}

// embeddedDNS is where the agent's DNS server listens in each container.
var embeddedDNS = netip.AddrFrom4([4]byte{127, 0, 0, 11})

// publish checks a container's published ports by themselves: where they
// may be published from. Clashes between them come in claim.
func (v *validator) publish(env *netEnv, c *Container, p string) {
	f := func(name string) string { return fieldPath(p, name) }
	for j, s := range c.Publish {
		sp := indexPath(f("publish"), j)
		if a := s.HostIP; a.IsValid() {
			switch {
			case a.Is6() && !hasSubnet6(env, c):
				v.errorf(sp, "publish %q: host IP %s is IPv6 but the container is on no network with subnet6", s.String(), a)
			case a.Is6() && a.IsLinkLocalUnicast():
				v.errorf(sp, "publish %q: host IP %s is link-local; publish on a global or unique-local host address", s.String(), a)
			case a.IsLoopback():
				v.errorf(sp, "publish %q: host IP %s is loopback, which DNAT cannot reach (there is no userland proxy); publish on a host address", s.String(), a)
			case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				v.errorf(sp, "publish %q: host IP %s is not a unicast address", s.String(), a)
			}
		}
	}
	if c.PublishAll && len(c.Expose) == 0 {
		v.errorf(f("publish_all"), "publish_all needs ports in expose")
	}
	if len(c.Publish) == 0 && !c.PublishAll {
		return
	}
	what := f("publish")
	if len(c.Publish) == 0 {
		what = f("publish_all")
	}
	if c.Mode != "" {
		v.errorf(what, "ports cannot be published with mode %q (only from a container's networks)", c.Mode)
		return
	}
	if len(c.Networks) == 0 {
		return
	}
	var internal []string
	for _, name := range c.Networks {
		n := env.byName[name]
		if n == nil {
			return // reported already; cannot tell where ports would go
		}
		d := effDriver(n)
		if d != DriverBridge && d != DriverOverlay {
			continue
		}
		if !n.Internal {
			return // a network ports can be published from
		}
		internal = append(internal, strconv.Quote(name))
	}
	switch len(internal) {
	case 0:
		v.errorf(what, "ports can only be published from a bridge or overlay network")
	case 1:
		v.errorf(what, "ports cannot be published: network %s is internal", internal[0])
	default:
		v.errorf(what, "ports cannot be published: networks %s are internal", strings.Join(internal, ", "))
	}
}

// mode checks that container:X names an existing container. At run time
// (runtime true) X must be one of the config's containers, not itself.
func (v *validator) mode(c *Config, ct *Container, p string, runtime bool) {
	other, joins := ct.JoinsContainer()
	if !joins {
		return
	}
	if runtime && strings.EqualFold(other, ct.Name) {
		v.errorf(fieldPath(p, "mode"), "mode %q: a container cannot join its own namespace", ct.Mode)
		return
	}
	if c.ContainerByName(other) == nil && !v.pos.broken("containers") {
		v.errorf(fieldPath(p, "mode"), "mode %q: container %q does not exist", ct.Mode, other)
	}
}

// modeCycles reports each cycle of container:X modes once, at its first
// container.
func (v *validator) modeCycles(c *Config) {
	index := map[string]int{}
	for i := range c.Containers {
		if _, dup := index[c.Containers[i].Name]; !dup {
			index[c.Containers[i].Name] = i
		}
	}
	for i := range c.Containers {
		chain := []int{i}
		seen := map[int]bool{i: true}
		j := i
		for {
			other, joins := c.Containers[j].JoinsContainer()
			if !joins {
				break
			}
			k, ok := index[other]
			if !ok {
				break
			}
			if k == i {
				first := true
				names := make([]string, 0, len(chain)+1)
				for _, m := range chain {
					if m < i {
						first = false
					}
					names = append(names, strconv.Quote(c.Containers[m].Name))
				}
				if first {
					names = append(names, strconv.Quote(c.Containers[i].Name))
					v.errorf(indexPath("containers", i)+".mode", "mode %q forms a cycle: %s", c.Containers[i].Mode, strings.Join(names, " -> "))
				}
				break
			}
			if seen[k] {
				break // a cycle that i only leads into: reported at its own members
			}
			seen[k] = true
			chain = append(chain, k)
			j = k
		}
	}
}

// hasSubnet6 reports whether one of c's networks has an IPv6 subnet (or
// the networks are unknown, which is reported elsewhere).
func hasSubnet6(env *netEnv, c *Container) bool {
	for _, name := range c.Networks {
		n := env.byName[name]
		if n == nil || n.Subnet6.IsValid() {
			return true
		}
	}
	return len(c.Networks) == 0
}
