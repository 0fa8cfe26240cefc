package gossip

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

// Wire format (all integers unsigned LEB128 varints unless noted; see
// docs/gossip.md for the full description):
//
//	message = format:u8(=1) type:u8 body
//	type 1 Update: body = group             one owner's changes; relayed
//	type 2 State:  body = flags:u8 payload  push/pull; flags bit0: payload is
//	               raw DEFLATE; payload = ngroups group*
//	type 3 Sync:   body = group             an owner's complete set, sent to
//	               one member; not relayed
//	type 4 Leave:  body = group, no records the owner is leaving on purpose
//	type 5 Digest: body = from:str n (owner:str records hash:u64be)*
//	               push/pull between members that all announce
//	               featureDigest: per owner, the count of stored records
//	               and the sum of their hashes (digest.go)
//	type 6 Want:   body = from:str n owner:str*   ask the digest's sender
//	               for these owners; the answer is a State message holding
//	               them, sent reliably (not relayed)
//	group   = owner:str vtep:addr asOf base n record*
//	record  = kind:u8 flags:u8 (bit0 tombstone, bit1 origin) version-base
//	          [ttl-ms if tombstone] [origin-ms if bit1] key:bytes
//	          [value:bytes unless tombstone]
//	str, bytes = len data;  addr = len(0|4|16):u8 data
//
// The origin (bit1, live records only) is when the owner wrote this
// version, Unix milliseconds by its clock: receivers time convergence with
// it. Older decoders refuse unknown flag bits, so it is sent only when
// every member announces featureOrigin (meta.go).
//
// Keys and values are opaque here, so records of unknown kinds are carried
// and relayed unchanged.
const (
	wireFormat = 1

	msgUpdate byte = 1
	msgState  byte = 2
	msgSync   byte = 3
	msgLeave  byte = 4
	msgDigest byte = 5
	msgWant   byte = 6

	stateFlagDeflate = 1 << 0
	recFlagTombstone = 1 << 0
	recFlagOrigin    = 1 << 1
	recFlags         = recFlagTombstone | recFlagOrigin

	// maxVersion bounds versions so no clock can be pushed near overflow by
	// a hostile or broken peer.
	maxVersion = 1 << 62

	maxGroups          = 1 << 16
	maxGroupRecords    = 1 << 20
	maxMessageRecords  = 1 << 22
	maxStateInflated   = 32 << 20
	maxTombstoneTTLms  = uint64(30 * 24 * time.Hour / time.Millisecond)
	maxOriginMS        = 1 << 50 // some 35,000 years
	compressStateAbove = 512
)

// wireRecord is a record as it travels: opaque key and value plus the
// versioning fields.
type wireRecord struct {
	kind    Kind
	tomb    bool
	version uint64
	ttl     time.Duration // tombstones: time left before collection
	origin  int64         // live records: Unix ms the owner wrote it; 0 unknown
	key     string
	val     string
}

// group is a set of records of one owner.
type group struct {
	owner string
	vtep  netip.Addr
	// asOf > 0 says recs are every live record the owner had when its clock
	// read asOf: a receiver drops the owner's records with a version <= asOf
	// that are not in recs. Only an owner writes asOf for its own group.
	asOf uint64
	recs []wireRecord
}

// message is a decoded gossip message.
type message struct {
	typ    byte
	groups []group
	// Digest and Want: the sending member, and its summaries or the
	// owners it asks for.
	from    string
	digests []ownerDigest
	want    []string
}

// --- primitives ---

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = appendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, 0)
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	default:
		v := a.As16()
		return append(append(b, 16), v[:]...)
	}
}

// reader decodes with a sticky error: after the first problem every read
// returns a zero value and err stays set.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail(errShort)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// uvarint reads a varint and fails when it exceeds limit.
func (r *reader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad varint"))
		return 0
	}
	if v > limit {
		r.fail(fmt.Errorf("value %d over limit %d", v, limit))
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes; the
// result aliases the input, so callers copy (string conversion does).
func (r *reader) bytes(limit uint64) []byte {
	n := r.uvarint(limit)
	if n == 0 {
		return nil
	}
	return r.take(n)
}

func (r *reader) string() string { return string(r.bytes(MaxNameLen)) }

func (r *reader) addr() netip.Addr {
	n := r.byte()
	switch n {
	case 0:
		return netip.Addr{}
	case 4:
		p := r.take(4)
		if p == nil {
			return netip.Addr{}
		}
		return netip.AddrFrom4([4]byte(p))
	case 16:
		p := r.take(16)
		if p == nil {
			return netip.Addr{}
		}
		a := netip.AddrFrom16([16]byte(p))
		if a.Is4In6() {
			r.fail(errors.New("IPv4-mapped IPv6 address"))
			return netip.Addr{}
		}
		return a
	}
	r.fail(fmt.Errorf("bad address length %d", n))
	return netip.Addr{}
}

func (r *reader) end() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return nil
}

// --- groups ---

func appendGroup(b []byte, g *group) []byte {
	b = appendString(b, g.owner)
	b = appendAddr(b, g.vtep)
	b = appendUvarint(b, g.asOf)
	var base uint64
	for i, r := range g.recs {
		if i == 0 || r.version < base {
			base = r.version
		}
	}
	b = appendUvarint(b, base)
	b = appendUvarint(b, uint64(len(g.recs)))
	for i := range g.recs {
		r := &g.recs[i]
		var flags byte
		origin := r.origin > 0 && !r.tomb
		if r.tomb {
			flags |= recFlagTombstone
		}
		if origin {
			flags |= recFlagOrigin
		}
		b = append(b, byte(r.kind), flags)
		b = appendUvarint(b, r.version-base)
		if r.tomb {
			ms := uint64((r.ttl + time.Millisecond - 1) / time.Millisecond)
			b = appendUvarint(b, min(max(ms, 1), maxTombstoneTTLms))
		}
		if origin {
			b = appendUvarint(b, min(uint64(r.origin), maxOriginMS))
		}
		b = appendString(b, r.key)
		if !r.tomb {
			b = appendString(b, r.val)
		}
	}
	return b
}

func readGroup(r *reader, budget *int) group {
	var g group
	g.owner = r.string()
	g.vtep = r.addr()
	g.asOf = r.uvarint(maxVersion - 1)
	base := r.uvarint(maxVersion - 1)
	n := r.uvarint(maxGroupRecords)
	if r.err != nil {
		return g
	}
	if g.owner == "" {
		r.fail(errors.New("group without owner"))
		return g
	}
	if *budget -= int(n); *budget < 0 {
		r.fail(errors.New("too many records"))
		return g
	}
	// Every record takes at least 4 bytes: do not let a small message make
	// us allocate a huge slice.
	if n > uint64(len(r.b)/4) {
		r.fail(errShort)
		return g
	}
	// Grow as records actually decode: n is only an upper bound.
	g.recs = make([]wireRecord, 0, min(n, 1024))
	for i := uint64(0); i < n; i++ {
		var w wireRecord
		w.kind = Kind(r.byte())
		flags := r.byte()
		if flags&^recFlags != 0 || flags == recFlags {
			r.fail(fmt.Errorf("unknown record flags %#x", flags))
			return g
		}
		w.tomb = flags&recFlagTombstone != 0
		d := r.uvarint(maxVersion - 1)
		w.version = base + d
		if r.err == nil && (w.version >= maxVersion || w.version == 0) {
			r.fail(fmt.Errorf("version %d out of range", w.version))
		}
		if w.kind == 0 && r.err == nil {
			r.fail(errors.New("record kind 0"))
		}
		if w.tomb {
			w.ttl = time.Duration(r.uvarint(maxTombstoneTTLms)) * time.Millisecond
			if r.err == nil && w.ttl == 0 {
				r.fail(errors.New("tombstone without a lifetime"))
			}
		}
		if flags&recFlagOrigin != 0 {
			w.origin = int64(r.uvarint(maxOriginMS))
			if r.err == nil && w.origin == 0 {
				r.fail(errors.New("origin time 0"))
			}
		}
		w.key = string(r.bytes(maxKeyLen))
		if !w.tomb {
			w.val = string(r.bytes(maxValueLen))
		}
		if r.err != nil {
			return g
		}
		if w.key == "" {
			r.fail(errors.New("empty record key"))
			return g
		}
		g.recs = append(g.recs, w)
	}
	return g
}

// --- messages ---

// encodeUpdate encodes an Update (relayed) or Sync (one member, not relayed)
// message holding one group.
func encodeUpdate(typ byte, g *group) []byte {
	b := make([]byte, 0, 64+len(g.recs)*48)
	b = append(b, wireFormat, typ)
	return appendGroup(b, g)
}

// flateWriters reuses deflate writers: a new one allocates and zeroes
// about 1 MB, which was most of the cost of encoding a 20 KB table (a
// profile at 200 members, docs/benchmarks.md).
var flateWriters = sync.Pool{New: func() any {
	zw, err := flate.NewWriter(nil, flate.BestSpeed)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return zw
}}

// encodeState encodes a push/pull State message, compressed when that helps.
func encodeState(groups []group) []byte {
	var body []byte
	body = appendUvarint(body, uint64(len(groups)))
	for i := range groups {
		body = appendGroup(body, &groups[i])
	}
	if len(body) > compressStateAbove {
		var buf bytes.Buffer
		buf.Grow(len(body)/3 + 16)
		buf.Write([]byte{wireFormat, msgState, stateFlagDeflate})
		zw := flateWriters.Get().(*flate.Writer)
		zw.Reset(&buf)
		_, err := zw.Write(body)
		if err == nil {
			err = zw.Close()
		}
		zw.Reset(nil)
		flateWriters.Put(zw)
		if err == nil && buf.Len() < len(body)+3 {
			return buf.Bytes()
		}
	}
	return append([]byte{wireFormat, msgState, 0}, body...)
}

// encodeDigest encodes a push/pull Digest of member from.
func encodeDigest(from string, ds []ownerDigest) []byte {
	b := make([]byte, 0, 8+len(from)+len(ds)*(24+16))
	b = append(b, wireFormat, msgDigest)
	b = appendString(b, from)
	b = appendUvarint(b, uint64(len(ds)))
	for _, d := range ds {
		b = appendString(b, d.owner)
		b = appendUvarint(b, d.records)
		b = binary.BigEndian.AppendUint64(b, d.hash)
	}
	return b
}

// encodeWant encodes member from's request for owners' records.
func encodeWant(from string, owners []string) []byte {
	b := []byte{wireFormat, msgWant}
	b = appendString(b, from)
	b = appendUvarint(b, uint64(len(owners)))
	for _, o := range owners {
		b = appendString(b, o)
	}
	return b
}

// readDigest reads a Digest body into m.
func readDigest(r *reader, m *message) error {
	m.from = r.string()
	n := r.uvarint(maxGroups)
	// An owner takes at least 10 bytes.
	if r.err == nil && n > uint64(len(r.b)/10) {
		r.fail(errShort)
	}
	if r.err == nil {
		m.digests = make([]ownerDigest, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		d := ownerDigest{owner: r.string(), records: r.uvarint(maxGroupRecords)}
		if h := r.take(8); h != nil {
			d.hash = binary.BigEndian.Uint64(h)
		}
		if r.err == nil && (d.owner == "" || d.records == 0) {
			r.fail(errors.New("digest of an empty owner"))
		}
		m.digests = append(m.digests, d)
	}
	if r.err == nil && m.from == "" {
		r.fail(errors.New("digest without sender"))
	}
	return r.end()
}

// readWant reads a Want body into m.
func readWant(r *reader, m *message) error {
	m.from = r.string()
	n := r.uvarint(maxGroups)
	if r.err == nil && n > uint64(len(r.b)/2) {
		r.fail(errShort)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		o := r.string()
		if r.err == nil && o == "" {
			r.fail(errors.New("want of an empty owner"))
		}
		m.want = append(m.want, o)
	}
	if r.err == nil && (m.from == "" || n == 0) {
		r.fail(errors.New("want without sender or owners"))
	}
	return r.end()
}

// decodeMessage decodes any message. It never retains buf: every string and
// slice in the result is a copy, so callers may pass memberlist's buffers.
func decodeMessage(buf []byte) (*message, error) {
	r := reader{b: buf}
	if v := r.byte(); r.err == nil && v != wireFormat {
		return nil, fmt.Errorf("unknown format %d", v)
	}
	m := &message{typ: r.byte()}
	if r.err != nil {
		return nil, fmt.Errorf("decode header: %w", r.err)
	}
	budget := maxMessageRecords
	switch m.typ {
	case msgUpdate, msgSync, msgLeave:
		g := readGroup(&r, &budget)
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("decode update: %w", err)
		}
		if m.typ != msgSync && g.asOf != 0 {
			return nil, errors.New("decode update: asOf set on a relayed update")
		}
		if m.typ == msgLeave && len(g.recs) != 0 {
			return nil, errors.New("decode leave: records in a leave message")
		}
		m.groups = []group{g}
	case msgState:
		flags := r.byte()
		if r.err != nil {
			return nil, fmt.Errorf("decode state: %w", r.err)
		}
		if flags&^stateFlagDeflate != 0 {
			return nil, fmt.Errorf("decode state: unknown flags %#x", flags)
		}
		if flags&stateFlagDeflate != 0 {
			zr := flate.NewReader(bytes.NewReader(r.b))
			inflated, err := io.ReadAll(io.LimitReader(zr, maxStateInflated+1))
			zr.Close()
			if err != nil {
				return nil, fmt.Errorf("decode state: inflate: %w", err)
			}
			if len(inflated) > maxStateInflated {
				return nil, fmt.Errorf("decode state: more than %d bytes inflated", maxStateInflated)
			}
			r = reader{b: inflated}
		}
		n := r.uvarint(maxGroups)
		// A group takes at least 6 bytes.
		if r.err == nil && n > uint64(len(r.b)/6) {
			r.fail(errShort)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			m.groups = append(m.groups, readGroup(&r, &budget))
		}
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("decode state: %w", err)
		}
	case msgDigest:
		if err := readDigest(&r, m); err != nil {
			return nil, fmt.Errorf("decode digest: %w", err)
		}
	case msgWant:
		if err := readWant(&r, m); err != nil {
			return nil, fmt.Errorf("decode want: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown message type %d", m.typ)
	}
	return m, nil
}

// splitGroup cuts g into groups whose Update encoding fits in limit bytes
// (a record bigger than limit alone still gets a group of its own). The parts
// are partial sets, so asOf is not carried over.
func splitGroup(g *group, limit int) []group {
	var out []group
	cur := group{owner: g.owner, vtep: g.vtep}
	size := 2 + len(appendGroup(nil, &cur)) + 8
	for _, r := range g.recs {
		rs := len(r.key) + len(r.val) + 24
		if len(cur.recs) > 0 && size+rs > limit {
			out = append(out, cur)
			cur = group{owner: g.owner, vtep: g.vtep}
			size = 2 + len(appendGroup(nil, &cur)) + 8
		}
		cur.recs = append(cur.recs, r)
		size += rs
	}
	if len(cur.recs) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	return out
}
