package portmap

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestDualStackPublish: on a dual-stack network "8080:80" publishes on
// both families (0.0.0.0 and [::], as Docker does), a random port is the
// same in both, "[::]:9090:80" only on IPv6, "198.18.0.1::53/udp" only on
// IPv4; `vxmesh port` prints them like docker; the rules split by family.
func TestDualStackPublish(t *testing.T) {
	att := Attachment{Network: "web", Bridge: "br-web", IP: netip.MustParseAddr("172.26.0.2"), IP6: netip.MustParseAddr("fd00:26::2")}
	c := Container{Name: "web", Networks: []Attachment{att}, Publish: specs(t, "8080:80", "[::]:9090:80", "443", "198.18.0.1::53/udp", "[2001:db8::1]::22")}
	res := Allocator{Sockets: []Socket{{Proto: "tcp", Addr: netip.MustParseAddr("::1"), Port: 32768}}}.Allocate([]Container{c})
	if err := res.Errors["web"]; err != nil {
		t.Fatal(err)
	}
	lines, err := Format(res.Mappings, "")
	if err != nil {
		t.Fatal(err)
	}
	var random string
	for _, l := range lines {
		if strings.HasPrefix(l, "443/tcp -> 0.0.0.0:") {
			random = strings.TrimPrefix(l, "443/tcp -> 0.0.0.0:")
		}
	}
	if random == "" || len(lines) != 7 {
		t.Fatalf("port lines %q", lines)
	}
	for _, w := range []string{
		"80/tcp -> 0.0.0.0:8080",
		"80/tcp -> [::]:8080",
		"80/tcp -> [::]:9090",
		"443/tcp -> [::]:" + random, // the IPv4 twin's random port
	} {
		if !slices.Contains(lines, w) {
			t.Errorf("lacks %q in %q", w, lines)
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "22/tcp -> [2001:db8::1]:") }) ||
		!slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "53/udp -> 198.18.0.1:") }) {
		t.Errorf("one-family entries missing in %q", lines)
	}
	// `docker port web 80` order: IPv4 first, then IPv6.
	if got, err := Format(res.Mappings, "80"); err != nil || !slices.Equal(got, []string{"0.0.0.0:8080", "[::]:8080", "[::]:9090"}) {
		t.Errorf("port 80: %q, %v", got, err)
	}
	v4, v6 := SplitFamilies(res.Mappings)
	if len(v4) != 3 || len(v6) != 4 {
		t.Fatalf("split %d IPv4, %d IPv6", len(v4), len(v6))
	}
	nat6, filter6 := Rules(v6)
	dnat := strings.Join(nat6[0].Rules, "\n")
	for _, w := range []string{
		`-p tcp -m tcp --dport 8080 -m comment --comment "vxmesh web 80/tcp -> [::]:8080" -j DNAT --to-destination [fd00:26::2]:80`,
		`-d 2001:db8::1/128 -p tcp -m tcp --dport `,
	} {
		if !strings.Contains(dnat, w) {
			t.Errorf("ip6tables DNAT lacks %q:\n%s", w, dnat)
		}
	}
	if pub := strings.Join(filter6[0].Rules, "\n"); !strings.Contains(pub, "-d fd00:26::2/128 ! -i br-web -o br-web -p tcp -m tcp --dport 80 ") {
		t.Errorf("ip6tables PUBLISHED:\n%s", pub)
	}
	nat4, _ := Rules(v4)
	if s := strings.Join(nat4[0].Rules, "\n"); strings.Contains(s, "fd00") {
		t.Errorf("IPv6 in iptables DNAT:\n%s", s)
	}
}

// TestIPv6OnlyPublishAndClash: an IPv6-only container publishes "8080:80"
// on [::] only; an IPv4 container may take 0.0.0.0:8080 beside it, a second
// IPv6 one may not take [::]:8080.
func TestIPv6OnlyPublishAndClash(t *testing.T) {
	v6 := Attachment{Network: "v6", Bridge: "br-v6", IP6: netip.MustParseAddr("fd00:27::2")}
	v4 := Attachment{Network: "web", Bridge: "br-web", IP: netip.MustParseAddr("172.26.0.3")}
	v6b := Attachment{Network: "v6", Bridge: "br-v6", IP6: netip.MustParseAddr("fd00:27::3")}
	res := Allocator{}.Allocate([]Container{
		{Name: "a", Networks: []Attachment{v6}, Publish: specs(t, "8080:80")},
		{Name: "b", Networks: []Attachment{v4}, Publish: specs(t, "8080:80")},
		{Name: "c", Networks: []Attachment{v6b}, Publish: specs(t, "[::]:8080:80")},
		{Name: "d", Networks: []Attachment{v4}, Publish: specs(t, "[::]:8081:80")},
	})
	if res.Errors["a"] != nil || res.Errors["b"] != nil {
		t.Fatalf("errors %v", res.Errors)
	}
	if err := res.Errors["c"]; err == nil || !strings.Contains(err.Error(), `already published by container "a"`) {
		t.Errorf("c: %v", err)
	}
	if err := res.Errors["d"]; err == nil || !strings.Contains(err.Error(), "no IPv6 address") {
		t.Errorf("d: %v", err)
	}
	if got := res.For("a"); len(got) != 1 || got[0].hostSide() != "[::]:8080" {
		t.Errorf("a: %v", got)
	}
}
