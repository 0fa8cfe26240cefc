package bridge

import (
	"errors"
	"fmt"
	"net/netip"
)

// Pool hands out the local addresses of one network: from the network's
// ip_range (or the whole subnet), never the network address, the broadcast
// address or the gateway. It is a plain value; the agent keeps the
// allocations in its state file and replays them with Reserve, so an
// address is stable across restarts.
type Pool struct {
	subnet  netip.Prefix
	rng     netip.Prefix
	gateway netip.Addr
	used    map[netip.Addr]string
	next    netip.Addr
}

// NewPool returns a pool of subnet allocating from ipRange (invalid: the
// whole subnet).
func NewPool(subnet, ipRange netip.Prefix, gateway netip.Addr) *Pool {
	subnet = subnet.Masked()
	if !ipRange.IsValid() {
		ipRange = subnet
	}
	ipRange = ipRange.Masked()
	return &Pool{subnet: subnet, rng: ipRange, gateway: gateway, used: map[netip.Addr]string{}, next: ipRange.Addr()}
}

// Usable reports why ip cannot be given to a container of this network, or
// nil when it can (whether or not it is taken).
func (p *Pool) Usable(ip netip.Addr) error {
	switch {
	case !p.subnet.Contains(ip):
		return fmt.Errorf("address %s is outside subnet %s", ip, p.subnet)
	case ip == p.subnet.Addr():
		return fmt.Errorf("address %s is the network address of %s", ip, p.subnet)
	case ip == lastAddr(p.subnet) && p.subnet.Addr().Is4() && p.subnet.Bits() < 31:
		return fmt.Errorf("address %s is the broadcast address of %s", ip, p.subnet)
	case ip == p.gateway:
		return fmt.Errorf("address %s is the gateway", ip)
	}
	return nil
}

// Owner returns who holds ip.
func (p *Pool) Owner(ip netip.Addr) (string, bool) {
	o, ok := p.used[ip]
	return o, ok
}

// Reserve gives ip to owner. It fails when ip is not usable or is held by
// someone else.
func (p *Pool) Reserve(ip netip.Addr, owner string) error {
	if err := p.Usable(ip); err != nil {
		return err
	}
	if o, ok := p.used[ip]; ok && o != owner {
		return takenError{ip, o}
	}
	p.used[ip] = owner
	return nil
}

// Release frees ip.
func (p *Pool) Release(ip netip.Addr) { delete(p.used, ip) }

// Allocate gives owner the next free address of the range, going round so
// that a just-released address is not handed out again at once. It skips
// the network, broadcast and gateway addresses, and the first and last
// address of a range narrower than the subnet.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	start := p.next
	if !p.rng.Contains(start) {
		start = p.rng.Addr()
	}
	a := start
	for {
		if _, taken := p.used[a]; !taken && p.Usable(a) == nil && !p.rangeEdge(a) {
			p.used[a] = owner
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
		if !a.IsValid() || !p.rng.Contains(a) {
			a = p.rng.Addr()
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("no free address left in %s", p.rng)
		}
	}
}

// rangeEdge reports whether a is the first or last address of a range
// narrower than the subnet: valid addresses, but handing out x.x.5.0 and
// x.x.5.255 confuses people and tools, so only static addresses get them.
func (p *Pool) rangeEdge(a netip.Addr) bool {
	if p.rng.Bits() <= p.subnet.Bits() || p.rng.Bits() >= 31 {
		return false
	}
	return a == p.rng.Addr() || a == lastAddr(p.rng)
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ErrTaken matches (errors.Is) the error for an address another owner
// holds, so callers can tell a clash from an address that is not usable.
var ErrTaken = errors.New("address taken")

type takenError struct {
	ip    netip.Addr
	owner string
}

func (e takenError) Error() string        { return fmt.Sprintf("address %s is taken by %q", e.ip, e.owner) }
func (e takenError) Is(target error) bool { return target == ErrTaken }
