package dns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

const (
	headerLen = 12
	// maxQueryLen bounds a query. A real one is a header, one name of at
	// most 255 bytes and an OPT record (padding included, RFC 8467 pads
	// queries to 128 bytes); anything much longer is not a query we serve.
	maxQueryLen = 1024
	// maxUDPResponse caps what we send over UDP whatever the client
	// advertises; larger answers are truncated and the client retries
	// over TCP.
	maxUDPResponse = 4096
	// ourUDPSize is the EDNS buffer size we advertise (the DNS flag day
	// 2020 value, safe from fragmentation).
	ourUDPSize = 1232
)

// outcome classifies what the handler did with one query, for the counters.
type outcome int

const (
	outLocal     outcome = iota // answered from the view (records or NODATA)
	outNXDomain                 // NXDOMAIN from the view, not forwarded
	outForwarded                // an upstream's answer was relayed
	outFailed                   // SERVFAIL: no upstream answered in time
	outRejected                 // FORMERR, NOTIMP, REFUSED or BADVERS from us
	outDropped                  // no answer at all
)

// handle answers one raw query from a client that reached a listener over
// UDP (tcp false) or TCP. It returns the response to send, or nil to send
// nothing. It never panics on any input and never returns a response larger
// than the client can take.
func (s *Server) handle(ctx context.Context, cv *compiledView, raw []byte, tcp bool) ([]byte, outcome) {
	if len(raw) < headerLen {
		return nil, outDropped // not even an ID to answer to
	}
	flags := binary.BigEndian.Uint16(raw[2:4])
	if flags&(1<<15) != 0 {
		return nil, outDropped // a response: answering it could start a loop
	}
	if len(raw) > maxQueryLen {
		return headerReply(raw, mdns.RcodeFormatError), outRejected
	}
	if opcode := int(flags>>11) & 0xF; opcode != mdns.OpcodeQuery {
		return headerReply(raw, mdns.RcodeNotImplemented), outRejected
	}
	qd, an, ns := binary.BigEndian.Uint16(raw[4:6]), binary.BigEndian.Uint16(raw[6:8]), binary.BigEndian.Uint16(raw[8:10])
	if qd != 1 || an != 0 || ns != 0 {
		return headerReply(raw, mdns.RcodeFormatError), outRejected
	}
	req := new(mdns.Msg)
	// miekg/dns accepts a question cut short (its type or class missing);
	// we do not.
	if end, ok := questionEnd(raw); !ok || end > len(raw) {
		return headerReply(raw, mdns.RcodeFormatError), outRejected
	}
	if err := req.Unpack(raw); err != nil || len(req.Question) != 1 {
		return headerReply(raw, mdns.RcodeFormatError), outRejected
	}
	var opt *mdns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			if opt != nil || o.Hdr.Name != "." {
				return headerReply(raw, mdns.RcodeFormatError), outRejected // RFC 6891 6.1.1
			}
			opt = o
		}
	}
	limit := mdns.MaxMsgSize
	if !tcp {
		limit = mdns.MinMsgSize
		if opt != nil {
			limit = min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPResponse)
		}
	}
	if opt != nil && opt.Version() != 0 {
		return s.pack(s.reply(req, opt, mdns.RcodeBadVers), limit), outRejected
	}
	q := req.Question[0]
	if (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) || refusedType(q.Qtype) || absurdName(q.Name) {
		return s.pack(s.reply(req, opt, mdns.RcodeRefused), limit), outRejected
	}

	if m, out, ok := s.answerLocal(cv, req, opt); ok {
		return s.pack(m, limit), out
	}

	resp := s.forward(ctx, cv, req)
	if resp == nil {
		return s.pack(s.reply(req, opt, mdns.RcodeServerFailure), limit), outFailed
	}
	out := outForwarded
	if resp.Rcode == mdns.RcodeServerFailure {
		out = outFailed
	}
	resp.Id = req.Id
	resp.Question = req.Question
	return s.pack(resp, limit), out
}

// answerLocal answers from the view when the name is ours. ok is false when
// the query must be forwarded.
func (s *Server) answerLocal(cv *compiledView, req *mdns.Msg, opt *mdns.OPT) (m *mdns.Msg, out outcome, ok bool) {
	q := req.Question[0]
	name := canonName(q.Name)
	if e, known := cv.lookup(name); known {
		if e == nil {
			m = s.reply(req, opt, mdns.RcodeNameError)
			m.Authoritative = true
			return m, outNXDomain, true
		}
		m = s.reply(req, opt, mdns.RcodeSuccess)
		m.Authoritative = true
		if q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY {
			for _, a := range s.rotate(e.v4) {
				m.Answer = append(m.Answer, &mdns.A{Hdr: s.hdr(q.Name, mdns.TypeA), A: a.AsSlice()})
			}
		}
		if q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY {
			for _, a := range s.rotate(e.v6) {
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: s.hdr(q.Name, mdns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
		return m, outLocal, true // an empty answer is NODATA
	}
	a, isRev := parseReverse(name)
	if !isRev {
		return nil, 0, false
	}
	if targets := cv.ptrOf(a); len(targets) > 0 {
		m = s.reply(req, opt, mdns.RcodeSuccess)
		m.Authoritative = true
		if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
			for _, t := range targets {
				m.Answer = append(m.Answer, &mdns.PTR{Hdr: s.hdr(q.Name, mdns.TypePTR), Ptr: t})
			}
		}
		return m, outLocal, true
	}
	if cv.ownZone(a) {
		m = s.reply(req, opt, mdns.RcodeNameError)
		m.Authoritative = true
		return m, outNXDomain, true
	}
	return nil, 0, false
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
}

// rotate returns addrs starting at a position that advances on every call,
// so repeated lookups of a shared alias spread over its containers.
func (s *Server) rotate(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	k := int(s.rr.Add(1) % uint32(len(addrs)))
	out := make([]netip.Addr, 0, len(addrs))
	out = append(out, addrs[k:]...)
	return append(out, addrs[:k]...)
}

// reply starts a response to req with rcode; when the query had an OPT
// record the response carries ours, with the DO bit copied (RFC 3225).
func (s *Server) reply(req *mdns.Msg, reqOpt *mdns.OPT, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Rcode = rcode
	m.RecursionAvailable = true
	if reqOpt != nil {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(ourUDPSize)
		o.SetDo(reqOpt.Do())
		m.Extra = append(m.Extra, o)
	}
	return m
}

// pack encodes m to fit limit bytes, dropping records and setting TC when it
// does not fit. When even that fails it falls back to a header with the
// question (TC set) or, if the message cannot be packed at all, SERVFAIL.
func (s *Server) pack(m *mdns.Msg, limit int) []byte {
	m.Truncate(limit)
	m.Compress = true
	b, err := m.Pack()
	if err == nil && len(b) <= limit {
		return b
	}
	short := &mdns.Msg{MsgHdr: m.MsgHdr, Question: m.Question}
	if err != nil {
		short.Rcode = mdns.RcodeServerFailure
	} else {
		short.Truncated = true
	}
	b, err = short.Pack()
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}

// questionEnd returns the offset just past the first question of raw: its
// name (labels up to the root label or a compression pointer), type and
// class. ok is false when the name runs off the end.
func questionEnd(raw []byte) (end int, ok bool) {
	off := headerLen
	for off < len(raw) {
		l := int(raw[off])
		switch {
		case l == 0:
			return off + 1 + 4, true
		case l&0xC0 == 0xC0:
			return off + 2 + 4, true
		}
		off += 1 + l
	}
	return 0, false
}

// headerReply is a bare header answering raw (which has at least a header)
// with rcode: same ID and opcode, RD copied, no sections.
func headerReply(raw []byte, rcode int) []byte {
	b := make([]byte, headerLen)
	copy(b[0:2], raw[0:2])
	in := binary.BigEndian.Uint16(raw[2:4])
	out := uint16(1<<15) | in&(0xF<<11) | in&(1<<8) | uint16(rcode&0xF)
	binary.BigEndian.PutUint16(b[2:4], out)
	return b
}

// refusedType reports query types we do not serve or forward: zone
// transfers, obsolete mail types, and the meta types that are not queries.
func refusedType(t uint16) bool {
	switch t {
	case 0, mdns.TypeOPT, mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB, mdns.TypeTSIG, mdns.TypeTKEY:
		return true
	}
	return false
}

// absurdName reports names no host or service name contains: control
// characters, spaces or bytes outside printable ASCII. miekg/dns writes
// those as \DDD (or "\ " for a space) in the presentation form.
func absurdName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] != '\\' || i+1 >= len(name) {
			continue
		}
		c := name[i+1]
		if c == ' ' || c >= '0' && c <= '9' {
			return true
		}
		i++
	}
	return false
}

// parseReverse turns a canonical in-addr.arpa or ip6.arpa name of a full
// address into the address.
func parseReverse(name string) (netip.Addr, bool) {
	if s, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		labels := strings.Split(s, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			if l == "" || len(l) > 3 || len(l) > 1 && l[0] == '0' {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if s, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		labels := strings.Split(s, ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			if i%2 == 0 {
				b[15-i/2] |= byte(n)
			} else {
				b[15-i/2] |= byte(n) << 4
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
