package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeUpstream stands in for the wire: it answers packed queries with what
// its answer function returns and records what it saw.
type fakeUpstream struct {
	mu     sync.Mutex
	seen   []seenQuery
	answer func(network string, server netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error)
}

type seenQuery struct {
	network string
	server  netip.AddrPort
	msg     *mdns.Msg
}

func (f *fakeUpstream) exchange(ctx context.Context, network string, server netip.AddrPort, raw []byte) ([]byte, error) {
	q := new(mdns.Msg)
	if err := q.Unpack(raw); err != nil {
		return nil, fmt.Errorf("fake upstream got a bad query: %w", err)
	}
	f.mu.Lock()
	f.seen = append(f.seen, seenQuery{network, server, q})
	f.mu.Unlock()
	r, err := f.answer(network, server, q)
	if err != nil {
		return nil, err
	}
	return r.Pack()
}

func (f *fakeUpstream) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.seen {
		out = append(out, s.msg.Question[0].Name)
	}
	return out
}

// answerA answers every A query with 198.51.100.7.
func answerA(_ string, _ netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
	r := new(mdns.Msg)
	r.SetReply(q)
	if q.Question[0].Qtype == mdns.TypeA {
		rr, _ := mdns.NewRR(q.Question[0].Name + " 60 IN A 198.51.100.7")
		r.Answer = append(r.Answer, rr)
	}
	if o := q.IsEdns0(); o != nil {
		r.SetEdns0(1232, false)
	}
	return r, nil
}

var (
	up1 = netip.MustParseAddrPort("198.18.200.1:53")
	up2 = netip.MustParseAddrPort("198.18.200.2:53")
)

func testServer(t testing.TB, f *fakeUpstream) *Server {
	t.Helper()
	s, err := New(Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		HostUpstreams:  []netip.AddrPort{up1},
		ForwardTimeout: 300 * time.Millisecond,
		TryTimeout:     100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f != nil {
		s.exchange = f.exchange
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testView() View {
	return View{
		Records: map[string][]netip.Addr{
			"web2":     {netip.MustParseAddr("172.26.5.11")},
			"www.":     {netip.MustParseAddr("172.26.5.12"), netip.MustParseAddr("172.26.5.11"), netip.MustParseAddr("172.26.5.13")},
			"V6only":   {netip.MustParseAddr("fd00::5")},
			"dual":     {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
			"web2.web": {netip.MustParseAddr("172.26.5.11")},
		},
		PTR: map[netip.Addr][]string{
			netip.MustParseAddr("172.26.5.11"): {"web2.web"},
			netip.MustParseAddr("fd00::5"):     {"v6only.mesh."},
		},
		Hidden:       []string{"secret", "web2"}, // web2 is a record too: records win
		ReverseZones: []netip.Prefix{netip.MustParsePrefix("172.26.0.0/16"), netip.MustParsePrefix("fd00::/64")},
	}
}

type qopt func(*mdns.Msg)

func withEDNS(size uint16) qopt { return func(m *mdns.Msg) { m.SetEdns0(size, false) } }

func pack(t testing.TB, name string, qtype uint16, opts ...qopt) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	for _, o := range opts {
		o(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unpack(t testing.TB, b []byte) *mdns.Msg {
	t.Helper()
	if b == nil {
		t.Fatal("no response")
	}
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	return m
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		case *mdns.PTR:
			out = append(out, r.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func TestLocalAnswers(t *testing.T) {
	f := &fakeUpstream{answer: answerA}
	s := testServer(t, f)
	cv := compileView(testView())
	for _, tc := range []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		want    []string // sorted
		out     outcome
		forward bool
	}{
		{"name", "web2.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.26.5.11"}, outLocal, false},
		{"case-insensitive", "WeB2.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.26.5.11"}, outLocal, false},
		{"name.network", "web2.web.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.26.5.11"}, outLocal, false},
		{"alias has every address", "www.", mdns.TypeA, mdns.RcodeSuccess, []string{"172.26.5.11", "172.26.5.12", "172.26.5.13"}, outLocal, false},
		{"AAAA of v4-only is NODATA", "web2.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, outLocal, false},
		{"MX of ours is NODATA", "web2.", mdns.TypeMX, mdns.RcodeSuccess, nil, outLocal, false},
		{"AAAA", "v6only.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00::5"}, outLocal, false},
		{"A of v6-only is NODATA", "v6only.", mdns.TypeA, mdns.RcodeSuccess, nil, outLocal, false},
		{"ANY gives both families", "dual.", mdns.TypeANY, mdns.RcodeSuccess, []string{"10.0.0.1", "fd00::1"}, outLocal, false},
		{"hidden is NXDOMAIN", "secret.", mdns.TypeA, mdns.RcodeNameError, nil, outNXDomain, false},
		{"hidden AAAA is NXDOMAIN", "SECRET.", mdns.TypeAAAA, mdns.RcodeNameError, nil, outNXDomain, false},
		{"PTR v4", "11.5.26.172.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"web2.web."}, outLocal, false},
		{"PTR v6", "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"v6only.mesh."}, outLocal, false},
		{"unknown address in our subnet", "99.5.26.172.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil, outNXDomain, false},
		{"foreign PTR forwarded", "1.0.0.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, nil, outForwarded, true},
		{"external forwarded", "example.org.", mdns.TypeA, mdns.RcodeSuccess, []string{"198.51.100.7"}, outForwarded, true},
		{"search-qualified forms are not ours", "web2.example.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"198.51.100.7"}, outForwarded, true},
		{"subdomain of ours forwarded", "x.web2.", mdns.TypeA, mdns.RcodeSuccess, []string{"198.51.100.7"}, outForwarded, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.names())
			b, out := s.handle(context.Background(), cv, pack(t, tc.qname, tc.qtype), false)
			m := unpack(t, b)
			if m.Id != 0x1234 || !m.Response {
				t.Errorf("id %#x response %v, want 0x1234 true", m.Id, m.Response)
			}
			if m.Rcode != tc.rcode || out != tc.out {
				t.Errorf("rcode %s outcome %d, want %s %d", mdns.RcodeToString[m.Rcode], out, mdns.RcodeToString[tc.rcode], tc.out)
			}
			got := answers(m)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("answers %v, want %v", got, tc.want)
			}
			if len(m.Question) != 1 || m.Question[0].Name != tc.qname {
				t.Errorf("question %v, want %q echoed as asked", m.Question, tc.qname)
			}
			forwarded := len(f.names()) > before
			if forwarded != tc.forward {
				t.Errorf("forwarded %v, want %v (upstream saw %v)", forwarded, tc.forward, f.names())
			}
			if !tc.forward {
				if !m.Authoritative {
					t.Error("local answer without AA")
				}
				for _, rr := range m.Answer {
					if rr.Header().Ttl != 0 {
						t.Errorf("TTL %d, want 0", rr.Header().Ttl)
					}
				}
			}
		})
	}
}

func TestRotation(t *testing.T) {
	s := testServer(t, nil)
	cv := compileView(testView())
	firsts := map[string]bool{}
	for range 6 {
		b, _ := s.handle(context.Background(), cv, pack(t, "www.", mdns.TypeA), false)
		got := answers(unpack(t, b))
		if len(got) != 3 {
			t.Fatalf("answers %v, want 3", got)
		}
		firsts[got[0]] = true
	}
	if len(firsts) != 3 {
		t.Errorf("first address over 6 queries took %d values, want all 3 (rotation)", len(firsts))
	}
}

func TestTTLOption(t *testing.T) {
	s, err := New(Options{TTL: 1, HostUpstreams: []netip.AddrPort{up1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, _ := s.handle(context.Background(), compileView(testView()), pack(t, "web2.", mdns.TypeA), false)
	if m := unpack(t, b); len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 1 {
		t.Fatalf("answer %v, want one record with TTL 1", m.Answer)
	}
}

func TestViewSwap(t *testing.T) {
	f := &fakeUpstream{answer: answerA}
	s := testServer(t, f)
	l := &listener{}
	l.view.Store(compileView(testView()))
	ask := func() *mdns.Msg {
		b, _ := s.handle(context.Background(), l.view.Load(), pack(t, "web2.", mdns.TypeA), false)
		return unpack(t, b)
	}
	if m := ask(); len(m.Answer) != 1 {
		t.Fatalf("before: %v", m)
	}
	v := testView()
	delete(v.Records, "web2")
	v.Hidden = []string{"web2"}
	l.view.Store(compileView(v))
	if m := ask(); m.Rcode != mdns.RcodeNameError || len(f.names()) != 0 {
		t.Fatalf("after removal: rcode %s, upstream saw %v; want NXDOMAIN, nothing forwarded", mdns.RcodeToString[m.Rcode], f.names())
	}
}

func TestBadInput(t *testing.T) {
	s := testServer(t, &fakeUpstream{answer: answerA})
	cv := compileView(testView())
	good := pack(t, "web2.", mdns.TypeA)
	hdr := func(b []byte, flags, qd, an uint16) []byte {
		b = slices.Clone(b)
		binary.BigEndian.PutUint16(b[2:], flags)
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		return b
	}
	twoOpt := func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.SetEdns0(1232, false)
		m.Extra = append(m.Extra, m.Extra[0])
	}
	ednsV1 := func(m *mdns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		tcp   bool
		rcode int // -1: dropped
	}{
		{"empty", nil, false, -1},
		{"short", good[:11], false, -1},
		{"a response", hdr(good, 1<<15|1<<8, 1, 0), false, -1},
		{"header only", good[:12], false, mdns.RcodeFormatError},
		{"truncated question", good[:len(good)-2], false, mdns.RcodeFormatError},
		{"notify opcode", hdr(good, mdns.OpcodeNotify<<11, 1, 0), false, mdns.RcodeNotImplemented},
		{"update opcode", hdr(good, mdns.OpcodeUpdate<<11, 1, 0), true, mdns.RcodeNotImplemented},
		{"two questions", hdr(good, 1<<8, 2, 0), false, mdns.RcodeFormatError},
		{"no question", hdr(good, 1<<8, 0, 0), false, mdns.RcodeFormatError},
		{"answer in query", hdr(good, 1<<8, 1, 1), false, mdns.RcodeFormatError},
		{"oversize", append(slices.Clone(good), make([]byte, 2000)...), false, mdns.RcodeFormatError},
		{"CHAOS class", func() []byte {
			m := new(mdns.Msg)
			m.SetQuestion("version.bind.", mdns.TypeTXT)
			m.Question[0].Qclass = mdns.ClassCHAOS
			b, _ := m.Pack()
			return b
		}(), false, mdns.RcodeRefused},
		{"AXFR", pack(t, "web.", mdns.TypeAXFR), true, mdns.RcodeRefused},
		{"control bytes in name", pack(t, "a\\000b.example.", mdns.TypeA), false, mdns.RcodeRefused},
		{"space in name", pack(t, "a\\ b.", mdns.TypeA), false, mdns.RcodeRefused},
		{"two OPT records", pack(t, "web2.", mdns.TypeA, twoOpt), false, mdns.RcodeFormatError},
		{"EDNS version 1", pack(t, "web2.", mdns.TypeA, ednsV1), false, mdns.RcodeBadVers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, out := s.handle(context.Background(), cv, tc.in, tc.tcp)
			if tc.rcode < 0 {
				if b != nil || out != outDropped {
					t.Fatalf("got %d bytes, outcome %d; want dropped", len(b), out)
				}
				return
			}
			m := unpack(t, b)
			if m.Rcode != tc.rcode || out != outRejected {
				t.Fatalf("rcode %s outcome %d, want %s rejected", mdns.RcodeToString[m.Rcode], out, mdns.RcodeToString[tc.rcode])
			}
			if m.Id != binary.BigEndian.Uint16(tc.in) || !m.Response {
				t.Fatalf("id %#x response %v: not an answer to the query", m.Id, m.Response)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	s := testServer(t, nil)
	v := View{Records: map[string][]netip.Addr{}}
	for i := range 200 {
		v.Records["many"] = append(v.Records["many"], netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i%250 + 1)}))
	}
	cv := compileView(v)
	for _, tc := range []struct {
		name  string
		opts  []qopt
		tcp   bool
		limit int
		tc    bool
		count int // answers; -1: some but not all
	}{
		{"udp without EDNS", nil, false, 512, true, -1},
		{"udp EDNS 1232", []qopt{withEDNS(1232)}, false, 1232, true, -1},
		{"udp EDNS 4096 fits", []qopt{withEDNS(4096)}, false, 4096, false, 200},
		{"udp EDNS 65000 capped", []qopt{withEDNS(65000)}, false, maxUDPResponse, false, 200},
		{"tcp", nil, true, mdns.MaxMsgSize, false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := s.handle(context.Background(), cv, pack(t, "many.", mdns.TypeA, tc.opts...), tc.tcp)
			if len(b) > tc.limit {
				t.Fatalf("response of %d bytes, client takes %d", len(b), tc.limit)
			}
			m := unpack(t, b)
			if m.Truncated != tc.tc {
				t.Fatalf("TC %v, want %v", m.Truncated, tc.tc)
			}
			n := len(m.Answer)
			if tc.count >= 0 && n != tc.count || tc.count < 0 && (n == 0 || n >= 200) {
				t.Fatalf("%d answers, want %d", n, tc.count)
			}
			if len(tc.opts) > 0 && m.IsEdns0() == nil {
				t.Fatal("EDNS query answered without OPT")
			}
		})
	}
}

func TestForwarding(t *testing.T) {
	cookie := &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0123456789abcdef"}
	withCookie := func(m *mdns.Msg) {
		m.SetEdns0(1400, true)
		o := m.IsEdns0()
		o.Option = append(o.Option, cookie)
	}
	big := func(network string, _ netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
		r := new(mdns.Msg)
		r.SetReply(q)
		if network == "udp" {
			r.Truncated = true
			return r, nil
		}
		for i := range 100 {
			r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: []byte{10, 9, 0, byte(i)}})
		}
		return r, nil
	}
	rcodeFrom := func(bad netip.AddrPort, rcode int) func(string, netip.AddrPort, *mdns.Msg) (*mdns.Msg, error) {
		return func(n string, s netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
			if s == bad {
				r := new(mdns.Msg)
				r.SetRcode(q, rcode)
				return r, nil
			}
			return answerA(n, s, q)
		}
	}
	refused := errors.New("connection refused")
	for _, tc := range []struct {
		name      string
		answer    func(string, netip.AddrPort, *mdns.Msg) (*mdns.Msg, error)
		upstreams []netip.AddrPort // view's; nil: host's (up1)
		opts      []qopt
		rcode     int
		want      []string
		seen      []string // network/server of every exchange
		check     func(t *testing.T, f *fakeUpstream, m *mdns.Msg)
	}{
		{name: "host upstream", answer: answerA, rcode: 0, want: []string{"198.51.100.7"}, seen: []string{"udp/" + up1.String()}},
		{name: "view upstreams override", answer: answerA, upstreams: []netip.AddrPort{up2}, want: []string{"198.51.100.7"}, seen: []string{"udp/" + up2.String()}},
		{name: "EDNS passthrough", answer: answerA, opts: []qopt{withCookie}, want: []string{"198.51.100.7"}, seen: []string{"udp/" + up1.String()},
			check: func(t *testing.T, f *fakeUpstream, m *mdns.Msg) {
				o := f.seen[0].msg.IsEdns0()
				if o == nil || o.UDPSize() != 1400 || !o.Do() || len(o.Option) != 1 || o.Option[0].String() != cookie.String() {
					t.Errorf("upstream saw OPT %v, want the client's (1400, DO, cookie)", o)
				}
			}},
		{name: "TCP on truncation", answer: big, opts: []qopt{withEDNS(4096)}, want: nil, seen: []string{"udp/" + up1.String(), "tcp/" + up1.String()},
			check: func(t *testing.T, _ *fakeUpstream, m *mdns.Msg) {
				if len(m.Answer) != 100 || m.Truncated {
					t.Errorf("%d answers TC %v, want all 100 from the TCP retry", len(m.Answer), m.Truncated)
				}
			}},
		{name: "TCP answer truncated for a 512-byte client", answer: big, want: nil, seen: []string{"udp/" + up1.String(), "tcp/" + up1.String()},
			check: func(t *testing.T, _ *fakeUpstream, m *mdns.Msg) {
				if !m.Truncated || len(m.Answer) == 0 || len(m.Answer) == 100 {
					t.Errorf("%d answers TC %v, want a truncated partial answer", len(m.Answer), m.Truncated)
				}
			}},
		{name: "truncated answer relayed when TCP fails", answer: func(n string, s netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
			if n == "tcp" {
				return nil, refused
			}
			r, _ := answerA(n, s, q)
			r.Truncated = true
			return r, nil
		}, want: []string{"198.51.100.7"}, seen: []string{"udp/" + up1.String(), "tcp/" + up1.String()},
			check: func(t *testing.T, _ *fakeUpstream, m *mdns.Msg) {
				if !m.Truncated {
					t.Error("TC bit lost")
				}
			}},
		{name: "SERVFAIL upstream skipped", answer: rcodeFrom(up1, mdns.RcodeServerFailure), upstreams: []netip.AddrPort{up1, up2},
			want: []string{"198.51.100.7"}, seen: []string{"udp/" + up1.String(), "udp/" + up2.String()}},
		{name: "NXDOMAIN relayed", answer: rcodeFrom(up1, mdns.RcodeNameError), rcode: mdns.RcodeNameError, seen: []string{"udp/" + up1.String()}},
		{name: "all upstreams down", answer: func(string, netip.AddrPort, *mdns.Msg) (*mdns.Msg, error) { return nil, refused },
			upstreams: []netip.AddrPort{up1, up2}, rcode: mdns.RcodeServerFailure, seen: []string{"udp/" + up1.String(), "udp/" + up2.String()}},
		{name: "wrong question ignored", answer: func(n string, s netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
			r, _ := answerA(n, s, q)
			r.Question[0].Name = "evil.example."
			return r, nil
		}, rcode: mdns.RcodeServerFailure, seen: []string{"udp/" + up1.String()}},
		{name: "wrong ID ignored", answer: func(n string, s netip.AddrPort, q *mdns.Msg) (*mdns.Msg, error) {
			r, _ := answerA(n, s, q)
			r.Id++
			return r, nil
		}, rcode: mdns.RcodeServerFailure, seen: []string{"udp/" + up1.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeUpstream{answer: tc.answer}
			s := testServer(t, f)
			v := testView()
			v.Upstreams = tc.upstreams
			b, _ := s.handle(context.Background(), compileView(v), pack(t, "example.org.", mdns.TypeA, tc.opts...), false)
			m := unpack(t, b)
			if m.Id != 0x1234 {
				t.Errorf("id %#x, want the client's 0x1234", m.Id)
			}
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if tc.want != nil {
				if got := answers(m); !slices.Equal(got, tc.want) {
					t.Errorf("answers %v, want %v", got, tc.want)
				}
			}
			var seen []string
			for _, q := range f.seen {
				seen = append(seen, q.network+"/"+q.server.String())
			}
			if !slices.Equal(seen, tc.seen) {
				t.Errorf("exchanges %v, want %v", seen, tc.seen)
			}
			if tc.check != nil {
				tc.check(t, f, m)
			}
		})
	}
}

func TestForwardBudget(t *testing.T) {
	hang := &fakeUpstream{answer: nil}
	s := testServer(t, hang)
	var n sync.WaitGroup
	s.exchange = func(ctx context.Context, network string, server netip.AddrPort, q []byte) ([]byte, error) {
		n.Add(1)
		defer n.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := time.Now()
	b, out := s.handle(context.Background(), compileView(testView()), pack(t, "example.org.", mdns.TypeA), false)
	took := time.Since(start)
	if m := unpack(t, b); m.Rcode != mdns.RcodeServerFailure || out != outFailed {
		t.Fatalf("rcode %s outcome %d, want SERVFAIL failed", mdns.RcodeToString[m.Rcode], out)
	}
	// One upstream, TryTimeout 100ms, budget 300ms: two tries, then SERVFAIL.
	if took > s.opts.ForwardTimeout+time.Second {
		t.Fatalf("SERVFAIL after %v, budget %v", took, s.opts.ForwardTimeout)
	}
	n.Wait()
}

func TestNoUpstreams(t *testing.T) {
	s, err := New(Options{ResolvConf: t.TempDir() + "/missing"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, out := s.handle(context.Background(), compileView(View{}), pack(t, "example.org.", mdns.TypeA), false)
	if m := unpack(t, b); m.Rcode != mdns.RcodeServerFailure || out != outFailed {
		t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
}

func TestParseReverse(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" : not a full reverse name
	}{
		{"11.5.26.172.in-addr.arpa.", "172.26.5.11"},
		{"0.0.0.0.in-addr.arpa.", "0.0.0.0"},
		{"5.26.172.in-addr.arpa.", ""},
		{"256.5.26.172.in-addr.arpa.", ""},
		{"011.5.26.172.in-addr.arpa.", ""},
		{"x.5.26.172.in-addr.arpa.", ""},
		{"1.2.3.4.5.in-addr.arpa.", ""},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", "4321:0:1:2:3:4:567:89ab"},
		{"b.a.ip6.arpa.", ""},
		{"web2.", ""},
	} {
		a, ok := parseReverse(tc.name)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("parseReverse(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	in := `# comment
search example.test
nameserver 10.255.255.53
nameserver fe80::1%eth0
nameserver bogus
options ndots:2
nameserver 192.0.2.1
nameserver 192.0.2.2
`
	var got []string
	for _, a := range parseResolvConf(strings.NewReader(in)) {
		got = append(got, a.String())
	}
	want := []string{"10.255.255.53:53", "[fe80::1%eth0]:53", "192.0.2.1:53"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestHostUpstreamsFollowResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{ResolvConf: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.hostUpstreams(); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}) {
		t.Fatalf("host upstreams %v", got)
	}
	if err := os.WriteFile(path, []byte("nameserver 192.0.2.54\nnameserver 192.0.2.55\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.hostMu.Lock()
	s.hostCheck = time.Time{} // as if the recheck interval had passed
	s.hostMu.Unlock()
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.54:53"), netip.MustParseAddrPort("192.0.2.55:53")}
	if got := s.hostUpstreams(); !slices.Equal(got, want) {
		t.Fatalf("after the file changed: %v, want %v", got, want)
	}
}
