package dns

import (
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestDualStackView: a dual-stack endpoint and an IPv6-only one give A and
// AAAA records for names and aliases (also NAME.NETWORK), PTR records for
// both families, and reverse zones of both families.
func TestDualStackView(t *testing.T) {
	in := ViewInput{
		Networks:  []string{"mesh"},
		Hostname:  "web1",
		SelfAddrs: addrs("10.200.0.10", "fd00:200::10"),
		ExtraHosts: []HostEntry{
			{"legacy6", netip.MustParseAddr("2001:db8::9")},
		},
		Endpoints: []Endpoint{
			{Container: "web1", Network: "mesh", Addrs: addrs("10.200.0.10", "fd00:200::10")},
			{Container: "db", Network: "mesh", Aliases: []string{"pg"}, Addrs: addrs("10.200.1.2", "fd00:200::1:2")},
			{Container: "v6only", Network: "mesh", Addrs: addrs("fd00:200::6")},
			{Container: "other", Network: "back", Addrs: addrs("fd00:300::2")},
		},
		Subnets: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("fd00:200::/64")},
	}
	cv := compileView(ComputeView(in))
	for _, tc := range []struct {
		name   string
		v4, v6 []netip.Addr
		hidden bool
	}{
		{name: "db", v4: addrs("10.200.1.2"), v6: addrs("fd00:200::1:2")},
		{name: "pg.mesh", v4: addrs("10.200.1.2"), v6: addrs("fd00:200::1:2")},
		{name: "v6only", v6: addrs("fd00:200::6")},
		{name: "web1", v4: addrs("10.200.0.10"), v6: addrs("fd00:200::10")},
		{name: "legacy6", v6: addrs("2001:db8::9")},
		{name: "other", hidden: true},
	} {
		e, ok := cv.names[canonName(tc.name)]
		if !ok {
			t.Errorf("%s: not ours", tc.name)
			continue
		}
		if tc.hidden {
			if e != nil {
				t.Errorf("%s: visible, want hidden", tc.name)
			}
			continue
		}
		if e == nil || !slices.Equal(e.v4, tc.v4) || !slices.Equal(e.v6, tc.v6) {
			t.Errorf("%s: %+v, want v4 %v v6 %v", tc.name, e, tc.v4, tc.v6)
		}
	}
	for a, want := range map[string]string{
		"fd00:200::1:2": "db.mesh.",
		"10.200.1.2":    "db.mesh.",
		"fd00:200::6":   "v6only.mesh.",
		"2001:db8::9":   "legacy6.",
	} {
		if got := cv.ptr[netip.MustParseAddr(a)]; !slices.Equal(got, []string{want}) {
			t.Errorf("PTR %s: %v, want %s", a, got, want)
		}
	}
	if !cv.ownZone(netip.MustParseAddr("fd00:200::dead")) || cv.ownZone(netip.MustParseAddr("fd00:201::1")) {
		t.Error("reverse zone fd00:200::/64 wrong")
	}
}

// TestDualStackAnswers: the handler answers AAAA for an alias and PTR in
// ip6.arpa from a computed view, and NODATA (not NXDOMAIN) for AAAA of an
// IPv4-only name.
func TestDualStackAnswers(t *testing.T) {
	v := ComputeView(ViewInput{
		Networks: []string{"mesh"},
		Endpoints: []Endpoint{
			{Container: "db", Network: "mesh", Aliases: []string{"pg"}, Addrs: addrs("10.200.1.2", "fd00:200::1:2")},
			{Container: "v4", Network: "mesh", Addrs: addrs("10.200.1.4")},
		},
		Subnets: []netip.Prefix{netip.MustParsePrefix("fd00:200::/64")},
	})
	cv := compileView(v)
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := mdns.ReverseAddr("fd00:200::1:2")
	gone, _ := mdns.ReverseAddr("fd00:200::99")
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"pg.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00:200::1:2"}},
		{"db.mesh.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00:200::1:2"}},
		{"v4.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{rev, mdns.TypePTR, mdns.RcodeSuccess, []string{"db.mesh."}},
		{gone, mdns.TypePTR, mdns.RcodeNameError, nil},
	} {
		req := new(mdns.Msg)
		req.SetQuestion(tc.name, tc.qtype)
		raw, _ := req.Pack()
		out, _ := s.handle(t.Context(), cv, raw, false)
		var m mdns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("%s: unpack: %v", tc.name, err)
		}
		var got []string
		for _, rr := range m.Answer {
			switch r := rr.(type) {
			case *mdns.AAAA:
				got = append(got, r.AAAA.String())
			case *mdns.PTR:
				got = append(got, r.Ptr)
			}
		}
		if m.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: rcode %d %v, want %d %v", tc.name, mdns.TypeToString[tc.qtype], m.Rcode, got, tc.rcode, tc.want)
		}
	}
}
