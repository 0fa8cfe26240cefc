package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ValidateCluster checks what the configs of one cluster's hosts must agree
// on, each config valid by itself: host names and addresses are unique; an
// overlay network has the same driver, subnet, gateway, subnet6,
// gateway6, VNI, VXLAN port,
// MTU and internal flag on every host; two overlays never share a VNI; the
// hosts' ip_range blocks of one overlay do not overlap; static addresses and
// container names on an overlay are unique across hosts. Each error points
// into the later of the two configs involved. It returns nil when all agree.
func ValidateCluster(cfgs []*Config) ErrorList {
	cv := &clusterValidator{
		hostNames: map[string]*Config{},
		hostAddrs: map[netip.Addr]*Config{},
		networks:  map[string]netSeen{},
		vnis:      map[uint32]netSeen{},
		ranges:    map[string][]netSeen{},
		ips:       map[string]map[netip.Addr]ctrSeen{},
		names:     map[string]map[string]ctrSeen{},
	}
	for _, c := range cfgs {
		if c != nil {
			cv.config(c)
		}
	}
	cv.errs.Sort()
	return cv.errs
}

type netSeen struct {
	cfg *Config
	n   *Network
}

type ctrSeen struct {
	cfg *Config
	ct  *Container
}

type clusterValidator struct {
	errs      ErrorList
	hostNames map[string]*Config
	hostAddrs map[netip.Addr]*Config
	networks  map[string]netSeen                // first definition of each network name
	vnis      map[uint32]netSeen                // first overlay with each VNI
	ranges    map[string][]netSeen              // overlay name -> hosts with an ip_range
	ips       map[string]map[netip.Addr]ctrSeen // overlay -> static address -> container
	names     map[string]map[string]ctrSeen     // overlay -> lower-case container name
}

func (cv *clusterValidator) errorf(c *Config, path, format string, args ...any) {
	v := &validator{file: c.File, pos: c.pos}
	v.errorf(path, format, args...)
	cv.errs = append(cv.errs, v.errs...)
}

// host names another config's host in messages: `host "h1" (h1.yaml)`.
func host(c *Config) string {
	s := fmt.Sprintf("host %q", c.Host.Name)
	if c.File != "" {
		s += " (" + c.File + ")"
	}
	return s
}

func (cv *clusterValidator) config(c *Config) {
	if name := strings.ToLower(c.Host.Name); name != "" {
		if o, dup := cv.hostNames[name]; dup {
			cv.errorf(c, "host.name", "%q is also the name of %s", c.Host.Name, host(o))
		} else {
			cv.hostNames[name] = c
		}
	}
	if a := c.Host.Address; a.IsValid() {
		if o, dup := cv.hostAddrs[a]; dup {
			cv.errorf(c, "host.address", "%s is also the address of %s", a, host(o))
		} else {
			cv.hostAddrs[a] = c
		}
	}
	for i := range c.Networks {
		cv.network(c, &c.Networks[i], indexPath("networks", i))
	}
	for i := range c.Containers {
		cv.container(c, &c.Containers[i], indexPath("containers", i))
	}
}

func (cv *clusterValidator) network(c *Config, n *Network, p string) {
	first, seen := cv.networks[n.Name]
	if !seen {
		cv.networks[n.Name] = netSeen{c, n}
	}
	overlay := effDriver(n) == DriverOverlay
	if seen && first.cfg != c {
		o := first.n
		if overlay != (effDriver(o) == DriverOverlay) {
			cv.errorf(c, p+".driver", "network %q is %s here but %s on %s; an overlay must be one on every host", n.Name, driverNoun(n), driverNoun(o), host(first.cfg))
			return
		}
		if overlay {
			type field struct {
				name      string
				here, was string
			}
			for _, f := range []field{
				{"subnet", n.Subnet.String(), o.Subnet.String()},
				{"gateway", effGateway(n).String(), effGateway(o).String()},
				{"subnet6", n.Subnet6.String(), o.Subnet6.String()},
				{"gateway6", effGateway6(n).String(), effGateway6(o).String()},
				{"vni", fmt.Sprint(effVNI(n)), fmt.Sprint(effVNI(o))},
				{"vxlan_port", fmt.Sprint(portOr(n.VXLANPort, DefaultVXLANPort)), fmt.Sprint(portOr(o.VXLANPort, DefaultVXLANPort))},
				{"mtu", fmt.Sprint(n.MTU), fmt.Sprint(o.MTU)},
				{"internal", fmt.Sprint(n.Internal), fmt.Sprint(o.Internal)},
			} {
				if f.name == "mtu" && (n.MTU == 0 || o.MTU == 0) {
					continue // derived from each host's underlay
				}
				if f.name == "gateway" && n.Subnet != o.Subnet || f.name == "gateway6" && n.Subnet6 != o.Subnet6 {
					continue // follows from the subnet, reported already
				}
				if f.here != f.was {
					cv.errorf(c, p+"."+f.name, "overlay %q has %s %s here but %s on %s", n.Name, f.name, f.here, f.was, host(first.cfg))
				}
			}
		}
	}
	if !overlay {
		return
	}
	vni := effVNI(n)
	if o, dup := cv.vnis[vni]; dup && o.cfg != c && o.n.Name != n.Name {
		cv.errorf(c, p+".vni", "vni %d of overlay %q is also the vni of overlay %q on %s", vni, n.Name, o.n.Name, host(o.cfg))
	} else if !dup {
		cv.vnis[vni] = netSeen{c, n}
	}
	if r := n.IPRange; r.IsValid() {
		for _, o := range cv.ranges[n.Name] {
			if o.cfg != c && r.Overlaps(o.n.IPRange) {
				cv.errorf(c, p+".ip_range", "%s overlaps ip_range %s of overlay %q on %s", r, o.n.IPRange, n.Name, host(o.cfg))
				break
			}
		}
		cv.ranges[n.Name] = append(cv.ranges[n.Name], netSeen{c, n})
	}
	if r := n.IPRange6; r.IsValid() {
		key := n.Name + "\x00v6"
		for _, o := range cv.ranges[key] {
			if o.cfg != c && r.Overlaps(o.n.IPRange6) {
				cv.errorf(c, p+".ip_range6", "%s overlaps ip_range6 %s of overlay %q on %s", r, o.n.IPRange6, n.Name, host(o.cfg))
				break
			}
		}
		cv.ranges[key] = append(cv.ranges[key], netSeen{c, n})
	}
}

func driverNoun(n *Network) string {
	if d := effDriver(n); d == DriverOverlay {
		return "an overlay"
	} else {
		return "a " + d + " network"
	}
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

func (cv *clusterValidator) container(c *Config, ct *Container, p string) {
	for _, name := range ct.Networks {
		n := c.NetworkByName(name)
		if n == nil || effDriver(n) != DriverOverlay {
			continue
		}
		if ct.Name != "" {
			m := cv.names[name]
			if m == nil {
				m = map[string]ctrSeen{}
				cv.names[name] = m
			}
			key := strings.ToLower(ct.Name)
			if o, dup := m[key]; dup && o.cfg != c {
				cv.errorf(c, p+".name", "container %q is also on overlay %q on %s; names must be unique across an overlay", ct.Name, name, host(o.cfg))
			} else if !dup {
				m[key] = ctrSeen{c, ct}
			}
		}
		cv.staticIP(c, ct, ct.IP[name], name, keyPath(p+".ip", name))
		cv.staticIP(c, ct, ct.IP6[name], name, keyPath(p+".ip6", name))
	}
}

// staticIP records a static address on an overlay, reporting one another
// host's container has.
func (cv *clusterValidator) staticIP(c *Config, ct *Container, a netip.Addr, network, path string) {
	if !a.IsValid() {
		return
	}
	m := cv.ips[network]
	if m == nil {
		m = map[netip.Addr]ctrSeen{}
		cv.ips[network] = m
	}
	if o, dup := m[a]; dup && o.cfg != c {
		cv.errorf(c, path, "%s is also the address of container %q on %s", a, o.ct.Name, host(o.cfg))
	} else if !dup {
		m[a] = ctrSeen{c, ct}
	}
}
