package dns

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestComputeView(t *testing.T) {
	in := ViewInput{
		Networks:  []string{"web", "mesh"},
		Hostname:  "web1.example.test",
		SelfAddrs: addrs("172.26.5.10", "10.200.0.10"),
		ExtraHosts: []HostEntry{
			{"db.example.test", netip.MustParseAddr("198.18.9.9")},
			{"web3", netip.MustParseAddr("192.0.2.3")}, // overrides the container
		},
		Endpoints: []Endpoint{
			{Container: "web1", Network: "web", Addrs: addrs("172.26.5.10")},
			{Container: "web1", Network: "mesh", Addrs: addrs("10.200.0.10")},
			{Container: "web2", Network: "mesh", Aliases: []string{"www"}, Addrs: addrs("10.200.1.2")},
			{Container: "web4", Network: "mesh", Aliases: []string{"www"}, Addrs: addrs("10.200.2.4")},
			{Container: "web3", Network: "mesh", Addrs: addrs("10.200.1.3")},
			{Container: "db", Network: "back", Aliases: []string{"pg"}, Addrs: addrs("172.30.0.2")},
			// On "back" (hidden) and on "web" (shared): visible.
			{Container: "both", Network: "back", Addrs: addrs("172.30.0.3")},
			{Container: "both", Network: "web", Addrs: addrs("172.26.5.3")},
		},
		Gone:      []string{"old", "web2"},
		Subnets:   []netip.Prefix{netip.MustParsePrefix("172.26.0.0/16")},
		Search:    []string{"example.test"},
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.5.53:53")},
	}
	v := ComputeView(in)
	cv := compileView(v)
	look := func(name string) []string {
		e, ok := cv.names[canonName(name)]
		if !ok {
			return []string{"<forward>"}
		}
		if e == nil {
			return []string{"<nxdomain>"}
		}
		var out []string
		for _, a := range append(e.v4, e.v6...) {
			out = append(out, a.String())
		}
		return out
	}
	for name, want := range map[string][]string{
		"web2":              {"10.200.1.2"},
		"web2.mesh":         {"10.200.1.2"},
		"www":               {"10.200.1.2", "10.200.2.4"},
		"www.mesh":          {"10.200.1.2", "10.200.2.4"},
		"web1":              {"10.200.0.10", "172.26.5.10"},
		"web1.example.test": {"10.200.0.10", "172.26.5.10"},
		"db.example.test":   {"198.18.9.9"},
		"web3":              {"192.0.2.3"},
		"web3.mesh":         {"10.200.1.3"},
		"db":                {"<nxdomain>"},
		"pg":                {"<nxdomain>"},
		"db.back":           {"<nxdomain>"},
		"old":               {"<nxdomain>"},
		"both":              {"172.26.5.3"},
		"both.back":         {"<nxdomain>"},
		"both.web":          {"172.26.5.3"},
		"example.org":       {"<forward>"},
	} {
		if got := look(name); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	for a, want := range map[string][]string{
		"10.200.1.2": {"web2.mesh."},
		"172.26.5.3": {"both.web."},
		"198.18.9.9": {"db.example.test."},
		"172.30.0.2": nil,
	} {
		if got := cv.ptr[netip.MustParseAddr(a)]; !slices.Equal(got, want) {
			t.Errorf("PTR %s: %v, want %v", a, got, want)
		}
	}
	if !reflect.DeepEqual(cv.upstreams, in.Upstreams) || !slices.Equal(v.Search, in.Search) {
		t.Errorf("upstreams %v search %v not copied", cv.upstreams, v.Search)
	}
	// The input is not aliased: changing it leaves the view alone.
	in.Upstreams[0] = netip.MustParseAddrPort("192.0.2.1:53")
	if v.Upstreams[0] == in.Upstreams[0] {
		t.Error("view shares the input's Upstreams slice")
	}
}

func TestCompileViewNormalises(t *testing.T) {
	cv := compileView(View{
		Records: map[string][]netip.Addr{
			"Web2":  addrs("172.26.5.11", "::ffff:172.26.5.12"),
			"web2.": addrs("172.26.5.11"),
			".":     addrs("192.0.2.1"), // never answer for the root
			"":      addrs("192.0.2.1"),
		},
		Hidden: []string{"", "GONE."},
	})
	if e := cv.names["web2."]; e == nil || !slices.Equal(e.v4, addrs("172.26.5.11", "172.26.5.12")) || len(e.v6) != 0 {
		t.Fatalf("web2: %+v, want both v4 addresses merged, unmapped, once each", e)
	}
	if _, ok := cv.names["."]; ok {
		t.Fatal("root name compiled")
	}
	if e, ok := cv.names["gone."]; !ok || e != nil {
		t.Fatal("hidden name not compiled lower-case")
	}
}

func TestResolvConf(t *testing.T) {
	for _, tc := range []struct {
		search, opts []string
		want         string
	}{
		{nil, nil, "nameserver 127.0.0.11\noptions ndots:0\n"},
		{[]string{"example.test", "corp"}, []string{"timeout:1"}, "nameserver 127.0.0.11\nsearch example.test corp\noptions ndots:0 timeout:1\n"},
		{nil, []string{"ndots:2"}, "nameserver 127.0.0.11\noptions ndots:2\n"},
	} {
		got := string(ResolvConf(tc.search, tc.opts))
		_, body, _ := strings.Cut(got, "\n") // skip the comment
		if body != tc.want {
			t.Errorf("ResolvConf(%v, %v) =\n%s\nwant\n%s", tc.search, tc.opts, body, tc.want)
		}
	}
}
