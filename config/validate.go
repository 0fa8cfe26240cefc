package config

import (
	"fmt"
	"net"
	"net/netip"
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
	v.docker(c)
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
