package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"unicode/utf8"
)

// Kind identifies a record type on the wire. Values are stable: a kind is
// never renumbered or reused. Nodes store and relay records of kinds they do
// not know, so a kind can be added without a flag day.
type Kind uint8

// Record kinds.
const (
	// KindEndpoint is an Endpoint: a container's address on a network.
	KindEndpoint Kind = 1
	// KindBlockClaim is a BlockClaim: a host's claim on a block of an
	// overlay subnet (cluster IPAM).
	KindBlockClaim Kind = 2
)

// String names the kind ("endpoint", "block-claim", "kind-7").
func (k Kind) String() string {
	switch k {
	case KindEndpoint:
		return "endpoint"
	case KindBlockClaim:
		return "block-claim"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// MarshalText writes the kind's name (JSON).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Limits on record fields, checked on SetLocal and on decode.
const (
	MaxNameLen  = 255 // network, container, host and DNS names
	MaxNames    = 64  // names per endpoint
	MaxMACLen   = 20  // bytes (InfiniBand); Ethernet is 6
	maxKeyLen   = 1024
	maxValueLen = 64 << 10
)

// Record is one row of the replicated table. Endpoint and BlockClaim are the
// record types; the interface is sealed so that every type has a wire
// encoding here.
type Record interface {
	// Kind is the record's wire kind.
	Kind() Kind
	// Owner is the host that publishes the record.
	Owner() string

	// appendKey encodes the identity of the record within its owner and
	// kind: two records with the same key are versions of each other.
	appendKey(b []byte) []byte
	// appendValue encodes everything else.
	appendValue(b []byte) []byte
	// check validates the fields a caller sets.
	check() error
	// stamped returns a copy with the owner (and VTEP) filled in.
	stamped(owner string, vtep netip.Addr) Record
}

// Endpoint is a container's interface on a network, as the rest of the
// cluster needs it: where to send frames for IP/MAC (VTEP) and which names
// resolve to IP (cluster-wide DNS).
//
// Its key is (Network, IP): a host publishes at most one endpoint per
// address and network, a new MAC for the same address replaces the old
// record, and a container that gets a new address is a delete plus an add.
type Endpoint struct {
	// Network is the vxmesh network name.
	Network string `json:"network"`
	// Container is the container's name.
	Container string `json:"container"`
	// IP is the container's address on Network.
	IP netip.Addr `json:"ip"`
	// MAC is the container interface's hardware address.
	MAC net.HardwareAddr `json:"mac"`
	// Names resolve to IP on Network: the container name and its aliases.
	Names []string `json:"names,omitempty"`
	// Host is the owner: the host that runs the container. SetLocal fills it.
	Host string `json:"host"`
	// VTEP is the owner's underlay address. SetLocal fills it.
	VTEP netip.Addr `json:"vtep"`
	// Version is the record's version (a Lamport timestamp: lower means
	// declared earlier), filled in snapshots only; SetLocal ignores it.
	// The agent uses it to let the older of two colliding endpoints keep
	// an address.
	Version uint64 `json:"version,omitempty"`
}

// MarshalJSON writes the endpoint with its MAC in the usual colon form.
func (e Endpoint) MarshalJSON() ([]byte, error) {
	type plain Endpoint
	return json.Marshal(struct {
		plain
		MAC string `json:"mac"`
	}{plain(e), e.MAC.String()})
}

// Kind implements Record.
func (e Endpoint) Kind() Kind { return KindEndpoint }

// Owner implements Record.
func (e Endpoint) Owner() string { return e.Host }

func (e Endpoint) appendKey(b []byte) []byte {
	b = appendString(b, e.Network)
	return appendAddr(b, e.IP)
}

func (e Endpoint) appendValue(b []byte) []byte {
	b = appendString(b, e.Container)
	b = appendBytes(b, e.MAC)
	b = appendUvarint(b, uint64(len(e.Names)))
	for _, n := range e.Names {
		b = appendString(b, n)
	}
	return b
}

func (e Endpoint) check() error {
	if err := checkName("network", e.Network); err != nil {
		return err
	}
	if !e.IP.IsValid() || e.IP.Zone() != "" || e.IP.Is4In6() {
		return fmt.Errorf("endpoint %q on %q: invalid IP %v", e.Container, e.Network, e.IP)
	}
	if e.Container != "" {
		if err := checkName("container", e.Container); err != nil {
			return err
		}
	}
	if len(e.MAC) == 0 || len(e.MAC) > MaxMACLen {
		return fmt.Errorf("endpoint %s on %q: MAC %q must have 1..%d bytes", e.IP, e.Network, e.MAC, MaxMACLen)
	}
	if len(e.Names) > MaxNames {
		return fmt.Errorf("endpoint %s on %q: %d names, at most %d", e.IP, e.Network, len(e.Names), MaxNames)
	}
	for _, n := range e.Names {
		if err := checkName("name", n); err != nil {
			return fmt.Errorf("endpoint %s on %q: %w", e.IP, e.Network, err)
		}
	}
	return nil
}

func (e Endpoint) stamped(owner string, vtep netip.Addr) Record {
	e.Host, e.VTEP, e.Version = owner, vtep, 0
	e.MAC = slices.Clone(e.MAC)
	e.Names = slices.Clone(e.Names)
	return e
}

// BlockClaim is a host's claim on Prefix, a block of an overlay network's
// subnet from which it allocates local addresses. Its key is (Network,
// Prefix). Overlapping claims of different hosts are resolved in the
// snapshot: a Fixed claim beats an automatic one, then the oldest claim
// stands (see Snapshot).
type BlockClaim struct {
	// Network is the overlay network name.
	Network string `json:"network"`
	// Prefix is the claimed block; it must be masked (no host bits).
	Prefix netip.Prefix `json:"prefix"`
	// Host is the owner. SetLocal fills it.
	Host string `json:"host"`
	// Fixed marks a claim of a configured ip_range: it wins over any
	// automatic claim it overlaps. On the wire it is the value byte 1
	// (automatic claims have an empty value, as before the field existed).
	Fixed bool `json:"fixed,omitempty"`
}

// Kind implements Record.
func (c BlockClaim) Kind() Kind { return KindBlockClaim }

// Owner implements Record.
func (c BlockClaim) Owner() string { return c.Host }

func (c BlockClaim) appendKey(b []byte) []byte {
	b = appendString(b, c.Network)
	b = appendAddr(b, c.Prefix.Addr())
	return append(b, byte(c.Prefix.Bits()))
}

func (c BlockClaim) appendValue(b []byte) []byte {
	if c.Fixed {
		b = append(b, 1)
	}
	return b
}

func (c BlockClaim) check() error {
	if err := checkName("network", c.Network); err != nil {
		return err
	}
	p := c.Prefix
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Masked() != p {
		return fmt.Errorf("block claim on %q: invalid or unmasked prefix %v", c.Network, p)
	}
	return nil
}

func (c BlockClaim) stamped(owner string, _ netip.Addr) Record {
	c.Host = owner
	return c
}

// checkName validates a name field: 1..MaxNameLen bytes of UTF-8 without
// control characters.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s %.20q...: longer than %d bytes", what, s, MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: not UTF-8", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q: control character", what, s)
		}
	}
	return nil
}

// decodeRecord rebuilds a record of a known kind from its key and value.
// It returns (nil, nil) for an unknown kind, which is stored and relayed
// opaquely. Decoding is strict: key and value must be exactly the canonical
// encoding of the decoded record, so one record has one key.
func decodeRecord(kind Kind, key, val string, owner string, vtep netip.Addr) (Record, error) {
	var rec Record
	switch kind {
	case KindEndpoint:
		var e Endpoint
		r := reader{b: []byte(key)}
		e.Network = r.string()
		e.IP = r.addr()
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("endpoint key: %w", err)
		}
		r = reader{b: []byte(val)}
		e.Container = r.string()
		mac := r.bytes(MaxMACLen)
		if mac != nil {
			e.MAC = net.HardwareAddr(mac)
		}
		n := r.uvarint(MaxNames)
		for i := uint64(0); i < n && r.err == nil; i++ {
			e.Names = append(e.Names, r.string())
		}
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("endpoint value: %w", err)
		}
		e.Host, e.VTEP = owner, vtep
		rec = e
	case KindBlockClaim:
		var c BlockClaim
		r := reader{b: []byte(key)}
		c.Network = r.string()
		a := r.addr()
		bits := int(r.byte())
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("block claim key: %w", err)
		}
		switch val {
		case "":
		case "\x01":
			c.Fixed = true
		default:
			return nil, errors.New("block claim value: unexpected bytes")
		}
		if bits > a.BitLen() {
			return nil, fmt.Errorf("block claim key: prefix length %d too long for %v", bits, a)
		}
		c.Prefix = netip.PrefixFrom(a, bits)
		c.Host = owner
		rec = c
	default:
		return nil, nil
	}
	if err := rec.check(); err != nil {
		return nil, err
	}
	if string(rec.appendKey(nil)) != key || string(rec.appendValue(nil)) != val {
		return nil, fmt.Errorf("%s: non-canonical encoding", kind)
	}
	return rec, nil
}
