package portmap

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vxmesh/vxmesh/config"
)

// Mapping is one published port: traffic to HostIP:HostPort (every local
// address when HostIP is invalid) goes to ContainerIP:ContainerPort on
// Bridge.
type Mapping struct {
	Container     string     `json:"container"`
	Proto         string     `json:"proto"`
	HostIP        netip.Addr `json:"host_ip"`
	HostPort      uint16     `json:"host_port"`
	ContainerIP   netip.Addr `json:"container_ip"`
	ContainerPort uint16     `json:"container_port"`
	Bridge        string     `json:"bridge"`
}

// HostAddr is the host side as `docker port` prints its address: HostIP,
// or the unspecified address of the container's family when HostIP is unset.
func (m Mapping) HostAddr() netip.Addr {
	if m.HostIP.IsValid() {
		return m.HostIP
	}
	if m.ContainerIP.Is6() {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// String writes the mapping as a `docker port` line with the container:
// `web1 80/tcp -> 0.0.0.0:32768`.
func (m Mapping) String() string {
	return m.Container + " " + m.containerSide() + " -> " + m.hostSide()
}

func (m Mapping) containerSide() string {
	return strconv.Itoa(int(m.ContainerPort)) + "/" + m.Proto
}

func (m Mapping) hostSide() string {
	return netip.AddrPortFrom(m.HostAddr(), m.HostPort).String()
}

// compareMappings orders mappings by container, then container port and
// protocol, then host address and port.
func compareMappings(a, b Mapping) int {
	return cmp.Or(
		cmp.Compare(a.Container, b.Container),
		cmp.Compare(a.ContainerPort, b.ContainerPort),
		cmp.Compare(a.Proto, b.Proto),
		a.HostIP.Compare(b.HostIP),
		cmp.Compare(a.HostPort, b.HostPort),
		a.ContainerIP.Compare(b.ContainerIP),
		cmp.Compare(a.Bridge, b.Bridge),
	)
}

// SortMappings sorts mappings in place into the order Allocate returns them.
func SortMappings(ms []Mapping) { slices.SortFunc(ms, compareMappings) }

// Attachment is one network of a container, as the agent resolved it.
type Attachment struct {
	// Network is the network's name, for messages.
	Network string
	// Driver is the network's driver (config.DriverBridge, ...); empty
	// means bridge.
	Driver string
	// Bridge is the host bridge the container's interface hangs on.
	Bridge string
	// Internal networks carry no published ports.
	Internal bool
	// IP is the container's IPv4 address on the network; invalid for none.
	IP netip.Addr
	// IP6 is the container's IPv6 address on the network; invalid for none.
	IP6 netip.Addr
}

// Container is what port publishing needs of one container.
type Container struct {
	// Name is the container's name.
	Name string
	// Networks are the container's networks in its order (eth0 first).
	Networks []Attachment
	// Publish are its `-p` entries.
	Publish []config.PortSpec
	// PublishAll publishes each port of Expose that Publish does not
	// already publish on a random host port (`-P`).
	PublishAll bool
	// Expose are its exposed ports.
	Expose []config.ExposeSpec
}

// Binding is one container port to publish before its host port is known.
type Binding struct {
	// Mapping is the wanted mapping; HostPort 0 asks for a random port.
	Mapping
	// Spec is the entry the binding came from, for messages:
	// "8080:80/tcp", or "-P 80/tcp" for publish_all.
	Spec string
	// Key names the binding stably across restarts; see Key.
	Key string
}

// Random reports whether the binding asks for a random host port.
func (b Binding) Random() bool { return b.HostPort == 0 }

// Key builds the stable name of a binding under which the agent persists
// its host port: "CONTAINER/PROTO/CPORT/HOSTIP/HOST", where HOSTIP is "*"
// for every IPv4 address ("::" for every IPv6 address) and HOST is the explicit host port, or "random" for a
// random one ("random#2", "#3"… when the same container port is published
// on random ports more than once).
func Key(container, proto string, containerPort uint16, hostIP netip.Addr, host string) string {
	ip := "*"
	if hostIP.IsValid() {
		ip = hostIP.String()
	}
	return container + "/" + proto + "/" + strconv.Itoa(int(containerPort)) + "/" + ip + "/" + host
}

// PublishAttachment picks the network a container's ports are published
// on: its first network that is not internal and whose driver puts the
// container behind a host bridge (bridge or overlay), as Docker publishes
// on the network that provides the container's default gateway. ok is
// false when there is none.
func PublishAttachment(nets []Attachment) (Attachment, bool) {
	for _, a := range nets {
		if a.Internal || !a.IP.IsValid() && !a.IP6.IsValid() || a.Bridge == "" {
			continue
		}
		switch a.Driver {
		case "", config.DriverBridge, config.DriverOverlay:
			return a, true
		}
	}
	return Attachment{}, false
}

// Expand turns a container's publish, publish_all and expose entries into
// bindings, one per port, in entry order. It checks what can be checked
// without knowing the other containers and the host: an error means none
// of the container's ports can be published.
func Expand(c Container) ([]Binding, error) {
	var exposed []config.ExposeSpec
	if c.PublishAll {
		exposed = c.Expose
	}
	if len(c.Publish) == 0 && len(exposed) == 0 {
		return nil, nil
	}
	if c.Name == "" {
		return nil, errors.New("publish ports: container has no name")
	}
	att, ok := PublishAttachment(c.Networks)
	if !ok {
		return nil, fmt.Errorf("publish ports of container %q: it has no non-internal bridge or overlay network to publish on", c.Name)
	}
	var out []Binding
	randomSeen := map[string]int{}
	add := func(spec string, hostIP, ctrIP netip.Addr, proto string, hostPort, ctrPort uint16) {
		b := Binding{
			Mapping: Mapping{
				Container: c.Name, Proto: proto, HostIP: hostIP, HostPort: hostPort,
				ContainerIP: ctrIP, ContainerPort: ctrPort, Bridge: att.Bridge,
			},
			Spec: spec,
		}
		keyIP := hostIP
		if !hostIP.IsValid() && ctrIP.Is6() {
			keyIP = netip.IPv6Unspecified() // every IPv6 address; "*" stays IPv4's
		}
		host := strconv.Itoa(int(hostPort))
		if hostPort == 0 {
			host = "random"
			k := Key(c.Name, proto, ctrPort, keyIP, host)
			randomSeen[k]++
			if n := randomSeen[k]; n > 1 {
				host += "#" + strconv.Itoa(n)
			}
		}
		b.Key = Key(c.Name, proto, ctrPort, keyIP, host)
		out = append(out, b)
	}
	published := map[string]bool{} // "80/tcp" of every published container port
	for _, p := range c.Publish {
		spec := p.String()
		proto, err := checkProto(p.Proto)
		if err != nil {
			return nil, fmt.Errorf("publish %q of container %q: %w", spec, c.Name, err)
		}
		targets, err := publishTargets(p.HostIP, att)
		if err != nil {
			return nil, fmt.Errorf("publish %q of container %q: %w", spec, c.Name, err)
		}
		if err := checkRange(p.ContainerPort); err != nil {
			return nil, fmt.Errorf("publish %q of container %q: container port: %w", spec, c.Name, err)
		}
		if !p.HostPort.IsZero() {
			if err := checkRange(p.HostPort); err != nil {
				return nil, fmt.Errorf("publish %q of container %q: host port: %w", spec, c.Name, err)
			}
			if p.HostPort.Len() != p.ContainerPort.Len() {
				return nil, fmt.Errorf("publish %q of container %q: host range %s and container range %s differ in length", spec, c.Name, p.HostPort, p.ContainerPort)
			}
		}
		for i := 0; i < p.ContainerPort.Len(); i++ {
			cport := p.ContainerPort.Start + uint16(i)
			var hport uint16
			if !p.HostPort.IsZero() {
				hport = p.HostPort.Start + uint16(i)
			}
			for _, t := range targets {
				add(spec, t.hostIP, t.ctrIP, proto, hport, cport)
			}
			published[strconv.Itoa(int(cport))+"/"+proto] = true
		}
	}
	for _, e := range exposed {
		proto, err := checkProto(e.Proto)
		if err != nil {
			return nil, fmt.Errorf("expose %q of container %q: %w", e.Ports.String(), c.Name, err)
		}
		if err := checkRange(e.Ports); err != nil {
			return nil, fmt.Errorf("expose %q of container %q: %w", e.Ports.String(), c.Name, err)
		}
		for i := 0; i < e.Ports.Len(); i++ {
			cport := e.Ports.Start + uint16(i)
			name := strconv.Itoa(int(cport)) + "/" + proto
			if published[name] {
				continue
			}
			published[name] = true
			for _, ctrIP := range []netip.Addr{att.IP, att.IP6} {
				if ctrIP.IsValid() {
					add("-P "+name, netip.Addr{}, ctrIP, proto, 0, cport)
				}
			}
		}
	}
	return out, nil
}

func checkProto(p string) (string, error) {
	switch p {
	case "":
		return config.ProtoTCP, nil
	case config.ProtoTCP, config.ProtoUDP:
		return p, nil
	}
	return "", fmt.Errorf("protocol %q must be tcp or udp", p)
}

func checkRange(r config.PortRange) error {
	if r.IsZero() {
		return errors.New("missing")
	}
	if r.End < r.Start {
		return fmt.Errorf("range %d-%d ends before it starts", r.Start, r.End)
	}
	return nil
}

// target is one family a publish entry goes to: the host address to match
// (invalid: every address of the family) and the container's address.
type target struct {
	hostIP, ctrIP netip.Addr
}

// publishTargets says where a publish entry with host address ip goes:
// without an address to both of the container's families (as Docker
// publishes "8080:80" on 0.0.0.0 and [::]), with one to the container's
// address of that family.
func publishTargets(ip netip.Addr, att Attachment) ([]target, error) {
	if !ip.IsValid() {
		var out []target
		for _, c := range []netip.Addr{att.IP, att.IP6} {
			if c.IsValid() {
				out = append(out, target{ctrIP: c})
			}
		}
		return out, nil
	}
	ip = ip.Unmap()
	ctr := att.IP
	if ip.Is6() {
		ctr = att.IP6
	}
	if !ctr.IsValid() {
		family := "IPv4"
		if ip.Is6() {
			family = "IPv6"
		}
		return nil, fmt.Errorf("host IP %s is %s but the container has no %s address on network %q (no userland proxy translates between IP versions)", ip, family, family, att.Network)
	}
	hostIP, err := checkHostIP(ip, ctr)
	if err != nil {
		return nil, err
	}
	return []target{{hostIP: hostIP, ctrIP: ctr}}, nil
}

// checkHostIP returns the host address to match (invalid: every address
// of ctr's family) or why the address cannot carry a published port.
func checkHostIP(ip, ctr netip.Addr) (netip.Addr, error) {
	switch {
	case ip.IsUnspecified() && ip.Is4() == ctr.Is4():
		return netip.Addr{}, nil
	case ip.Is4() != ctr.Is4():
		return ip, fmt.Errorf("host IP %s and the container's address %s are of different IP versions (no userland proxy translates between them)", ip, ctr)
	case ip.IsLinkLocalUnicast():
		return ip, fmt.Errorf("link-local host IP %s is not supported: publish on a global or unique-local address", ip)
	case ip.IsLoopback():
		return ip, fmt.Errorf("loopback host IP %s is not supported: publish on a host or gateway address (DNAT to a bridge needs route_localnet, which would expose the host's loopback services to containers)", ip)
	case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return ip, fmt.Errorf("host IP %s is not a unicast address", ip)
	}
	return ip, nil
}
