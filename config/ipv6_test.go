package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIPv6OnlyNetworkValid(t *testing.T) {
	c, err := Parse("v6.yaml", []byte(`host: {name: h1, address: "2001:db8::1"}
networks:
  - name: v6
    subnet6: fd00:6::/64
containers:
  - name: a
    networks: [v6]
    ip6: {v6: "fd00:6::a"}
    extra_hosts: ["db:2001:db8::9", "db4:[2001:db8::10]"]
  - name: b
    networks: [v6]
    links: ["a:alpha"]
    publish: ["[::]:8080:80", "[2001:db8::1]::80"]
`))
	if err != nil {
		t.Fatal(err)
	}
	n := c.NetworkByName("v6")
	if want := netip.MustParseAddr("fd00:6::1"); n.Gateway6 != want || n.Gateway.IsValid() {
		t.Errorf("gateway6 %s gateway %s, want %s and none", n.Gateway6, n.Gateway, want)
	}
	b := c.ContainerByName("b")
	if len(b.Links) != 1 || b.Links[0] != (LinkSpec{Name: "a", Alias: "alpha"}) {
		t.Errorf("links %+v", b.Links)
	}
	if got := b.Publish[1].String(); got != "[2001:db8::1]::80/tcp" {
		t.Errorf("publish %q", got)
	}
	if got := c.ContainerByName("a").ExtraHosts[1].IP; got != netip.MustParseAddr("2001:db8::10") {
		t.Errorf("extra host %s", got)
	}
}

func TestParseLinkSpec(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"db", "db", ""},
		{"db:database", "db:database", ""},
		{"db:", "", "invalid alias"},
		{":x", "", "invalid container name"},
		{"a b", "", "invalid container name"},
	} {
		l, err := ParseLinkSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || l.String() != tc.want {
			t.Errorf("%q: %v %v, want %q", tc.in, l, err, tc.want)
		}
	}
}

func TestValidateContainerLinksRuntime(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`host: {name: h1, address: 198.18.0.1}
networks:
  - {name: one, subnet: 10.1.0.0/24}
  - {name: mesh, driver: overlay, subnet: 10.2.0.0/24, subnet6: "fd00:2::/64"}
containers:
  - {name: a, networks: [one]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ct   Container
		want string
	}{
		{Container{Name: "x", Networks: []string{"one"}, Links: []LinkSpec{{Name: "a"}}}, ""},
		{Container{Name: "x", Networks: []string{"mesh"}, Links: []LinkSpec{{Name: "a"}}}, "shares no network"},
		{Container{Name: "x", Networks: []string{"mesh"}, Links: []LinkSpec{{Name: "remote"}}}, ""},
		{Container{Name: "x", Networks: []string{"one"}, Links: []LinkSpec{{Name: "remote"}}}, "does not exist"},
		{Container{Name: "x", Networks: []string{"mesh"}, IP6: map[string]netip.Addr{"mesh": netip.MustParseAddr("fd00:3::1")}}, "outside subnet6"},
	} {
		err := ValidateContainer(cfg, &tc.ct)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.ct, err, tc.want)
		}
	}
}

// TestClusterIPv6: an overlay's subnet6 must agree across hosts, and the
// hosts' ip_range6 blocks and static ip6 addresses must not collide.
func TestClusterIPv6(t *testing.T) {
	cfg := func(host, addr, subnet6, range6, ip6 string) *Config {
		c, err := Parse(host+".yaml", []byte(`host: {name: `+host+`, address: `+addr+`}
networks:
  - {name: mesh, driver: overlay, subnet: 10.2.0.0/16, subnet6: "`+subnet6+`", ip_range6: "`+range6+`"}
containers:
  - {name: c-`+host+`, networks: [mesh], ip6: {mesh: "`+ip6+`"}}
`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ok := ValidateCluster([]*Config{
		cfg("h1", "198.18.0.1", "fd00:2::/64", "fd00:2::1:0/112", "fd00:2::5"),
		cfg("h2", "198.18.0.2", "fd00:2::/64", "fd00:2::2:0/112", "fd00:2::6"),
	})
	if len(ok) != 0 {
		t.Fatalf("valid cluster: %v", ok)
	}
	errs := ValidateCluster([]*Config{
		cfg("h1", "198.18.0.1", "fd00:2::/64", "fd00:2::1:0/112", "fd00:2::5"),
		cfg("h2", "198.18.0.2", "fd00:2::/64", "fd00:2::1:0/120", "fd00:2::5"),
		cfg("h3", "198.18.0.3", "fd00:3::/64", "fd00:3::3:0/112", "fd00:3::7"),
	}).Error()
	for _, w := range []string{
		`networks[0].ip_range6: fd00:2::1:0/120 overlaps ip_range6 fd00:2::1:0/112 of overlay "mesh" on host "h1"`,
		`containers[0].ip6.mesh: fd00:2::5 is also the address of container "c-h1" on host "h1"`,
		`networks[0].subnet6: overlay "mesh" has subnet6 fd00:3::/64 here but fd00:2::/64 on host "h1"`,
	} {
		if !strings.Contains(errs, w) {
			t.Errorf("cluster errors lack %q:\n%s", w, errs)
		}
	}
}
