package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Unit tests of who holds an overlay address (no root needed).

func rec(host, network, ctr, ip string, version uint64) EndpointRecord {
	a := netip.MustParseAddr(ip)
	mac := net.HardwareAddr{0x02, 0, 0, 0, byte(version), a.As4()[3]}
	return EndpointRecord{Network: network, Container: ctr, IP: a, MAC: mac, Names: []string{ctr},
		Host: host, VTEP: netip.MustParseAddr("198.18.0." + host[1:]), Version: version}
}

func TestResolveRemote(t *testing.T) {
	alive, dead := true, false
	nets := map[string]bool{"mesh": true}
	for _, c := range []struct {
		name      string
		members   map[string]bool
		eps, shad []EndpointRecord
		local     []LocalEndpoint
		remote    []string // "host/container", in order
		conflicts []string // "ip winner-host losers"
		notes     []string // "host ip: prefix"
	}{
		{
			name:    "remote endpoints, oldest first, other networks left out",
			members: map[string]bool{"h1": alive, "h2": alive, "h3": alive},
			eps: []EndpointRecord{
				rec("h3", "mesh", "c", "10.0.3.2", 5), rec("h2", "mesh", "b", "10.0.2.2", 3),
				rec("h2", "other", "x", "10.9.2.2", 1), rec("h1", "mesh", "mine", "10.0.1.2", 1),
			},
			remote: []string{"h2/b", "h3/c"},
		},
		{
			name:    "an address moved from a dead host: the live one holds it",
			members: map[string]bool{"h1": alive, "h2": dead, "h3": alive},
			eps:     []EndpointRecord{rec("h3", "mesh", "new", "10.0.0.9", 2)},
			shad:    []EndpointRecord{rec("h2", "mesh", "old", "10.0.0.9", 1)},
			remote:  []string{"h3/new"},
			notes:   []string{"h2 10.0.0.9: stale"},
		},
		{
			name:    "a dead host's endpoints stay until reaped",
			members: map[string]bool{"h1": alive, "h2": dead},
			eps:     []EndpointRecord{rec("h2", "mesh", "b", "10.0.2.2", 1)},
			remote:  []string{"h2/b"},
		},
		{
			name:      "two live hosts: the older keeps the address",
			members:   map[string]bool{"h1": alive, "h2": alive, "h3": alive},
			eps:       []EndpointRecord{rec("h3", "mesh", "second", "10.0.0.7", 9)},
			shad:      []EndpointRecord{rec("h2", "mesh", "first", "10.0.0.7", 4)},
			remote:    []string{"h2/first"},
			conflicts: []string{"10.0.0.7 h2 h3"},
			notes:     []string{"h3 10.0.0.7: conflict"},
		},
		{
			name:      "a local container that came first keeps its address here too",
			members:   map[string]bool{"h1": alive, "h2": alive},
			eps:       []EndpointRecord{rec("h2", "mesh", "late", "10.0.0.7", 9), rec("h1", "mesh", "early", "10.0.0.7", 4)},
			local:     []LocalEndpoint{{Network: "mesh", Container: "early", IP: netip.MustParseAddr("10.0.0.7")}},
			conflicts: []string{"10.0.0.7 h1 h2"},
			notes:     []string{"h2 10.0.0.7: conflict"},
		},
		{
			name:      "a local container that lost: the winner is not programmed here",
			members:   map[string]bool{"h1": alive, "h2": alive},
			eps:       []EndpointRecord{rec("h2", "mesh", "early", "10.0.0.7", 2)},
			local:     []LocalEndpoint{{Network: "mesh", Container: "late", IP: netip.MustParseAddr("10.0.0.7")}},
			conflicts: []string{"10.0.0.7 h2 h1"},
			notes:     []string{"h1 10.0.0.7: conflict", "h2 10.0.0.7: not programmed here"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			isAlive := func(h string) bool { return h == "h1" || c.members[h] }
			res := ResolveRemote("h1", nets, append(slices.Clone(c.eps), c.shad...), isAlive, c.local)
			var remote, conflicts, notes []string
			for _, r := range res.Remote {
				remote = append(remote, r.Host+"/"+r.Container)
			}
			for _, cf := range res.Conflicts {
				s := cf.Addr.String() + " " + cf.Winner.Host
				for _, l := range cf.Losers {
					s += " " + l.Host
				}
				conflicts = append(conflicts, s)
				if !strings.Contains(cf.String(), "keeps it (older)") {
					t.Errorf("conflict text %q", cf.String())
				}
			}
			for k, n := range res.Notes {
				notes = append(notes, fmt.Sprintf("%s %s: %s", k.Host, k.IP, n))
			}
			slices.Sort(notes)
			if !slices.Equal(remote, c.remote) {
				t.Errorf("remote = %q, want %q", remote, c.remote)
			}
			if !slices.Equal(conflicts, c.conflicts) {
				t.Errorf("conflicts = %q, want %q", conflicts, c.conflicts)
			}
			if len(notes) != len(c.notes) {
				t.Fatalf("notes = %q, want %q", notes, c.notes)
			}
			for i := range notes {
				if !strings.HasPrefix(notes[i], c.notes[i]) {
					t.Errorf("note %q, want prefix %q", notes[i], c.notes[i])
				}
			}
		})
	}
}
