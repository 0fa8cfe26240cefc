package portmap

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

var ruleMappings = []Mapping{
	{Container: "web2", Proto: "udp", HostPort: 5353, ContainerIP: netip.MustParseAddr("172.26.0.3"), ContainerPort: 53, Bridge: "br-web"},
	{Container: "web1", Proto: "tcp", HostIP: netip.MustParseAddr("198.18.0.1"), HostPort: 8081, ContainerIP: netip.MustParseAddr("172.26.0.2"), ContainerPort: 80, Bridge: "br-web"},
	{Container: "web1", Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("172.26.0.2"), ContainerPort: 80, Bridge: "br-web"},
	{Container: "db", Proto: "tcp", HostPort: 32768, ContainerIP: netip.MustParseAddr("10.200.0.7"), ContainerPort: 5432, Bridge: "vxb-mesh"},
}

var wantNAT = []ipt.Chain{
	{Name: "VXMESH-DNAT", Rules: []string{
		`-p tcp -m tcp --dport 8080 -m comment --comment "vxmesh web1 80/tcp -> 0.0.0.0:8080" -j DNAT --to-destination 172.26.0.2:80`,
		`-d 198.18.0.1/32 -p tcp -m tcp --dport 8081 -m comment --comment "vxmesh web1 80/tcp -> 198.18.0.1:8081" -j DNAT --to-destination 172.26.0.2:80`,
		`-p tcp -m tcp --dport 32768 -m comment --comment "vxmesh db 5432/tcp -> 0.0.0.0:32768" -j DNAT --to-destination 10.200.0.7:5432`,
		`-p udp -m udp --dport 5353 -m comment --comment "vxmesh web2 53/udp -> 0.0.0.0:5353" -j DNAT --to-destination 172.26.0.3:53`,
	}},
	{Name: "VXMESH-HAIRPIN", Rules: []string{
		`-s 10.200.0.7/32 -d 10.200.0.7/32 -p tcp -m tcp --dport 5432 -m comment --comment "vxmesh db 5432/tcp" -j MASQUERADE`,
		`-s 172.26.0.2/32 -d 172.26.0.2/32 -p tcp -m tcp --dport 80 -m comment --comment "vxmesh web1 80/tcp" -j MASQUERADE`,
		`-s 172.26.0.3/32 -d 172.26.0.3/32 -p udp -m udp --dport 53 -m comment --comment "vxmesh web2 53/udp" -j MASQUERADE`,
	}},
}

var wantFilter = []ipt.Chain{
	{Name: "VXMESH-PUBLISHED", Rules: []string{
		`-d 10.200.0.7/32 ! -i vxb-mesh -o vxb-mesh -p tcp -m tcp --dport 5432 -m conntrack --ctstate DNAT -m comment --comment "vxmesh db 5432/tcp" -j ACCEPT`,
		`-d 172.26.0.2/32 ! -i br-web -o br-web -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "vxmesh web1 80/tcp" -j ACCEPT`,
		`-d 172.26.0.3/32 ! -i br-web -o br-web -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment "vxmesh web2 53/udp" -j ACCEPT`,
	}},
}

func chainsText(cs []ipt.Chain) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.Name + ":\n")
		for _, r := range c.Rules {
			b.WriteString("  " + r + "\n")
		}
	}
	return b.String()
}

func TestRules(t *testing.T) {
	nat, filter := Rules(ruleMappings)
	if got, want := chainsText(nat), chainsText(wantNAT); got != want {
		t.Errorf("nat:\n%s\nwant:\n%s", got, want)
	}
	if got, want := chainsText(filter), chainsText(wantFilter); got != want {
		t.Errorf("filter:\n%s\nwant:\n%s", got, want)
	}
	// Order of the input does not matter; duplicates collapse.
	rev := slices.Clone(ruleMappings)
	slices.Reverse(rev)
	rev = append(rev, ruleMappings[0])
	nat2, filter2 := Rules(rev)
	if chainsText(nat2) != chainsText(nat) || chainsText(filter2) != chainsText(filter) {
		t.Error("rules depend on mapping order")
	}
	// No mappings: the chains are still there, empty.
	nat, filter = Rules(nil)
	if len(nat) != 2 || len(filter) != 1 || len(nat[0].Rules)+len(nat[1].Rules)+len(filter[0].Rules) != 0 {
		t.Errorf("empty rules = %v %v", nat, filter)
	}
	if j := Jumps(); len(j) != 2 || j[0].Rule != "-m addrtype --dst-type LOCAL -j VXMESH-DNAT" ||
		j[1].Rule != "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j VXMESH-DNAT" {
		t.Errorf("jumps = %v", j)
	}
}
