package portmap

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vxmesh/vxmesh/config"
)

// DefaultRange is where random host ports come from: 32768–60999, the
// Linux default of net.ipv4.ip_local_port_range and the range Docker uses
// on a default kernel. It is fixed rather than read from the host so that
// the ports a host hands out do not depend on its sysctl tuning.
var DefaultRange = config.PortRange{Start: 32768, End: 60999}

// Allocator chooses host ports for the containers of one host.
type Allocator struct {
	// Range is where random host ports come from; zero means DefaultRange.
	Range config.PortRange
	// Sockets are the listening sockets of the host namespace
	// (ListeningSockets). A host port one of them holds is not handed out,
	// unless the same binding had it before (Previous): then the socket was
	// bound after we published, and gets no traffic for that port anyway.
	// Sockets bound to a loopback address never conflict, as DNAT never
	// sees loopback destinations.
	Sockets []Socket
	// Previous is the assignment the agent persisted from the last run:
	// Binding.Key → host port. Random ports keep their previous value while
	// it is still free; previous ports of live bindings are reserved for
	// them, so a newcomer never takes a port another container holds.
	Previous map[string]uint16
	// PIDOf names the process holding a socket inode in messages; nil
	// means messages give the inode only. PIDOfInode is the real one.
	PIDOf func(inode uint64) int
	// LocalAddrs are the addresses of the host namespace. When not nil, a
	// host IP that is not among them is refused (a typo would otherwise
	// publish nothing, silently), unless the binding had its port before:
	// an address that moved away (a VIP) does not cost the container its
	// other ports.
	LocalAddrs []netip.Addr
}

// Result is the outcome of Allocate.
type Result struct {
	// Mappings are the accepted mappings of all containers, sorted.
	Mappings []Mapping
	// Errors holds the containers whose ports were refused, with the
	// reason; none of their mappings are in Mappings.
	Errors map[string]error
	// Assignments is what the agent persists for the next run (the next
	// Previous): the key and host port of every accepted binding, plus the
	// previous entries of refused containers' bindings, so a container
	// refused for a while gets its ports back.
	Assignments map[string]uint16
}

// For returns the mappings of one container.
func (r Result) For(container string) []Mapping {
	var out []Mapping
	for _, m := range r.Mappings {
		if m.Container == container {
			out = append(out, m)
		}
	}
	return out
}

// claim is a host port taken (or held) by a binding.
type claim struct {
	hostIP    netip.Addr // invalid: every address of the family
	v6        bool       // the family: IPv6 claims never meet IPv4 ones
	container string
	spec      string
	key       string
}

type protoPort struct {
	proto string
	port  uint16
}

// overlap reports whether two host addresses (invalid: every address)
// can receive the same packets.
func overlap(a, b netip.Addr) bool {
	return !a.IsValid() || !b.IsValid() || a == b
}

// claimOf is the claim a binding makes on its host port.
func claimOf(b Binding, container string) claim {
	return claim{hostIP: b.HostIP, v6: isV6(b.Mapping), container: container, spec: b.Spec, key: b.Key}
}

// isV6 reports whether a mapping is IPv6 (by its container address, or
// its host address when the container's is unknown).
func isV6(m Mapping) bool {
	if m.ContainerIP.IsValid() {
		return m.ContainerIP.Is6()
	}
	return m.HostIP.Is6()
}

// meets reports whether a claim and a binding can receive the same
// packets: same family, and one takes every address or both the same.
func meets(cl claim, b Binding) bool {
	if cl.v6 != isV6(b.Mapping) {
		return false
	}
	if cl.hostIP.IsUnspecified() || b.HostIP.IsUnspecified() {
		return true
	}
	return overlap(cl.hostIP, b.HostIP)
}

// Allocate expands every container and assigns host ports, containers in
// the given order. A container gets all of its mappings or an error (in
// Result.Errors) saying which port is in the way and who holds it.
func (a Allocator) Allocate(cs []Container) Result {
	rng := a.Range
	if rng.IsZero() {
		rng = DefaultRange
	}
	res := Result{Errors: map[string]error{}, Assignments: map[string]uint16{}}

	expanded := make([][]Binding, len(cs))
	// held: previous ports of bindings that still exist, reserved for them.
	held := map[protoPort][]claim{}
	for i, c := range cs {
		bs, err := Expand(c)
		if err != nil {
			res.Errors[c.Name] = err
			// Its entries are unknown now; hold what it had, so a fixed
			// config gets the same ports back.
			bs = a.previousOf(c.Name)
		}
		expanded[i] = bs
		for _, b := range bs {
			p, ok := a.Previous[b.Key]
			if !ok || p == 0 || (!b.Random() && p != b.HostPort) {
				continue
			}
			pp := protoPort{b.Proto, p}
			held[pp] = append(held[pp], claimOf(b, b.Container))
		}
	}

	socks := map[protoPort][]Socket{}
	for _, s := range a.Sockets {
		if s.Addr.IsLoopback() {
			continue
		}
		pp := protoPort{s.Proto, s.Port}
		socks[pp] = append(socks[pp], s)
	}

	taken := map[protoPort][]claim{}
	for i, c := range cs {
		if _, failed := res.Errors[c.Name]; failed {
			a.keepPrevious(res.Assignments, expanded[i])
			continue
		}
		ms, mine, err := a.allocateOne(c.Name, expanded[i], rng, taken, held, socks)
		if err != nil {
			res.Errors[c.Name] = err
			a.keepPrevious(res.Assignments, expanded[i])
			continue
		}
		for pp, cl := range mine {
			taken[pp] = append(taken[pp], cl...)
		}
		for j, m := range ms {
			res.Assignments[expanded[i][j].Key] = m.HostPort
		}
		res.Mappings = append(res.Mappings, ms...)
	}
	SortMappings(res.Mappings)
	return res
}

// previousOf rebuilds, from Previous, the bindings a container had, as far
// as holding their ports needs (key, protocol, host address, host port).
func (a Allocator) previousOf(container string) []Binding {
	var out []Binding
	for k, p := range a.Previous {
		f := strings.Split(k, "/")
		if len(f) != 5 || f[0] != container {
			continue
		}
		var ip netip.Addr
		if f[3] != "*" {
			var err error
			if ip, err = netip.ParseAddr(f[3]); err != nil {
				continue
			}
		}
		out = append(out, Binding{Key: k, Spec: "(previous) " + k, Mapping: Mapping{Container: container, Proto: f[1], HostIP: ip, HostPort: p}})
	}
	slices.SortFunc(out, func(x, y Binding) int { return strings.Compare(x.Key, y.Key) })
	return out
}

func (a Allocator) keepPrevious(out map[string]uint16, bs []Binding) {
	for _, b := range bs {
		if p, ok := a.Previous[b.Key]; ok {
			out[b.Key] = p
		}
	}
}

// allocateOne assigns host ports to one container's bindings. It returns
// the mappings (in binding order) and the claims to commit, or an error and
// nothing.
func (a Allocator) allocateOne(name string, bs []Binding, rng config.PortRange, taken, held map[protoPort][]claim, socks map[protoPort][]Socket) ([]Mapping, map[protoPort][]claim, error) {
	mine := map[protoPort][]claim{}
	out := make([]Mapping, 0, len(bs))

	// conflict says why b cannot have port p, or "" when it can.
	conflict := func(b Binding, p uint16, checkSockets bool) string {
		pp := protoPort{b.Proto, p}
		where := func() string {
			return fmt.Sprintf("host port %d/%s on %s", p, b.Proto, hostIPText(b.HostIP, b.ContainerIP))
		}
		for _, cl := range mine[pp] {
			if meets(cl, b) {
				return fmt.Sprintf("%s is published twice by container %q (%q and %q)", where(), name, cl.spec, b.Spec)
			}
		}
		for _, cl := range taken[pp] {
			if meets(cl, b) {
				return fmt.Sprintf("%s is already published by container %q", where(), cl.container)
			}
		}
		for _, cl := range held[pp] {
			if cl.key != b.Key && meets(cl, b) {
				return fmt.Sprintf("%s is already published by container %q", where(), cl.container)
			}
		}
		if checkSockets {
			for _, s := range socks[pp] {
				if socketOverlap(s, b.Mapping) {
					return fmt.Sprintf("%s is in use by a host process (%s)", where(), a.describe(s))
				}
			}
		}
		return ""
	}

	// twins: the random port the other family of the same entry got, which
	// this one takes too when free (Docker gives 0.0.0.0 and [::] one port).
	twins := map[string]uint16{}
	for _, b := range bs {
		port := b.HostPort
		twin := b.Spec + "|" + strconv.Itoa(int(b.ContainerPort)) + "|" + b.Proto
		prev, hadPrev := a.Previous[b.Key]
		if b.HostIP.IsValid() && a.LocalAddrs != nil && !hadPrev && !slices.Contains(a.LocalAddrs, b.HostIP) {
			return nil, nil, fmt.Errorf("publish %q of container %q: host IP %s is not an address of this host", b.Spec, name, b.HostIP)
		}
		if !b.Random() {
			if why := conflict(b, port, !(hadPrev && prev == port)); why != "" {
				return nil, nil, fmt.Errorf("publish %q of container %q: %s", b.Spec, name, why)
			}
		} else {
			port = 0
			if hadPrev && prev != 0 && conflict(b, prev, false) == "" {
				port = prev
			} else if p := twins[twin]; p != 0 && conflict(b, p, true) == "" {
				port = p
			}
			for p := int(rng.Start); port == 0 && p <= int(rng.End); p++ {
				if conflict(b, uint16(p), true) == "" {
					port = uint16(p)
				}
			}
			if port == 0 {
				return nil, nil, fmt.Errorf("publish %q of container %q: no free host port for %d/%s on %s in %s",
					b.Spec, name, b.ContainerPort, b.Proto, hostIPText(b.HostIP, b.ContainerIP), rng)
			}
		}
		if b.Random() {
			twins[twin] = port
		}
		m := b.Mapping
		m.HostPort = port
		out = append(out, m)
		pp := protoPort{b.Proto, port}
		mine[pp] = append(mine[pp], claimOf(b, name))
	}
	return out, mine, nil
}

// socketOverlap reports whether a host socket would lose traffic to m. A
// wildcard IPv6 socket may be dual-stack, so it counts for IPv4 too.
func socketOverlap(s Socket, m Mapping) bool {
	v4 := m.ContainerIP.Is4()
	switch {
	case s.Addr.Is6() && s.Addr.IsUnspecified():
		return !v4 || !m.HostIP.IsValid() || m.HostIP.Is4()
	case s.Addr.Is4() != v4:
		return false
	case s.Addr.IsUnspecified():
		return true
	}
	return overlap(s.Addr, m.HostIP)
}

func (a Allocator) describe(s Socket) string {
	var d string
	if s.Addr.IsUnspecified() {
		d = "listening on every address"
	} else {
		d = "listening on " + netip.AddrPortFrom(s.Addr, s.Port).String()
	}
	if a.PIDOf != nil {
		if pid := a.PIDOf(s.Inode); pid > 0 {
			d += ", pid " + strconv.Itoa(pid)
		}
	}
	return d + ", socket inode " + strconv.FormatUint(s.Inode, 10)
}

func hostIPText(hostIP, containerIP netip.Addr) string {
	return Mapping{HostIP: hostIP, ContainerIP: containerIP}.HostAddr().String()
}
