package config

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// validator collects the semantic errors of one config. With positions
// (a config read from a file) errors carry the file, line and column;
// without (a config built in code, a container added at run time) only the
// path.
type validator struct {
	file string
	pos  *positions
	errs ErrorList
}

// at records an error at path, unless the value there (or around it)
// already failed to decode, which was reported then.
func (v *validator) at(path string, atKey bool, format string, args ...any) {
	if v.pos.broken(path) {
		return
	}
	p := v.pos.lookup(path, atKey)
	v.errs = append(v.errs, &Error{File: v.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) errorf(path, format string, args ...any) { v.at(path, false, format, args...) }

// required reports a missing value: absent, or given but empty.
func (v *validator) required(path string) {
	if v.pos.given(path) {
		v.errorf(path, "must not be empty")
	} else {
		v.errorf(path, "missing required field")
	}
}

// explicitZeros reports fields written as 0 whose zero value otherwise
// means "use the default"; it runs before SetDefaults replaces them.
func (v *validator) explicitZeros(c *Config) {
	if v.pos == nil {
		return
	}
	for _, f := range []struct {
		path, val, def string
	}{{"state_dir", c.StateDir, DefaultStateDir}, {"api.socket", c.API.Socket, DefaultSocket}} {
		if f.val == "" && v.pos.given(f.path) {
			v.errorf(f.path, "must not be empty (leave it out for the default %s)", f.def)
		}
	}
	if c.Cluster.BindPort == 0 && v.pos.given("cluster.bind_port") {
		v.errorf("cluster.bind_port", "0 is out of range 1..65535")
	}
	if c.Cluster.ReapAfter == 0 && v.pos.given("cluster.reap_after") {
		v.errorf("cluster.reap_after", "must be more than 0 (leave it out for the default %s)", DefaultReapAfter)
	}
	for i := range c.Networks {
		n := &c.Networks[i]
		p := indexPath("networks", i)
		if n.MTU == 0 && v.pos.given(p+".mtu") {
			v.errorf(p+".mtu", "0 is out of range 68..65535")
		}
		if n.VNI == 0 && v.pos.given(p+".vni") && effDriver(n) == DriverOverlay {
			v.errorf(p+".vni", "0 is out of range 1..%d", MaxVNI)
		}
		if n.VXLANPort == 0 && v.pos.given(p+".vxlan_port") && effDriver(n) == DriverOverlay {
			v.errorf(p+".vxlan_port", "0 is out of range 1..65535")
		}
	}
}

func effDriver(n *Network) string {
	if n.Driver == "" {
		return DefaultDriver
	}
	return n.Driver
}

func effVNI(n *Network) uint32 {
	if n.VNI == 0 {
		return DefaultVNI(n.Name)
	}
	return n.VNI
}

func effGateway(n *Network) netip.Addr {
	if !n.Gateway.IsValid() && n.Subnet.IsValid() {
		return n.Subnet.Masked().Addr().Next()
	}
	return n.Gateway
}

// ownsNetns reports whether the container has a network namespace of its
// own (not the host's, not another container's).
func ownsNetns(c *Container) bool {
	_, joins := c.JoinsContainer()
	return !joins && c.Mode != ModeHost
}

// config checks a whole config whose defaults are applied.
func (v *validator) config(c *Config) {
	v.host(c)
	v.paths(c)
	v.metrics(c)
	v.cluster(c)
	env := v.networks(c)
	v.containers(c, env)
}

func (v *validator) host(c *Config) {
	switch {
	case c.Host.Name == "":
		v.required("host.name")
	case !ValidDNSName(c.Host.Name):
		v.errorf("host.name", "%q is not a valid host name (dot-separated labels of letters, digits, '-' and '_')", c.Host.Name)
	}
	if !c.Host.Address.IsValid() {
		v.required("host.address")
	} else if msg := unicastProblem(c.Host.Address, false); msg != "" {
		v.errorf("host.address", "%s", msg)
	}
}

// unicastProblem says why a is unusable as a host's unicast address, or "".
func unicastProblem(a netip.Addr, zoneOK bool) string {
	switch {
	case a.Zone() != "" && !zoneOK:
		return fmt.Sprintf("%s: an IPv6 zone is not allowed here", a)
	case a.Is4In6():
		return fmt.Sprintf("%s is an IPv4-mapped IPv6 address; write it as %s", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Sprintf("%s is not a unicast address (unspecified)", a)
	case a.IsMulticast():
		return fmt.Sprintf("%s is not a unicast address (multicast)", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s is not a unicast address (broadcast)", a)
	}
	return ""
}

// maxSocketPath is the longest unix socket path (sun_path minus its NUL).
const maxSocketPath = 107

func (v *validator) paths(c *Config) {
	for _, f := range []struct{ path, val string }{
		{"state_dir", c.StateDir},
		{"api.socket", c.API.Socket},
		{"cluster.secret_file", c.Cluster.SecretFile},
	} {
		if strings.ContainsRune(f.val, 0) {
			v.errorf(f.path, "%q contains a NUL byte", f.val)
		}
	}
	if len(c.API.Socket) > maxSocketPath {
		v.errorf("api.socket", "%q is %d bytes, longer than the %d a unix socket path allows", c.API.Socket, len(c.API.Socket), maxSocketPath)
	}
}

func (v *validator) metrics(c *Config) {
	l := c.Metrics.Listen
	if l == "" {
		if v.pos.given("metrics.listen") {
			v.errorf("metrics.listen", "must not be empty (leave metrics out to turn them off)")
		}
		return
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		v.errorf("metrics.listen", "%q is not a valid host:port (e.g. 127.0.0.1:9469)", l)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		v.errorf("metrics.listen", "%q: port %q is not a number in 1..65535", l, port)
	}
	if host != "" {
		if a, err := netip.ParseAddr(host); err == nil {
			if a.IsMulticast() || a.Zone() != "" && !a.IsLinkLocalUnicast() {
				v.errorf("metrics.listen", "%q: %s is not a local address to listen on", l, host)
			}
		} else if !ValidDNSName(host) {
			v.errorf("metrics.listen", "%q: %q is neither an IP address nor a host name", l, host)
		}
	}
	bp := c.Cluster.BindPort
	if bp == 0 {
		bp = DefaultBindPort
	}
	if a, port, ok := metricsBinding(c); ok && int(port) == bp && (!a.IsValid() || a.IsUnspecified() || a == c.Host.Address) {
		v.errorf("metrics.listen", "%q: port %d is taken by gossip (cluster.bind_port)", l, port)
	}
}

// metricsBinding is the address and port the metrics server takes, if it
// could clash with a published port.
func metricsBinding(c *Config) (netip.Addr, uint16, bool) {
	host, port, err := net.SplitHostPort(c.Metrics.Listen)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.Addr{}, 0, false
	}
	var a netip.Addr
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil || a.IsLoopback() {
			return netip.Addr{}, 0, false // a name, or loopback: DNAT never sees it
		}
	}
	return a, uint16(n), true
}

func (v *validator) cluster(c *Config) {
	cl := &c.Cluster
	if cl.BindPort < 0 || cl.BindPort > 65535 {
		v.errorf("cluster.bind_port", "%d is out of range 1..65535", cl.BindPort)
	}
	for i, j := range cl.Join {
		p := indexPath("cluster.join", i)
		if !j.Addr.IsValid() {
			if !v.pos.broken(p) {
				v.required(p)
			}
			continue
		}
		if msg := unicastProblem(j.Addr, true); msg != "" {
			v.errorf(p, "%s", msg)
			continue
		}
		if h := c.Host.Address; h.IsValid() && h.Is4() != j.Addr.Is4() {
			v.errorf(p, "%s is %s but host.address %s is %s: gossip cannot reach it", j.Addr, family(j.Addr), h, family(h))
		}
	}
	if cl.ReapAfter < 0 {
		v.errorf("cluster.reap_after", "must not be negative")
	}
	if cl.SecretFile != "" {
		v.secretFile(cl)
	} else if v.pos.given("cluster.secret_file") {
		v.errorf("cluster.secret_file", "must not be empty (leave it out to run gossip unencrypted)")
	}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// validNetworkName matches Docker's network names, which also keeps them
// safe inside device names and link aliases ("vxmesh:net=NAME").
var validNetworkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// netEnv is what container checks need to know about the networks.
type netEnv struct {
	byName map[string]*Network
	usable map[string]bool // the subnet is valid, so containment can be checked
	broken bool            // the networks list did not decode: names are unknown
}

func newNetEnv(c *Config, pos *positions) *netEnv {
	env := &netEnv{byName: map[string]*Network{}, usable: map[string]bool{}, broken: pos.broken("networks")}
	for i := range c.Networks {
		n := &c.Networks[i]
		if n.Name == "" {
			continue
		}
		if _, dup := env.byName[n.Name]; !dup {
			env.byName[n.Name] = n
			env.usable[n.Name] = subnetProblem(n.Subnet) == ""
		}
		if pos.broken(indexPath("networks", i)) || pos.broken(indexPath("networks", i)+".name") {
			env.broken = true // a network whose name we could not read may be the one referred to
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
		return fmt.Sprintf("%s is not IPv4 (container networks are IPv4 only)", p)
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
	return newNetEnv(c, v.pos)
}

func (v *validator) network(c *Config, n *Network, p string) {
	switch {
	case n.Name == "":
		v.required(p + ".name")
	case !validNetworkName.MatchString(n.Name):
		v.errorf(p+".name", "%q is not a valid network name (up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit)", n.Name)
	}
	driver := effDriver(n)
	switch driver {
	case DriverBridge, DriverOverlay, DriverMacvlan, DriverIPvlan:
	default:
		v.errorf(p+".driver", "%q is not a driver (want bridge, overlay, macvlan or ipvlan)", n.Driver)
	}

	usable := false
	switch msg := subnetProblem(n.Subnet); msg {
	case "missing":
		v.required(p + ".subnet")
	case "":
		usable = true
	default:
		v.errorf(p+".subnet", "%s", msg)
	}
	if gw := n.Gateway; gw.IsValid() {
		if usable {
			if msg := addrInSubnet(gw, n.Subnet); msg != "" {
				v.errorf(p+".gateway", "%s", msg)
			}
		} else if !gw.Is4() && (!n.Subnet.IsValid() || gw != n.Subnet.Masked().Addr().Next()) {
			v.errorf(p+".gateway", "%s is not IPv4 (container networks are IPv4 only)", gw)
		}
	}
	if r := n.IPRange; r.IsValid() {
		switch {
		case !r.Addr().Is4():
			v.errorf(p+".ip_range", "%s is not IPv4 (container networks are IPv4 only)", r)
		case r != r.Masked():
			v.errorf(p+".ip_range", "%s is not a network address: host bits are set (did you mean %s?)", r, r.Masked())
		case usable && (r.Bits() < n.Subnet.Bits() || !n.Subnet.Contains(r.Addr())):
			v.errorf(p+".ip_range", "%s is outside subnet %s", r, n.Subnet)
		}
	}

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

	if driver == DriverOverlay {
		if n.VNI > MaxVNI {
			v.errorf(p+".vni", "%d is out of range 1..%d", n.VNI, MaxVNI)
		}
		if n.VXLANPort < 0 || n.VXLANPort > 65535 {
			v.errorf(p+".vxlan_port", "%d is out of range 1..65535", n.VXLANPort)
		}
	} else {
		if n.VNI != 0 || v.pos.given(p+".vni") {
			v.errorf(p+".vni", "vni is only for overlay networks (this one is %s)", driver)
		}
		if n.VXLANPort != 0 || v.pos.given(p+".vxlan_port") {
			v.errorf(p+".vxlan_port", "vxlan_port is only for overlay networks (this one is %s)", driver)
		}
	}

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

	if usable && (driver == DriverBridge || driver == DriverOverlay) && c.Host.Address.IsValid() && n.Subnet.Contains(c.Host.Address.Unmap()) {
		v.errorf(p+".subnet", "%s contains the host address %s (the underlay must stay outside container networks)", n.Subnet, c.Host.Address)
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
	if joins {
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
		} {
			if x.set {
				v.errorf(f(x.field), "%s cannot be set with mode %q: the container shares that container's files", x.field, c.Mode)
			}
		}
	}

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

	keys := make([]string, 0, len(c.IP))
	for k := range c.IP {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := c.IP[k]
		kp := keyPath(f("ip"), k)
		if !onNet[k] {
			if env.byName[k] == nil && !env.broken {
				v.at(kp, true, "network %q does not exist", k)
			} else {
				v.at(kp, true, "the container is not on network %q", k)
			}
			continue
		}
		n := env.byName[k]
		if !a.IsValid() || n == nil || !env.usable[k] {
			continue
		}
		if msg := addrInSubnet(a, n.Subnet); msg != "" {
			v.errorf(kp, "%s of network %q", msg, k)
		} else if a == effGateway(n) {
			v.errorf(kp, "%s is the gateway of network %q", a, k)
		}
	}

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

	v.publish(env, c, p)
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
			case !a.Is4():
				v.errorf(sp, "publish %q: host IP %s is not IPv4 (container networks are IPv4 only)", s.String(), a)
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
	return b.anyAddr() == o.anyAddr() && (b.anyAddr() || b.ip == o.ip)
}

func (b binding) clashes(o binding) bool {
	return b.proto == o.proto &&
		b.ports.Start <= o.ports.End && o.ports.Start <= b.ports.End &&
		(b.anyAddr() || o.anyAddr() || b.ip == o.ip)
}

func (b binding) String() string {
	ip := "0.0.0.0"
	if !b.anyAddr() {
		ip = b.ip.String()
	}
	return ip + ":" + b.ports.String() + "/" + b.proto
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
	keys := make([]string, 0, len(ct.IP))
	for k := range ct.IP {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	onNet := map[string]bool{}
	for _, n := range ct.Networks {
		onNet[n] = true
	}
	for _, k := range keys {
		a := ct.IP[k]
		if !a.IsValid() || !onNet[k] {
			continue
		}
		m := r.ips[k]
		if m == nil {
			m = map[netip.Addr]string{}
			r.ips[k] = m
		}
		if owner, dup := m[a]; dup {
			report(keyPath(f("ip"), k), "%s is already the address of container %q on network %q", a, owner, k)
			continue
		}
		m[a] = ct.Name
	}
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
