package overlay

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net"
	"net/netip"
	"slices"
)

// Cluster-wide IPAM without a central store.
//
// Each host allocates overlay addresses from blocks it claims. A claim is a
// record in the gossip table (the agent publishes and reads them; this file
// only decides). Claims can race: two hosts may claim the same free block
// before either hears of the other. Every host resolves the claims it sees
// with the same rule, so once gossip converges they all agree:
//
//   - a claim from a configured ip_range (Fixed) beats an automatic one;
//   - otherwise the older claim (lower Version) wins;
//   - on a tie, the lower host name wins.
//
// The loser notices (ChooseBlock reports it in Lost), withdraws its claim
// and claims another free block. Addresses it already handed out in the lost
// block are not renumbered; AddrConflicts catches any real collision, and
// the older endpoint keeps the address.

// Claim is one host's claim on a block of an overlay subnet.
type Claim struct {
	Host   string
	Prefix netip.Prefix
	// Version orders claims: lower is older. A wall-clock claim time or a
	// Lamport clock value, the same kind for every claim.
	Version uint64
	// Fixed marks a claim from a configured ip_range: it wins over any
	// automatic claim it overlaps.
	Fixed bool
}

func (c Claim) String() string {
	s := fmt.Sprintf("%s by %s at %d", c.Prefix, c.Host, c.Version)
	if c.Fixed {
		s += " (ip_range)"
	}
	return s
}

// compareClaims orders claims by strength: negative when a beats b.
func compareClaims(a, b Claim) int {
	if a.Fixed != b.Fixed {
		if a.Fixed {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Host, b.Host); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// BlockBits is the prefix length of the blocks a subnet is cut into: /24
// for IPv4 subnets of /20 or larger (at least 16 blocks of 254 addresses);
// smaller subnets get 16 blocks (/22 -> /26, /24 -> /28), but never blocks
// smaller than /28 (14 addresses); a subnet of /28 or smaller is one block.
// IPv6 subnets get /112 blocks, or 16 blocks of at least /124 likewise.
func BlockBits(subnet netip.Prefix) int {
	bits := subnet.Bits()
	target, smallest := 24, 28
	if subnet.Addr().Is6() && !subnet.Addr().Is4In6() {
		target, smallest = 112, 124
	}
	b := max(target, bits+4)
	if b > smallest {
		b = max(smallest, bits)
	}
	return b
}

// Resolve splits claims on subnet into the ones that stand and the ones that
// lost, by the rule above. A claim loses when it overlaps a winning claim of
// another host that beats it, or when its prefix is not inside subnet.
// Claims are taken in winning order, so the result does not depend on the
// order of the input. Both lists come out in winning order.
func Resolve(subnet netip.Prefix, claims []Claim) (won, lost []Claim) {
	subnet = subnet.Masked()
	sorted := slices.Clone(claims)
	slices.SortFunc(sorted, compareClaims)
	for _, c := range sorted {
		if !c.Prefix.IsValid() || !within(c.Prefix, subnet) {
			lost = append(lost, c)
			continue
		}
		ok := true
		for _, w := range won {
			if w.Host != c.Host && w.Prefix.Overlaps(c.Prefix) {
				ok = false
				break
			}
		}
		if ok {
			won = append(won, c)
		} else {
			lost = append(lost, c)
		}
	}
	return won, lost
}

func within(p, subnet netip.Prefix) bool {
	return p.Bits() >= subnet.Bits() && subnet.Contains(p.Addr())
}

// BlockChoice is ChooseBlock's answer for one host and subnet.
type BlockChoice struct {
	// Held are this host's claims that stand, oldest first: allocate from them.
	Held []netip.Prefix
	// Claim, when valid, is a block to claim now (publish a Claim for it).
	// It is set when Held is empty, or when the configured ip_range is not
	// claimed yet.
	Claim netip.Prefix
	// Lost are this host's claims beaten by another host's claim: withdraw
	// them and allocate nothing new from them.
	Lost []netip.Prefix
	// Conflicts are other hosts' ip_range claims that overlap this host's
	// ip_range: the configs disagree and the operator has to fix them;
	// AddrConflicts settles any address that collides meanwhile.
	Conflicts []Claim
}

// ErrNoFreeBlock is returned when every block of a subnet is claimed.
var ErrNoFreeBlock = errors.New("no free block left in subnet")

// ChooseBlock decides where host allocates overlay addresses of subnet,
// given every claim on the subnet the host has seen (its own included).
//
// With ipRange valid, the host uses it, whatever other claims say, and
// claims it (Fixed) so automatic claims keep out of it. Otherwise the host
// keeps its standing claims, or is told to claim a free block (FreeBlock)
// when it has none. ChooseBlock is pure and deterministic.
func ChooseBlock(subnet, ipRange netip.Prefix, host string, claims []Claim) (BlockChoice, error) {
	var ch BlockChoice
	if !subnet.IsValid() {
		return ch, errors.New("choose block: subnet is not valid")
	}
	if host == "" {
		return ch, errors.New("choose block: host name is empty")
	}
	subnet = subnet.Masked()
	if ipRange.IsValid() {
		ipRange = ipRange.Masked()
		if !within(ipRange, subnet) {
			return ch, fmt.Errorf("choose block: ip_range %s is not inside subnet %s", ipRange, subnet)
		}
		ch.Held = []netip.Prefix{ipRange}
		claimed := false
		for _, c := range claims {
			if c.Host == host && c.Prefix.Masked() == ipRange && c.Fixed {
				claimed = true
			}
		}
		if !claimed {
			ch.Claim = ipRange
		}
		for _, c := range claims {
			if c.Host == host {
				if p := c.Prefix.Masked(); p != ipRange {
					// Automatic claims from before the ip_range was configured.
					ch.Lost = append(ch.Lost, p)
				}
				continue
			}
			if c.Fixed && c.Prefix.Overlaps(ipRange) {
				ch.Conflicts = append(ch.Conflicts, c)
			}
		}
		slices.SortFunc(ch.Conflicts, compareClaims)
		slices.SortFunc(ch.Lost, comparePrefix)
		ch.Lost = slices.Compact(ch.Lost)
		return ch, nil
	}
	won, lost := Resolve(subnet, claims)
	for _, c := range won {
		if c.Host == host {
			ch.Held = append(ch.Held, c.Prefix)
		}
	}
	for _, c := range lost {
		if c.Host == host {
			ch.Lost = append(ch.Lost, c.Prefix)
		}
	}
	if len(ch.Held) > 0 {
		return ch, nil
	}
	b, ok := FreeBlock(subnet, host, claims)
	if !ok {
		return ch, fmt.Errorf("choose block in %s: %w", subnet, ErrNoFreeBlock)
	}
	ch.Claim = b
	return ch, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// FreeBlock picks a block of subnet (size BlockBits) for host to claim:
// one that overlaps no standing claim and, if possible, no claim at all.
// The search starts at a block derived from the host name, so hosts that
// claim at the same moment rarely pick the same block, and a host that lost
// its state tends to pick the block it had. Use it also when every held
// block is full.
func FreeBlock(subnet netip.Prefix, host string, claims []Claim) (netip.Prefix, bool) {
	subnet = subnet.Masked()
	bits := BlockBits(subnet)
	won, _ := Resolve(subnet, claims)
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-subnet.Bits()))
	h := fnv.New64a()
	h.Write([]byte(host))
	start := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), n)

	overlaps := func(b netip.Prefix, cs []Claim) bool {
		for _, c := range cs {
			if c.Prefix.IsValid() && c.Prefix.Overlaps(b) {
				return true
			}
		}
		return false
	}
	// Scanning a huge IPv6 subnet block by block is pointless: bound it.
	limit := n
	if limit.Cmp(big.NewInt(1<<16)) > 0 {
		limit = big.NewInt(1 << 16)
	}
	for pass := range 2 {
		avoid := claims // first pass: avoid every claim, even lost ones
		if pass == 1 {
			avoid = won
		}
		i := new(big.Int).Set(start)
		for k := int64(0); k < limit.Int64(); k++ {
			b := nthBlock(subnet, bits, i)
			if !overlaps(b, avoid) {
				return b, true
			}
			i.Add(i, big.NewInt(1))
			if i.Cmp(n) >= 0 {
				i.SetInt64(0)
			}
		}
	}
	return netip.Prefix{}, false
}

// nthBlock returns block i (of size bits) of subnet.
func nthBlock(subnet netip.Prefix, bits int, i *big.Int) netip.Prefix {
	base := new(big.Int).SetBytes(subnet.Addr().AsSlice())
	size := len(subnet.Addr().AsSlice()) * 8
	off := new(big.Int).Lsh(i, uint(size-bits))
	base.Add(base, off)
	buf := make([]byte, size/8)
	base.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return netip.PrefixFrom(a, bits)
}

// ErrBlockFull is returned by Allocate when no address is left in a block.
var ErrBlockFull = errors.New("no free address left in block")

// Allocate picks an address in block for a new endpoint: the first free one
// after prev (the last address this host handed out in the block), wrapping
// around, so a released address is reused as late as possible (stale ARP
// and FDB entries elsewhere age out first). It skips the block's first and
// last address (network and broadcast when the block is the whole subnet;
// skipped in every block for simplicity), the gateway, and every address in
// used, which should hold all addresses in use in the block cluster-wide.
func Allocate(block netip.Prefix, gateway netip.Addr, used map[netip.Addr]bool, prev netip.Addr) (netip.Addr, error) {
	if !block.IsValid() {
		return netip.Addr{}, errors.New("allocate: block is not valid")
	}
	block = block.Masked()
	first := block.Addr()
	last := lastAddr(block)
	if first == last || first.Next() == last {
		return netip.Addr{}, fmt.Errorf("allocate in %s: block too small", block)
	}
	lo, hi := first.Next(), last.Prev()
	start := lo
	if prev.IsValid() && block.Contains(prev) {
		start = prev.Next()
		if start.Compare(hi) > 0 || start.Compare(lo) < 0 {
			start = lo
		}
	}
	// Bound the scan for huge IPv6 blocks.
	const maxScan = 1 << 20
	a := start
	for range maxScan {
		if a != gateway && !used[a] {
			return a, nil
		}
		a = a.Next()
		if a.Compare(hi) > 0 {
			a = lo
		}
		if a == start {
			break
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate in %s: %w", block, ErrBlockFull)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// AddrClaim is one endpoint's use of an address, as the gossip table shows it.
type AddrClaim struct {
	Host     string
	Endpoint string // container name (unique per host)
	Addr     netip.Addr
	// Version orders claims: lower is older (when the endpoint got the address).
	Version uint64
}

func (c AddrClaim) String() string {
	return fmt.Sprintf("%s of %s on %s at %d", c.Addr, c.Endpoint, c.Host, c.Version)
}

// Conflict is one address used by more than one endpoint.
type Conflict struct {
	Addr netip.Addr
	// Winner keeps the address: the oldest claim (tie: lower host, then
	// endpoint name).
	Winner AddrClaim
	// Losers must give the address up; the agent reports them in status
	// and the log, and does not program them.
	Losers []AddrClaim
}

// AddrConflicts finds addresses claimed by more than one endpoint, sorted
// by address. The same endpoint listed twice is not a conflict.
func AddrConflicts(claims []AddrClaim) []Conflict {
	byAddr := map[netip.Addr][]AddrClaim{}
	for _, c := range claims {
		if c.Addr.IsValid() {
			byAddr[c.Addr.Unmap()] = append(byAddr[c.Addr.Unmap()], c)
		}
	}
	var out []Conflict
	for addr, cs := range byAddr {
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, b AddrClaim) int {
			return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Endpoint, b.Endpoint))
		})
		cf := Conflict{Addr: addr, Winner: cs[0]}
		for _, c := range cs[1:] {
			if c.Host == cf.Winner.Host && c.Endpoint == cf.Winner.Endpoint {
				continue
			}
			if n := len(cf.Losers); n > 0 && cf.Losers[n-1].Host == c.Host && cf.Losers[n-1].Endpoint == c.Endpoint {
				continue
			}
			cf.Losers = append(cf.Losers, c)
		}
		if len(cf.Losers) > 0 {
			out = append(out, cf)
		}
	}
	slices.SortFunc(out, func(a, b Conflict) int { return a.Addr.Compare(b.Addr) })
	return out
}

// NewMAC returns a random locally administered unicast MAC for a new
// endpoint (never with first byte 0x06, which GatewayMAC uses).
//
// Random rather than derived from the IP: when an address is released and
// handed to a new container on another host, hosts that still hold the old
// endpoint's FDB entry (gossip not yet converged, a reaped host coming back)
// would send the new container's frames to the old VTEP if the MAC were the
// same; with a fresh MAC, the stale entry matches nothing and the new entry
// is independent of it. It also keeps two endpoints with one IP (a
// conflict) distinguishable at layer 2.
func NewMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	for {
		if _, err := rand.Read(mac); err != nil {
			panic(fmt.Sprintf("read random bytes: %v", err)) // crypto/rand does not fail on Linux
		}
		mac[0] = mac[0]&^0x03 | 0x02 // locally administered, unicast
		if mac[0] != gatewayMACByte && !isZeroMAC(mac[1:]) {
			return mac
		}
	}
}
