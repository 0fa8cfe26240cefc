package gossip

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleGroups() []group {
	e := ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web", "www")
	e6 := ep("mesh6", "fd00::2", "02:00:00:00:00:03")
	c := claim("mesh", "10.0.1.0/24")
	return []group{
		{owner: "h1", vtep: netip.MustParseAddr("198.18.0.1"), asOf: 1700000000000500, recs: []wireRecord{
			{kind: KindEndpoint, version: 1700000000000001, origin: 1700000000123, key: string(e.appendKey(nil)), val: string(e.appendValue(nil))},
			{kind: KindEndpoint, version: 1700000000000003, key: string(e6.appendKey(nil)), val: string(e6.appendValue(nil))},
			{kind: KindBlockClaim, version: 1700000000000002, key: string(c.appendKey(nil))},
		}},
		{owner: "h2", vtep: netip.MustParseAddr("fd00:198:18::2"), recs: []wireRecord{
			{kind: KindEndpoint, tomb: true, version: 99, ttl: 1500 * time.Millisecond, key: string(e.appendKey(nil))},
			{kind: 77, version: 100, key: "k", val: "v"},
		}},
		{owner: "h3"},
	}
}

func TestWireRoundTrip(t *testing.T) {
	gs := sampleGroups()
	for _, typ := range []byte{msgUpdate, msgSync} {
		for i := range gs {
			g := gs[i]
			if typ == msgUpdate {
				g.asOf = 0
			}
			m, err := decodeMessage(encodeUpdate(typ, &g))
			if err != nil {
				t.Fatalf("type %d group %d: %v", typ, i, err)
			}
			if m.typ != typ || !groupsEqual(m.groups, []group{g}) {
				t.Fatalf("type %d group %d: got %+v, want %+v", typ, i, m.groups, g)
			}
		}
	}
	// State, small (plain) and large (deflated).
	big := group{owner: "h9", vtep: netip.MustParseAddr("198.18.0.9")}
	for i := range 500 {
		e := ep("mesh", fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), fmt.Sprintf("c%d", i))
		big.recs = append(big.recs, wireRecord{kind: KindEndpoint, version: uint64(1000 + i), key: string(e.appendKey(nil)), val: string(e.appendValue(nil))})
	}
	for _, in := range [][]group{gs[:1], append(gs, big)} {
		buf := encodeState(in)
		m, err := decodeMessage(buf)
		if err != nil {
			t.Fatalf("state: %v", err)
		}
		if !groupsEqual(m.groups, in) {
			t.Fatalf("state round trip differs")
		}
		compressed := buf[2]&stateFlagDeflate != 0
		if want := len(in) > 1; compressed != want {
			t.Fatalf("state of %d groups: compressed=%v, want %v", len(in), compressed, want)
		}
	}
}

func groupsEqual(a, b []group) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.recs) == 0 && len(y.recs) == 0 {
			x.recs, y.recs = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func TestDecodeRejects(t *testing.T) {
	valid := encodeUpdate(msgUpdate, &group{owner: "h1", vtep: netip.MustParseAddr("198.18.0.1"), recs: []wireRecord{{kind: 1, version: 5, key: "k", val: "v"}}})
	rec := func(kind, flags byte, dver uint64, rest ...byte) []byte {
		b := []byte{wireFormat, msgUpdate}
		b = appendString(b, "h1")
		b = appendAddr(b, netip.MustParseAddr("198.18.0.1"))
		b = appendUvarint(b, 0) // asOf
		b = appendUvarint(b, 0) // base
		b = appendUvarint(b, 1)
		b = append(b, kind, flags)
		b = appendUvarint(b, dver)
		return append(b, rest...)
	}
	bomb := func() []byte {
		var buf bytes.Buffer
		buf.Write([]byte{wireFormat, msgState, stateFlagDeflate})
		zw, _ := flate.NewWriter(&buf, flate.BestSpeed)
		zero := make([]byte, 1<<20)
		for range 33 {
			zw.Write(zero)
		}
		zw.Close()
		return buf.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"format", []byte{9, msgUpdate}, "unknown format"},
		{"type", []byte{wireFormat, 42}, "unknown message type"},
		{"truncated", valid[:len(valid)-1], "truncated"},
		{"trailing", append(append([]byte{}, valid...), 0), "trailing"},
		{"no owner", []byte{wireFormat, msgUpdate, 0, 0, 0, 0, 0}, "without owner"},
		{"version zero", rec(1, 0, 0, 1, 'k', 1, 'v'), "out of range"},
		{"version huge", rec(1, 0, maxVersion, 1, 'k', 1, 'v'), "over limit"},
		{"flags", rec(1, 0x80, 1, 1, 'k', 1, 'v'), "unknown record flags"},
		{"kind zero", rec(0, 0, 1, 1, 'k', 1, 'v'), "kind 0"},
		{"empty key", rec(1, 0, 1, 0, 1, 'v'), "empty record key"},
		{"tombstone ttl zero", rec(1, recFlagTombstone, 1, 0, 1, 'k'), "without a lifetime"},
		{"origin zero", rec(1, recFlagOrigin, 1, 0, 1, 'k', 1, 'v'), "origin time 0"},
		{"origin on tombstone", rec(1, recFlagTombstone|recFlagOrigin, 1, 5, 5, 1, 'k'), "unknown record flags"},
		{"count too big", append([]byte{wireFormat, msgUpdate, 2, 'h', '1', 0, 0, 0}, binary.AppendUvarint(nil, 1<<19)...), "truncated"},
		{"asOf on update", encodeUpdate(msgUpdate, &group{owner: "h1", asOf: 5}), "asOf"},
		{"state flags", []byte{wireFormat, msgState, 0x40, 0}, "unknown flags"},
		{"state bad deflate", []byte{wireFormat, msgState, stateFlagDeflate, 0xff, 0xff}, "inflate"},
		{"state bomb", bomb(), "inflated"},
		{"addr length", []byte{wireFormat, msgUpdate, 2, 'h', '1', 7}, "address length"},
		{"mapped addr", append(append([]byte{wireFormat, msgUpdate, 2, 'h', '1', 16}, netip.MustParseAddr("::ffff:1.2.3.4").AsSlice()...), 0, 0, 0), "mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeMessage(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	e := ep("mesh", "10.0.0.2", "02:00:00:00:00:02", "web")
	k, v := string(e.appendKey(nil)), string(e.appendValue(nil))
	c := claim("mesh", "10.0.0.0/24")
	tests := []struct {
		name     string
		kind     Kind
		key, val string
		want     string
	}{
		{"key trailing", KindEndpoint, k + "x", v, "trailing"},
		{"value trailing", KindEndpoint, k, v + "x", "trailing"},
		{"no mac", KindEndpoint, k, string(Endpoint{Container: "x"}.appendValue(nil)), "MAC"},
		{"claim value", KindBlockClaim, string(c.appendKey(nil)), "x", "unexpected"},
		{"claim bits", KindBlockClaim, string(appendAddr(appendString(nil, "mesh"), netip.MustParseAddr("10.0.0.0"))) + "\x21", "", "too long"},
		{"claim unmasked", KindBlockClaim, string(appendAddr(appendString(nil, "mesh"), netip.MustParseAddr("10.0.0.1"))) + "\x18", "", "unmasked"},
		{"bad name", KindEndpoint, string(appendAddr(appendString(nil, "a\x00"), netip.MustParseAddr("10.0.0.1"))), v, "control"},
		{"non-canonical varint", KindEndpoint, "\x84\x00mesh" + k[5:], v, "non-canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRecord(tt.kind, tt.key, tt.val, "h1", netip.MustParseAddr("198.18.0.1"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSplitGroup(t *testing.T) {
	g := group{owner: "h1", vtep: netip.MustParseAddr("198.18.0.1")}
	for i := range 300 {
		e := ep("mesh", fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), "02:00:00:00:00:01", fmt.Sprintf("container-%d", i), "alias")
		g.recs = append(g.recs, wireRecord{kind: KindEndpoint, version: uint64(1700000000000000 + i), key: string(e.appendKey(nil)), val: string(e.appendValue(nil))})
	}
	parts := splitGroup(&g, directLimit)
	if len(parts) < 2 {
		t.Fatalf("300 records in %d parts", len(parts))
	}
	var n int
	for _, p := range parts {
		if sz := len(encodeUpdate(msgUpdate, &p)); sz > directLimit {
			t.Fatalf("part of %d records encodes to %d bytes > %d", len(p.recs), sz, directLimit)
		}
		n += len(p.recs)
	}
	if n != len(g.recs) {
		t.Fatalf("parts hold %d records, want %d", n, len(g.recs))
	}
}

// FuzzDecode feeds arbitrary bytes to the message decoder and the record
// decoders. Whatever decodes must re-encode to something that decodes to
// the same value.
func FuzzDecode(f *testing.F) {
	gs := sampleGroups()
	g0 := gs[0]
	g0.asOf = 0
	f.Add(encodeUpdate(msgUpdate, &g0))
	f.Add(encodeUpdate(msgUpdate, &gs[1]))
	f.Add(encodeUpdate(msgSync, &gs[0]))
	f.Add(encodeState(gs))
	f.Add(encodeState(gs[:1]))
	f.Add(encodeUpdate(msgLeave, &group{owner: "h1", vtep: netip.MustParseAddr("198.18.0.1")}))
	f.Add(encodeDigest("h1", []ownerDigest{{"h1", 3, 0xfeedface}, {"h2", 1, 7}}))
	f.Add(encodeWant("h2", []string{"h1", "h3"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data)
		if err != nil {
			return
		}
		for _, g := range m.groups {
			for _, r := range g.recs {
				if r.tomb {
					continue
				}
				rec, err := decodeRecord(r.kind, r.key, r.val, g.owner, g.vtep)
				if err != nil || rec == nil {
					continue
				}
				if string(rec.appendKey(nil)) != r.key || string(rec.appendValue(nil)) != r.val {
					t.Fatalf("record %+v does not re-encode to its bytes", rec)
				}
			}
		}
		var again []byte
		switch m.typ {
		case msgState:
			again = encodeState(m.groups)
		case msgDigest, msgWant:
			if m.typ == msgDigest {
				again = encodeDigest(m.from, m.digests)
			} else {
				again = encodeWant(m.from, m.want)
			}
			m2, err := decodeMessage(again)
			if err != nil || m2.from != m.from || !reflect.DeepEqual(m2.digests, m.digests) || !slices.Equal(m2.want, m.want) {
				t.Fatalf("re-encoded digest or want differs (%v):\n%+v\n%+v", err, m, m2)
			}
			return
		default:
			again = encodeUpdate(m.typ, &m.groups[0])
		}
		m2, err := decodeMessage(again)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if m2.typ != m.typ || !groupsEqual(m.groups, m2.groups) {
			t.Fatalf("re-encoded message differs:\n%+v\n%+v", m.groups, m2.groups)
		}
	})
}

// TestDigestWireRoundTrip: digests and wants survive the wire; malformed
// ones are refused.
func TestDigestWireRoundTrip(t *testing.T) {
	ds := []ownerDigest{{"h1", 3, 0xfeedfacecafebeef}, {"h2", 10000, 0}}
	m, err := decodeMessage(encodeDigest("h1", ds))
	if err != nil || m.typ != msgDigest || m.from != "h1" || !reflect.DeepEqual(m.digests, ds) {
		t.Fatalf("digest round trip: %v, %+v", err, m)
	}
	if m, err := decodeMessage(encodeDigest("h1", nil)); err != nil || len(m.digests) != 0 {
		t.Fatalf("empty digest: %v, %+v", err, m)
	}
	m, err = decodeMessage(encodeWant("h2", []string{"h1", "h3"}))
	if err != nil || m.typ != msgWant || m.from != "h2" || !slices.Equal(m.want, []string{"h1", "h3"}) {
		t.Fatalf("want round trip: %v, %+v", err, m)
	}
	for name, b := range map[string][]byte{
		"digest without sender":  encodeDigest("", ds),
		"digest of empty owner":  encodeDigest("h1", []ownerDigest{{"", 1, 1}}),
		"digest of zero records": encodeDigest("h1", []ownerDigest{{"h2", 0, 1}}),
		"digest truncated":       encodeDigest("h1", ds)[:20],
		"digest trailing":        append(encodeDigest("h1", ds), 0),
		"want without owners":    encodeWant("h2", nil),
		"want without sender":    encodeWant("", []string{"h1"}),
		"want of empty owner":    encodeWant("h2", []string{""}),
		"want truncated":         encodeWant("h2", []string{"h1"})[:5],
	} {
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
