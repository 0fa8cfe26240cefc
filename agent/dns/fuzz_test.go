package dns

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzHandler feeds the query handler random bytes as a query, plus random
// bytes as the upstream's answer (its ID patched to match, so the
// validation and relaying paths run too), over UDP or TCP. Whatever comes
// in, the handler must not panic, and an answer must be a response to the
// query's ID that fits what the client can take.
//
//	go test ./agent/dns -run '^$' -fuzz FuzzHandler -fuzztime 3m
func FuzzHandler(f *testing.F) {
	seed := func(name string, qtype uint16, edns bool) []byte {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		if edns {
			m.SetEdns0(1232, true)
		}
		b, _ := m.Pack()
		return b
	}
	upstream := func(name string) []byte {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		m.Response = true
		rr, _ := mdns.NewRR(name + " 60 IN A 198.51.100.7")
		m.Answer = append(m.Answer, rr)
		b, _ := m.Pack()
		return b
	}
	for _, s := range []struct {
		q   []byte
		up  []byte
		tcp bool
	}{
		{seed("web2.", mdns.TypeA, false), nil, false},
		{seed("WWW.", mdns.TypeA, true), nil, true},
		{seed("web2.", mdns.TypeAAAA, false), nil, false},
		{seed("secret.", mdns.TypeA, false), nil, false},
		{seed("11.5.26.172.in-addr.arpa.", mdns.TypePTR, false), nil, false},
		{seed("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, false), nil, false},
		{seed("example.org.", mdns.TypeA, false), upstream("example.org."), false},
		{seed("example.org.", mdns.TypeA, true), upstream("example.org."), true},
		{seed("example.org.", mdns.TypeTXT, false), []byte{0, 0, 0x82, 0}, false},
		{[]byte{0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0}, nil, false},
		{[]byte{0xc0, 0x0c}, nil, false},
	} {
		f.Add(s.q, s.up, s.tcp)
	}

	s, err := New(Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		HostUpstreams:  []netip.AddrPort{up1, up2},
		ForwardTimeout: 50 * time.Millisecond,
		TryTimeout:     20 * time.Millisecond,
	})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	v := testView()
	for i := range 60 {
		v.Records["www"] = append(v.Records["www"], netip.AddrFrom4([4]byte{10, 7, 0, byte(i + 1)}))
	}
	cv := compileView(v)

	f.Fuzz(func(t *testing.T, q, up []byte, tcp bool) {
		s.exchange = func(ctx context.Context, network string, server netip.AddrPort, query []byte) ([]byte, error) {
			r := append([]byte(nil), up...)
			if len(r) >= 2 {
				copy(r, query[:2])
			}
			return r, nil
		}
		resp, _ := s.handle(context.Background(), cv, q, tcp)
		if resp == nil {
			return
		}
		limit := mdns.MaxMsgSize
		if !tcp {
			limit = maxUDPResponse
		}
		if len(resp) > limit || len(resp) < headerLen {
			t.Fatalf("response of %d bytes (limit %d)", len(resp), limit)
		}
		if len(q) < 2 || resp[0] != q[0] || resp[1] != q[1] {
			t.Fatalf("response ID %x for query ID %x", resp[:2], q[:min(2, len(q))])
		}
		if binary.BigEndian.Uint16(resp[2:4])&(1<<15) == 0 {
			t.Fatal("response without QR")
		}
		var m mdns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("our response does not unpack: %v", err)
		}
	})
}
