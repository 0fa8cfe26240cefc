package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols a port can be published with.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// PortRange is an inclusive range of ports; a single port has Start == End.
// The zero value means "no port given" (a random host port).
type PortRange struct {
	Start uint16 `json:"start"`
	End   uint16 `json:"end"`
}

// IsZero reports whether no port was given.
func (r PortRange) IsZero() bool { return r.Start == 0 }

// Len is the number of ports in the range.
func (r PortRange) Len() int {
	if r.IsZero() {
		return 0
	}
	return int(r.End) - int(r.Start) + 1
}

// String writes "80" or "8000-8010".
func (r PortRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(int(r.Start))
	}
	return strconv.Itoa(int(r.Start)) + "-" + strconv.Itoa(int(r.End))
}

// PortSpec is one `docker run -p` spec: [[IP:][HPORT]:]CPORT[/PROTO], where
// the ports may be ranges of equal length.
type PortSpec struct {
	// HostIP is the host address to publish on; invalid means every address.
	HostIP netip.Addr `json:"host_ip,omitempty"`
	// HostPort is the host port or range; zero means a random free port for
	// each container port.
	HostPort PortRange `json:"host_port"`
	// ContainerPort is the container port or range.
	ContainerPort PortRange `json:"container_port"`
	// Proto is ProtoTCP or ProtoUDP.
	Proto string `json:"proto"`
}

// ParsePortSpec parses a `docker run -p` spec.
func ParsePortSpec(s string) (PortSpec, error) {
	var p PortSpec
	if s == "" {
		return p, errors.New("empty publish spec")
	}
	body, proto, hasProto := strings.Cut(s, "/")
	p.Proto = ProtoTCP
	if hasProto {
		switch proto {
		case ProtoTCP, ProtoUDP:
			p.Proto = proto
		default:
			return p, fmt.Errorf("publish %q: protocol %q must be tcp or udp", s, proto)
		}
	}
	var ipPart, hostPart, ctrPart string
	if strings.HasPrefix(body, "[") {
		// [IPv6]:HPORT:CPORT or [IPv6]::CPORT
		end := strings.Index(body, "]")
		if end < 0 || end+1 >= len(body) || body[end+1] != ':' {
			return p, fmt.Errorf("publish %q: want [IP]:HPORT:CPORT", s)
		}
		ipPart = body[1:end]
		if ipPart == "" {
			return p, fmt.Errorf("publish %q: empty host IP", s)
		}
		rest := body[end+2:]
		var ok bool
		hostPart, ctrPart, ok = strings.Cut(rest, ":")
		if !ok {
			return p, fmt.Errorf("publish %q: want [IP]:HPORT:CPORT", s)
		}
	} else {
		parts := strings.Split(body, ":")
		switch len(parts) {
		case 1:
			ctrPart = parts[0]
		case 2:
			hostPart, ctrPart = parts[0], parts[1]
			if hostPart == "" {
				return p, fmt.Errorf("publish %q: empty host port", s)
			}
		case 3:
			ipPart, hostPart, ctrPart = parts[0], parts[1], parts[2]
			if ipPart == "" {
				return p, fmt.Errorf("publish %q: empty host IP", s)
			}
		default:
			return p, fmt.Errorf("publish %q: too many colons (want [[IP:][HPORT]:]CPORT[/PROTO])", s)
		}
	}
	if ipPart != "" {
		ip, err := netip.ParseAddr(ipPart)
		if err != nil || ip.Zone() != "" {
			return p, fmt.Errorf("publish %q: invalid host IP %q", s, ipPart)
		}
		p.HostIP = ip.Unmap()
	}
	var err error
	if p.ContainerPort, err = parsePortRange(ctrPart); err != nil {
		return p, fmt.Errorf("publish %q: container port: %w", s, err)
	}
	if hostPart != "" {
		if p.HostPort, err = parsePortRange(hostPart); err != nil {
			return p, fmt.Errorf("publish %q: host port: %w", s, err)
		}
		if p.HostPort.Len() != p.ContainerPort.Len() {
			return p, fmt.Errorf("publish %q: host range %s and container range %s differ in length", s, p.HostPort, p.ContainerPort)
		}
	}
	return p, nil
}

func parsePortRange(s string) (PortRange, error) {
	if s == "" {
		return PortRange{}, errors.New("missing")
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	b := a
	if isRange {
		if b, err = parsePort(hi); err != nil {
			return PortRange{}, err
		}
		if b < a {
			return PortRange{}, fmt.Errorf("range %q ends before it starts", s)
		}
	}
	return PortRange{Start: a, End: b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", n)
	}
	return uint16(n), nil
}

// String writes the spec back in `docker run -p` form.
func (p PortSpec) String() string {
	var b strings.Builder
	if p.HostIP.IsValid() {
		if p.HostIP.Is6() {
			b.WriteString("[" + p.HostIP.String() + "]")
		} else {
			b.WriteString(p.HostIP.String())
		}
		b.WriteString(":")
		if !p.HostPort.IsZero() {
			b.WriteString(p.HostPort.String())
		}
		b.WriteString(":")
	} else if !p.HostPort.IsZero() {
		b.WriteString(p.HostPort.String() + ":")
	}
	b.WriteString(p.ContainerPort.String())
	b.WriteString("/" + p.Proto)
	return b.String()
}

// UnmarshalText parses a `docker run -p` spec.
func (p *PortSpec) UnmarshalText(b []byte) error {
	v, err := ParsePortSpec(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText writes the spec in `docker run -p` form.
func (p PortSpec) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ExposeSpec is an exposed port or range with its protocol ("80",
// "53/udp", "8000-8010/tcp"), as in a Dockerfile's EXPOSE.
type ExposeSpec struct {
	Ports PortRange `json:"ports"`
	Proto string    `json:"proto"`
}

// ParseExposeSpec parses "PORT[-PORT][/PROTO]".
func ParseExposeSpec(s string) (ExposeSpec, error) {
	body, proto, hasProto := strings.Cut(s, "/")
	e := ExposeSpec{Proto: ProtoTCP}
	if hasProto {
		if proto != ProtoTCP && proto != ProtoUDP {
			return e, fmt.Errorf("expose %q: protocol %q must be tcp or udp", s, proto)
		}
		e.Proto = proto
	}
	r, err := parsePortRange(body)
	if err != nil {
		return e, fmt.Errorf("expose %q: %w", s, err)
	}
	e.Ports = r
	return e, nil
}

// UnmarshalText parses "PORT[-PORT][/PROTO]".
func (e *ExposeSpec) UnmarshalText(b []byte) error {
	v, err := ParseExposeSpec(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// MarshalText writes "PORT[-PORT]/PROTO".
func (e ExposeSpec) MarshalText() ([]byte, error) {
	return []byte(e.Ports.String() + "/" + e.Proto), nil
}

// HostEntry is one --add-host entry, "NAME:IP".
type HostEntry struct {
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip"`
}

// ParseHostEntry parses "NAME:IP" (the IP may be IPv6, bare or in brackets).
func ParseHostEntry(s string) (HostEntry, error) {
	name, ip, ok := strings.Cut(s, ":")
	if !ok {
		return HostEntry{}, fmt.Errorf("extra host %q: want NAME:IP", s)
	}
	if !ValidDNSName(name) {
		return HostEntry{}, fmt.Errorf("extra host %q: invalid host name %q", s, name)
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return HostEntry{}, fmt.Errorf("extra host %q: invalid IP %q", s, ip)
	}
	return HostEntry{Name: name, IP: a}, nil
}

// String writes "NAME:IP".
func (h HostEntry) String() string { return h.Name + ":" + h.IP.String() }

// UnmarshalText parses "NAME:IP".
func (h *HostEntry) UnmarshalText(b []byte) error {
	v, err := ParseHostEntry(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// MarshalText writes "NAME:IP".
func (h HostEntry) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// JoinAddr is a peer to join: an address and an optional port (0 means the
// cluster's bind_port).
type JoinAddr struct {
	Addr netip.Addr
	Port uint16
}

// ParseJoinAddr parses "IP", "IP:PORT" or "[IPv6]:PORT".
func ParseJoinAddr(s string) (JoinAddr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return JoinAddr{}, fmt.Errorf("join %q: port 0 out of range 1..65535", s)
		}
		return JoinAddr{Addr: ap.Addr().Unmap(), Port: ap.Port()}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return JoinAddr{}, fmt.Errorf("join %q: want IP or IP:PORT", s)
	}
	return JoinAddr{Addr: a.Unmap()}, nil
}

// AddrPort resolves the port against the cluster's bind port.
func (j JoinAddr) AddrPort(defaultPort int) netip.AddrPort {
	p := j.Port
	if p == 0 {
		p = uint16(defaultPort)
	}
	return netip.AddrPortFrom(j.Addr, p)
}

// String writes "IP" or "IP:PORT".
func (j JoinAddr) String() string {
	if j.Port == 0 {
		return j.Addr.String()
	}
	return netip.AddrPortFrom(j.Addr, j.Port).String()
}

// UnmarshalText parses "IP" or "IP:PORT".
func (j *JoinAddr) UnmarshalText(b []byte) error {
	v, err := ParseJoinAddr(string(b))
	if err != nil {
		return err
	}
	*j = v
	return nil
}

// MarshalText writes "IP" or "IP:PORT".
func (j JoinAddr) MarshalText() ([]byte, error) { return []byte(j.String()), nil }

// ValidDNSName reports whether s is a usable host or container name: dot
// separated labels of letters, digits, '-' and '_', each 1..63 bytes, not
// starting or ending with '-', 253 bytes at most.
func ValidDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func errDuration(s string) error {
	return fmt.Errorf("invalid duration %q (want e.g. 60s, 2m, 1h30m)", s)
}

func errNegativeDuration(s string) error {
	return fmt.Errorf("duration %q must not be negative", s)
}

// LinkSpec is a legacy `--link NAME[:ALIAS]`: another container whose
// addresses go into the hosts file under Name and Alias.
type LinkSpec struct {
	Name  string `json:"name"`
	Alias string `json:"alias,omitempty"`
}

// ParseLinkSpec parses "NAME" or "NAME:ALIAS".
func ParseLinkSpec(s string) (LinkSpec, error) {
	name, alias, hasAlias := strings.Cut(s, ":")
	if !ValidDNSName(name) {
		return LinkSpec{}, fmt.Errorf("link %q: invalid container name %q (want NAME[:ALIAS])", s, name)
	}
	if hasAlias && !ValidDNSName(alias) {
		return LinkSpec{}, fmt.Errorf("link %q: invalid alias %q (want NAME[:ALIAS])", s, alias)
	}
	return LinkSpec{Name: name, Alias: alias}, nil
}

// String writes "NAME" or "NAME:ALIAS".
func (l LinkSpec) String() string {
	if l.Alias == "" {
		return l.Name
	}
	return l.Name + ":" + l.Alias
}

// UnmarshalText parses "NAME[:ALIAS]".
func (l *LinkSpec) UnmarshalText(b []byte) error {
	v, err := ParseLinkSpec(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// MarshalText writes "NAME[:ALIAS]".
func (l LinkSpec) MarshalText() ([]byte, error) { return []byte(l.String()), nil }
