package portmap

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/config"
)

func specs(t *testing.T, ss ...string) []config.PortSpec {
	t.Helper()
	var out []config.PortSpec
	for _, s := range ss {
		p, err := config.ParsePortSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func exposes(t *testing.T, ss ...string) []config.ExposeSpec {
	t.Helper()
	var out []config.ExposeSpec
	for _, s := range ss {
		e, err := config.ParseExposeSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

var (
	webNet  = Attachment{Network: "web", Driver: config.DriverBridge, Bridge: "br-web", IP: netip.MustParseAddr("172.26.0.2")}
	meshNet = Attachment{Network: "mesh", Driver: config.DriverOverlay, Bridge: "vxb-mesh", IP: netip.MustParseAddr("10.200.0.7")}
	intNet  = Attachment{Network: "db", Driver: config.DriverBridge, Bridge: "br-db", Internal: true, IP: netip.MustParseAddr("172.27.0.2")}
	macNet  = Attachment{Network: "lan", Driver: config.DriverMacvlan, IP: netip.MustParseAddr("198.18.10.2")}
)

// line writes a binding compactly for comparisons.
func line(b Binding) string {
	return b.Mapping.String() + " via " + b.ContainerIP.String() + "@" + b.Bridge + " key " + b.Key + " spec " + b.Spec
}

func TestExpand(t *testing.T) {
	cases := []struct {
		name string
		c    Container
		want []string
	}{
		{"nothing", Container{Name: "a", Networks: []Attachment{webNet}}, nil},
		{"expose without publish_all", Container{Name: "a", Networks: []Attachment{webNet}, Expose: exposes(t, "80")}, nil},
		{"every form", Container{Name: "web1", Networks: []Attachment{webNet}, Publish: specs(t,
			"80", "8080:81", "198.18.0.1::82", "198.18.0.1:8083:83/udp", "0.0.0.0:8084:84")},
			[]string{
				"web1 80/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key web1/tcp/80/*/random spec 80/tcp",
				"web1 81/tcp -> 0.0.0.0:8080 via 172.26.0.2@br-web key web1/tcp/81/*/8080 spec 8080:81/tcp",
				"web1 82/tcp -> 198.18.0.1:0 via 172.26.0.2@br-web key web1/tcp/82/198.18.0.1/random spec 198.18.0.1::82/tcp",
				"web1 83/udp -> 198.18.0.1:8083 via 172.26.0.2@br-web key web1/udp/83/198.18.0.1/8083 spec 198.18.0.1:8083:83/udp",
				"web1 84/tcp -> 0.0.0.0:8084 via 172.26.0.2@br-web key web1/tcp/84/*/8084 spec 0.0.0.0:8084:84/tcp",
			}},
		{"ranges", Container{Name: "r", Networks: []Attachment{webNet}, Publish: specs(t, "9000-9002:7000-7002/udp", "7100-7101")},
			[]string{
				"r 7000/udp -> 0.0.0.0:9000 via 172.26.0.2@br-web key r/udp/7000/*/9000 spec 9000-9002:7000-7002/udp",
				"r 7001/udp -> 0.0.0.0:9001 via 172.26.0.2@br-web key r/udp/7001/*/9001 spec 9000-9002:7000-7002/udp",
				"r 7002/udp -> 0.0.0.0:9002 via 172.26.0.2@br-web key r/udp/7002/*/9002 spec 9000-9002:7000-7002/udp",
				"r 7100/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key r/tcp/7100/*/random spec 7100-7101/tcp",
				"r 7101/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key r/tcp/7101/*/random spec 7100-7101/tcp",
			}},
		{"same port twice at random", Container{Name: "d", Networks: []Attachment{webNet}, Publish: specs(t, "80", "80", "8080:80")},
			[]string{
				"d 80/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key d/tcp/80/*/random spec 80/tcp",
				"d 80/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key d/tcp/80/*/random#2 spec 80/tcp",
				"d 80/tcp -> 0.0.0.0:8080 via 172.26.0.2@br-web key d/tcp/80/*/8080 spec 8080:80/tcp",
			}},
		{"publish_all skips published ports", Container{Name: "p", Networks: []Attachment{webNet}, PublishAll: true,
			Publish: specs(t, "8080:80"), Expose: exposes(t, "80", "53/udp", "90-91")},
			[]string{
				"p 80/tcp -> 0.0.0.0:8080 via 172.26.0.2@br-web key p/tcp/80/*/8080 spec 8080:80/tcp",
				"p 53/udp -> 0.0.0.0:0 via 172.26.0.2@br-web key p/udp/53/*/random spec -P 53/udp",
				"p 90/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key p/tcp/90/*/random spec -P 90/tcp",
				"p 91/tcp -> 0.0.0.0:0 via 172.26.0.2@br-web key p/tcp/91/*/random spec -P 91/tcp",
			}},
		{"first non-internal bridge network", Container{Name: "m", Networks: []Attachment{intNet, macNet, meshNet, webNet}, Publish: specs(t, "80")},
			[]string{"m 80/tcp -> 0.0.0.0:0 via 10.200.0.7@vxb-mesh key m/tcp/80/*/random spec 80/tcp"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Expand(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range bs {
				got = append(got, line(b))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	v6 := Attachment{Network: "v6", Bridge: "br-v6", IP: netip.MustParseAddr("fd00::2")}
	cases := []struct {
		name string
		c    Container
		want string
	}{
		{"only internal", Container{Name: "a", Networks: []Attachment{intNet, macNet}, Publish: specs(t, "80")},
			`publish ports of container "a": it has no non-internal bridge or overlay network to publish on`},
		{"no networks, publish_all", Container{Name: "a", PublishAll: true, Expose: exposes(t, "80")},
			`publish ports of container "a": it has no non-internal bridge or overlay network to publish on`},
		{"loopback", Container{Name: "a", Networks: []Attachment{webNet}, Publish: specs(t, "80", "127.0.0.1:8080:80")},
			`publish "127.0.0.1:8080:80/tcp" of container "a": loopback host IP 127.0.0.1 is not supported`},
		{"ipv6 host ip", Container{Name: "a", Networks: []Attachment{webNet}, Publish: specs(t, "[2001:db8::1]:8080:80")},
			`publish "[2001:db8::1]:8080:80/tcp" of container "a": host IP 2001:db8::1 is IPv6 but the container has no IPv6 address on network "web"`},
		{"ipv6 unspecified", Container{Name: "a", Networks: []Attachment{webNet}, Publish: specs(t, "[::]:8080:80")},
			`host IP :: is IPv6 but the container has no IPv6 address on network "web"`},
		{"ipv4 host, ipv6 container", Container{Name: "a", Networks: []Attachment{v6}, Publish: specs(t, "198.18.0.1:8080:80")},
			`different IP versions`},
		{"multicast", Container{Name: "a", Networks: []Attachment{webNet}, Publish: specs(t, "224.0.0.1:8080:80")},
			`host IP 224.0.0.1 is not a unicast address`},
		{"bad proto", Container{Name: "a", Networks: []Attachment{webNet}, Publish: []config.PortSpec{{ContainerPort: config.PortRange{Start: 80, End: 80}, Proto: "sctp"}}},
			`protocol "sctp" must be tcp or udp`},
		{"range length", Container{Name: "a", Networks: []Attachment{webNet}, Publish: []config.PortSpec{{
			HostPort: config.PortRange{Start: 8000, End: 8001}, ContainerPort: config.PortRange{Start: 80, End: 80}}}},
			`host range 8000-8001 and container range 80 differ in length`},
		{"no container port", Container{Name: "a", Networks: []Attachment{webNet}, Publish: []config.PortSpec{{}}},
			`container port: missing`},
		{"no name", Container{Networks: []Attachment{webNet}, Publish: specs(t, "80")}, `container has no name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Expand(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Expand = %v, %v; want error containing %q", bs, err, tc.want)
			}
		})
	}
}

func TestContainerOfRule(t *testing.T) {
	nat, filter := Rules([]Mapping{{Container: "web1", Proto: "tcp", HostPort: 8080,
		ContainerIP: netip.MustParseAddr("172.26.0.2"), ContainerPort: 80, Bridge: "br-web"}})
	for _, c := range append(nat, filter...) {
		for _, r := range c.Rules {
			if got, ok := ContainerOfRule("-A " + c.Name + " " + r); !ok || got != "web1" {
				t.Errorf("ContainerOfRule(%q) = %q, %v", r, got, ok)
			}
		}
	}
	if _, ok := ContainerOfRule(`-A X -m comment --comment "other" -j ACCEPT`); ok {
		t.Error("ContainerOfRule found a container in a foreign rule")
	}
	long := strings.Repeat("a", 253)
	c := comment(long, "65535/udp -> [2001:db8::1]:65535")
	if len(c) > maxComment || !strings.HasPrefix(c, CommentPrefix+"aaa") || !strings.Contains(c, "~") {
		t.Fatalf("comment for a long name = %q (%d bytes)", c, len(c))
	}
	if c2 := comment(long, "65535/udp -> [2001:db8::1]:65535"); c2 != c {
		t.Fatal("comment not stable")
	}
}
