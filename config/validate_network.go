package config

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// validNetworkName matches Docker's network names, which also keeps them
// safe inside device names and link aliases ("vxmesh:net=NAME").
var validNetworkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// netEnv is what container checks need to know about the networks.
type netEnv struct {
	byName  map[string]*Network
	ctrs    map[string]*Container // the config's containers by lower-case name, for links
	usable  map[string]bool       // the subnet is valid, so containment can be checked
	usable6 map[string]bool       // the same for subnet6
	broken  bool                  // the networks list did not decode: names are unknown
}

func newNetEnv(c *Config, pos *positions) *netEnv {
	env := &netEnv{byName: map[string]*Network{}, ctrs: map[string]*Container{}, usable: map[string]bool{}, usable6: map[string]bool{}, broken: pos.broken("networks")}
	for i := range c.Networks {
		n := &c.Networks[i]
		if n.Name == "" {
			continue
		}
		if _, dup := env.byName[n.Name]; !dup {
			env.byName[n.Name] = n
			env.usable[n.Name] = subnetProblem(n.Subnet) == ""
			env.usable6[n.Name] = subnet6Problem(n.Subnet6) == ""
		}
		if pos.broken(indexPath("networks", i)) || pos.broken(indexPath("networks", i)+".name") {
			env.broken = true // a network whose name we could not read may be the one referred to
		}
	}
	for i := range c.Containers {
		ct := &c.Containers[i]
		if k := strings.ToLower(ct.Name); ct.Name != "" && env.ctrs[k] == nil {
			env.ctrs[k] = ct
		}
	}
	return env
}

// subnetProblem says why p cannot be a container network's subnet, or "".
func subnetProblem(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "missing"
	case !p.Addr().Is4():
		return fmt.Sprintf("%s is not IPv4 (an IPv6 subnet goes in subnet6)", p)
	case p != p.Masked():
		return fmt.Sprintf("%s is not a network address: host bits are set (did you mean %s?)", p, p.Masked())
	case p.Bits() > 30:
		return fmt.Sprintf("%s is too small: a network needs at least a /30 (network, gateway, one container, broadcast)", p)
	}
	return ""
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	u := binary.BigEndian.Uint32(a[:]) | (^uint32(0) >> p.Bits())
	binary.BigEndian.PutUint32(a[:], u)
	return netip.AddrFrom4(a)
}

// addrInSubnet says why a cannot be an address inside subnet s (what names
// the address's role in the message), or "".
func addrInSubnet(a netip.Addr, s netip.Prefix) string {
	switch {
	case !a.Is4() || !s.Contains(a):
		return fmt.Sprintf("%s is outside subnet %s", a, s)
	case a == s.Addr():
		return fmt.Sprintf("%s is the network address of %s", a, s)
	case a == broadcast(s):
		return fmt.Sprintf("%s is the broadcast address of %s", a, s)
	}
	return ""
}

// deviceNameProblem applies the kernel's rules for link names
// (dev_valid_name), or says "".
func deviceNameProblem(s string) string {
	if len(s) > MaxDeviceNameLen {
		return fmt.Sprintf("%q is %d bytes, longer than the kernel's limit of %d for a device name", s, len(s), MaxDeviceNameLen)
	}
	if s == "." || s == ".." {
		return fmt.Sprintf("%q is not a valid device name", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Sprintf("%q is not a valid device name (no '/', ':', spaces or control characters)", s)
		}
	}
	return ""
}

func (v *validator) networks(c *Config) *netEnv {
	seen := map[string]int{}
	for i := range c.Networks {
		n := &c.Networks[i]
		p := indexPath("networks", i)
		v.network(c, n, p)
		if n.Name != "" {
			if j, dup := seen[n.Name]; dup {
				v.errorf(p+".name", "duplicate network name %q (also networks[%d])", n.Name, j)
			} else {
				seen[n.Name] = i
			}
		}
	}
	v.networkClashes(c)
	v.subnet6Clashes(c)
	return newNetEnv(c, v.pos)
}

// network checks one network by itself; p is its path.
func (v *validator) network(c *Config, n *Network, p string) {
	v.networkName(n, p)
	driver := effDriver(n)
	switch driver {
	case DriverBridge, DriverOverlay, DriverMacvlan, DriverIPvlan:
	default:
		v.errorf(p+".driver", "%q is not a driver (want bridge, overlay, macvlan or ipvlan)", n.Driver)
	}
	usable := v.networkAddrs(n, p)
	usable6 := v.networkAddrs6(n, p)
	v.networkDevices(n, p, driver)
	v.networkOverlay(n, p, driver)
	v.networkParent(n, p, driver)
	if usable && (driver == DriverBridge || driver == DriverOverlay) && c.Host.Address.IsValid() && n.Subnet.Contains(c.Host.Address.Unmap()) {
		v.errorf(p+".subnet", "%s contains the host address %s (the underlay must stay outside container networks)", n.Subnet, c.Host.Address)
	}
	if usable6 && (driver == DriverBridge || driver == DriverOverlay) && c.Host.Address.IsValid() && n.Subnet6.Contains(c.Host.Address) {
		v.errorf(p+".subnet6", "%s contains the host address %s (the underlay must stay outside container networks)", n.Subnet6, c.Host.Address)
	}
}

func (v *validator) networkName(n *Network, p string) {
	switch {
	case n.Name == "":
		v.required(p + ".name")
	case !validNetworkName.MatchString(n.Name):
		v.errorf(p+".name", "%q is not a valid network name (up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit)", n.Name)
	}
}

// networkAddrs checks the subnet, gateway and IP range; it reports whether
// the subnet is usable (so addresses can be checked against it).
func (v *validator) networkAddrs(n *Network, p string) bool {
	usable := false
	switch msg := subnetProblem(n.Subnet); msg {
	case "missing":
		if !n.Subnet6.IsValid() {
			v.required(p + ".subnet") // one of subnet and subnet6
		}
	case "":
		usable = true
	default:
		v.errorf(p+".subnet", "%s", msg)
	}
	if !n.Subnet.IsValid() && n.Subnet6.IsValid() {
		// IPv6 only: the IPv4 fields have nothing to lie in.
		if n.Gateway.IsValid() {
			v.errorf(p+".gateway", "gateway needs subnet (this network is IPv6 only; the IPv6 gateway is gateway6)")
		}
		if n.IPRange.IsValid() {
			v.errorf(p+".ip_range", "ip_range needs subnet (this network is IPv6 only; the IPv6 range is ip_range6)")
		}
		return false
	}
	if gw := n.Gateway; gw.IsValid() {
		if usable {
			if msg := addrInSubnet(gw, n.Subnet); msg != "" {
				v.errorf(p+".gateway", "%s", msg)
			}
		} else if !gw.Is4() && (!n.Subnet.IsValid() || gw != n.Subnet.Masked().Addr().Next()) {
			v.errorf(p+".gateway", "%s is not IPv4 (an IPv6 gateway goes in gateway6)", gw)
		}
	}
	if r := n.IPRange; r.IsValid() {
		switch {
		case !r.Addr().Is4():
			v.errorf(p+".ip_range", "%s is not IPv4 (an IPv6 range goes in ip_range6)", r)
		case r != r.Masked():
			v.errorf(p+".ip_range", "%s is not a network address: host bits are set (did you mean %s?)", r, r.Masked())
		case usable && (r.Bits() < n.Subnet.Bits() || !n.Subnet.Contains(r.Addr())):
			v.errorf(p+".ip_range", "%s is outside subnet %s", r, n.Subnet)
		}
	}
	return usable
}

// networkDevices checks the bridge device name and the MTU.
func (v *validator) networkDevices(n *Network, p, driver string) {
	hasBridge := driver == DriverBridge || driver == DriverOverlay
	if n.Bridge != "" {
		if !hasBridge && (driver == DriverMacvlan || driver == DriverIPvlan) {
			v.errorf(p+".bridge", "bridge is only for bridge and overlay networks (%s has no bridge)", driver)
		} else if msg := deviceNameProblem(n.Bridge); msg != "" {
			v.errorf(p+".bridge", "%s", msg)
		}
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		v.errorf(p+".mtu", "%d is out of range 68..65535", n.MTU)
	}
}

// networkOverlay checks the VXLAN settings, which only overlays may have.
func (v *validator) networkOverlay(n *Network, p, driver string) {
	if driver == DriverOverlay {
		if n.VNI > MaxVNI {
			v.errorf(p+".vni", "%d is out of range 1..%d", n.VNI, MaxVNI)
		}
		if n.VXLANPort < 0 || n.VXLANPort > 65535 {
			v.errorf(p+".vxlan_port", "%d is out of range 1..65535", n.VXLANPort)
		}
		return
	}
	if n.VNI != 0 || v.pos.given(p+".vni") {
		v.errorf(p+".vni", "vni is only for overlay networks (this one is %s)", driver)
	}
	if n.VXLANPort != 0 || v.pos.given(p+".vxlan_port") {
		v.errorf(p+".vxlan_port", "vxlan_port is only for overlay networks (this one is %s)", driver)
	}
}

// networkParent checks the parent link, which macvlan and ipvlan need and
// the others may not have.
func (v *validator) networkParent(n *Network, p, driver string) {
	switch driver {
	case DriverMacvlan, DriverIPvlan:
		if n.Parent == "" {
			v.required(p + ".parent")
		} else if msg := deviceNameProblem(n.Parent); msg != "" {
			v.errorf(p+".parent", "%s", msg)
		}
	default:
		if n.Parent != "" {
			v.errorf(p+".parent", "parent is only for macvlan and ipvlan networks (this one is %s)", driver)
		}
	}
}

// vniDerived reports whether the network at path got its VNI from its name.
func (v *validator) vniDerived(n *Network, path string) bool {
	if v.pos != nil {
		return !v.pos.given(path + ".vni")
	}
	return n.VNI == 0
}

// networkClashes checks what two networks of one host must not share:
// address space, VNIs and device names.
func (v *validator) networkClashes(c *Config) {
	var subnets []int
	vnis := map[uint32]int{}
	devs := map[string]string{} // bridge device name -> network
	for i := range c.Networks {
		n := &c.Networks[i]
		p := indexPath("networks", i)
		if subnetProblem(n.Subnet) == "" {
			for _, j := range subnets {
				o := &c.Networks[j]
				if n.Subnet.Overlaps(o.Subnet) {
					v.errorf(p+".subnet", "%s overlaps subnet %s of network %q", n.Subnet, o.Subnet, o.Name)
					break
				}
			}
			subnets = append(subnets, i)
		}
		if effDriver(n) == DriverOverlay {
			vni := effVNI(n)
			if j, dup := vnis[vni]; dup && c.Networks[j].Name != n.Name {
				o := &c.Networks[j]
				how := ""
				if v.vniDerived(o, indexPath("networks", j)) {
					how = ", derived from its name"
				}
				if v.vniDerived(n, p) {
					v.errorf(p+".vni", "vni %d, derived from the name, is already used by network %q%s; set vni explicitly", vni, o.Name, how)
				} else {
					v.errorf(p+".vni", "vni %d is already used by network %q%s", vni, o.Name, how)
				}
			} else if !dup {
				vnis[vni] = i
			}
		}
	}
	// Device names: a bridge must not take another bridge's name, nor the
	// name of an overlay's VXLAN device.
	vxlan := map[string]string{}
	for i := range c.Networks {
		if n := &c.Networks[i]; effDriver(n) == DriverOverlay && n.Name != "" {
			vxlan[ShortName("vx-", strconv.FormatUint(uint64(effVNI(n)), 10))] = n.Name
		}
	}
	named := map[string]bool{}
	for i := range c.Networks {
		n := &c.Networks[i]
		if d := effDriver(n); d != DriverBridge && d != DriverOverlay || n.Name == "" || named[n.Name] {
			continue // a duplicate name is reported as such
		}
		named[n.Name] = true
		p := indexPath("networks", i) + ".bridge"
		name := n.BridgeName()
		if owner, dup := devs[name]; dup {
			v.errorf(p, "bridge device %q is already the bridge of network %q", name, owner)
			continue
		}
		if owner, ok := vxlan[name]; ok {
			v.errorf(p, "bridge device %q is the VXLAN device of network %q", name, owner)
		}
		devs[name] = n.Name
	}
}
