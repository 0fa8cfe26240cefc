package portmap

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/config"
)

func ctr(t *testing.T, name, ip string, publish ...string) Container {
	t.Helper()
	return Container{
		Name:     name,
		Networks: []Attachment{{Network: "web", Bridge: "br-web", IP: netip.MustParseAddr(ip)}},
		Publish:  specs(t, publish...),
	}
}

func lines(ms []Mapping) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.String())
	}
	return strings.Join(out, "\n")
}

func TestAllocate(t *testing.T) {
	type want struct {
		mappings []string
		errors   map[string]string // container -> error substring
	}
	tcp := func(addr string, port uint16, inode uint64) Socket {
		return Socket{Proto: config.ProtoTCP, Addr: netip.MustParseAddr(addr), Port: port, Inode: inode}
	}
	cases := []struct {
		name  string
		alloc Allocator
		cs    func(t *testing.T) []Container
		want  want
	}{
		{
			name: "random ports count up from 32768",
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "80", "81/udp"), ctr(t, "b", "172.26.0.3", "80")}
			},
			want: want{mappings: []string{
				"a 80/tcp -> 0.0.0.0:32768",
				"a 81/udp -> 0.0.0.0:32768",
				"b 80/tcp -> 0.0.0.0:32769",
			}},
		},
		{
			name:  "previous random port kept",
			alloc: Allocator{Previous: map[string]uint16{"a/tcp/80/*/random": 40000, "gone/tcp/80/*/random": 32768}},
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "80"), ctr(t, "b", "172.26.0.3", "80")}
			},
			want: want{mappings: []string{"a 80/tcp -> 0.0.0.0:40000", "b 80/tcp -> 0.0.0.0:32768"}},
		},
		{
			name:  "a port held from before beats a newcomer listed first",
			alloc: Allocator{Previous: map[string]uint16{"old/tcp/80/*/random": 32768}},
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "new", "172.26.0.3", "32768:80", "90"), ctr(t, "old", "172.26.0.2", "80")}
			},
			want: want{
				mappings: []string{"old 80/tcp -> 0.0.0.0:32768"},
				errors:   map[string]string{"new": `publish "32768:80/tcp" of container "new": host port 32768/tcp on 0.0.0.0 is already published by container "old"`},
			},
		},
		{
			name: "explicit conflict refuses the later container whole",
			cs: func(t *testing.T) []Container {
				return []Container{
					ctr(t, "web1", "172.26.0.2", "8080:80"),
					ctr(t, "web2", "172.26.0.3", "80", "8080:80"),
					ctr(t, "web3", "172.26.0.4", "80"),
				}
			},
			want: want{
				mappings: []string{"web1 80/tcp -> 0.0.0.0:8080", "web3 80/tcp -> 0.0.0.0:32768"},
				errors:   map[string]string{"web2": `publish "8080:80/tcp" of container "web2": host port 8080/tcp on 0.0.0.0 is already published by container "web1"`},
			},
		},
		{
			name:  "host process",
			alloc: Allocator{Sockets: []Socket{tcp("0.0.0.0", 8080, 1234), tcp("198.18.0.1", 9090, 99)}, PIDOf: func(i uint64) int { return map[uint64]int{1234: 42}[i] }},
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "8080:80"), ctr(t, "b", "172.26.0.3", "9090:80"), ctr(t, "c", "172.26.0.4", "198.18.0.2:9090:80")}
			},
			want: want{
				mappings: []string{"c 80/tcp -> 198.18.0.2:9090"},
				errors: map[string]string{
					"a": `publish "8080:80/tcp" of container "a": host port 8080/tcp on 0.0.0.0 is in use by a host process (listening on every address, pid 42, socket inode 1234)`,
					"b": `publish "9090:80/tcp" of container "b": host port 9090/tcp on 0.0.0.0 is in use by a host process (listening on 198.18.0.1:9090, socket inode 99)`,
				},
			},
		},
		{
			name: "sockets that do not conflict",
			alloc: Allocator{Sockets: []Socket{
				tcp("127.0.0.1", 8080, 1), tcp("::1", 8080, 2), tcp("2001:db8::1", 8080, 3),
				{Proto: config.ProtoUDP, Addr: netip.IPv4Unspecified(), Port: 8080, Inode: 4},
			}},
			cs:   func(t *testing.T) []Container { return []Container{ctr(t, "a", "172.26.0.2", "8080:80")} },
			want: want{mappings: []string{"a 80/tcp -> 0.0.0.0:8080"}},
		},
		{
			name:  "dual-stack wildcard socket conflicts",
			alloc: Allocator{Sockets: []Socket{tcp("::", 8080, 7)}},
			cs:    func(t *testing.T) []Container { return []Container{ctr(t, "a", "172.26.0.2", "198.18.0.1:8080:80")} },
			want: want{errors: map[string]string{
				"a": `host port 8080/tcp on 198.18.0.1 is in use by a host process (listening on every address, socket inode 7)`}},
		},
		{
			name:  "random skips sockets and taken ports",
			alloc: Allocator{Sockets: []Socket{tcp("0.0.0.0", 32768, 1), tcp("198.18.0.1", 32770, 2)}},
			cs: func(t *testing.T) []Container {
				return []Container{
					ctr(t, "a", "172.26.0.2", "32769:80"),
					ctr(t, "b", "172.26.0.3", "80", "80/udp"),
					ctr(t, "c", "172.26.0.4", "198.18.0.2::80"),
				}
			},
			want: want{mappings: []string{
				"a 80/tcp -> 0.0.0.0:32769",
				"b 80/tcp -> 0.0.0.0:32771",
				"b 80/udp -> 0.0.0.0:32768",
				"c 80/tcp -> 198.18.0.2:32770",
			}},
		},
		{
			name: "host addresses overlap only when equal or every address",
			cs: func(t *testing.T) []Container {
				return []Container{
					ctr(t, "a", "172.26.0.2", "198.18.0.1:8080:80"),
					ctr(t, "b", "172.26.0.3", "198.18.0.2:8080:80"),
					ctr(t, "c", "172.26.0.4", "8080:80"),
					ctr(t, "d", "172.26.0.5", "8080:80/udp"),
				}
			},
			want: want{
				mappings: []string{"a 80/tcp -> 198.18.0.1:8080", "b 80/tcp -> 198.18.0.2:8080", "d 80/udp -> 0.0.0.0:8080"},
				errors:   map[string]string{"c": `host port 8080/tcp on 0.0.0.0 is already published by container "a"`},
			},
		},
		{
			name: "a port twice in one container",
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "8080:80", "8079-8080:81-82")}
			},
			want: want{errors: map[string]string{
				"a": `publish "8079-8080:81-82/tcp" of container "a": host port 8080/tcp on 0.0.0.0 is published twice by container "a" ("8080:80/tcp" and "8079-8080:81-82/tcp")`}},
		},
		{
			name:  "range exhausted",
			alloc: Allocator{Range: config.PortRange{Start: 40000, End: 40001}},
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "80-81"), ctr(t, "b", "172.26.0.3", "80")}
			},
			want: want{
				mappings: []string{"a 80/tcp -> 0.0.0.0:40000", "a 81/tcp -> 0.0.0.0:40001"},
				errors:   map[string]string{"b": `publish "80/tcp" of container "b": no free host port for 80/tcp on 0.0.0.0 in 40000-40001`},
			},
		},
		{
			name: "previous ports are ours even if a socket appeared since",
			alloc: Allocator{
				Previous: map[string]uint16{"a/tcp/80/*/8080": 8080, "a/tcp/81/*/random": 33000},
				Sockets:  []Socket{tcp("0.0.0.0", 8080, 1), tcp("0.0.0.0", 33000, 2)},
			},
			cs:   func(t *testing.T) []Container { return []Container{ctr(t, "a", "172.26.0.2", "8080:80", "81")} },
			want: want{mappings: []string{"a 80/tcp -> 0.0.0.0:8080", "a 81/tcp -> 0.0.0.0:33000"}},
		},
		{
			name: "host IP must be local",
			alloc: Allocator{
				LocalAddrs: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("172.26.0.1")},
				Previous:   map[string]uint16{"c/tcp/80/198.18.0.3/random": 40000},
			},
			cs: func(t *testing.T) []Container {
				return []Container{
					ctr(t, "a", "172.26.0.2", "198.18.0.1:8080:80", "172.26.0.1::80"),
					ctr(t, "b", "172.26.0.3", "198.18.0.9::80"),
					ctr(t, "c", "172.26.0.4", "198.18.0.3::80"), // had it before: kept
				}
			},
			want: want{
				mappings: []string{"a 80/tcp -> 172.26.0.1:32768", "a 80/tcp -> 198.18.0.1:8080", "c 80/tcp -> 198.18.0.3:40000"},
				errors:   map[string]string{"b": `publish "198.18.0.9::80/tcp" of container "b": host IP 198.18.0.9 is not an address of this host`},
			},
		},
		{
			name: "expansion errors are per container",
			cs: func(t *testing.T) []Container {
				return []Container{ctr(t, "a", "172.26.0.2", "127.0.0.1:80:80"), ctr(t, "b", "172.26.0.3", "80")}
			},
			want: want{
				mappings: []string{"b 80/tcp -> 0.0.0.0:32768"},
				errors:   map[string]string{"a": "loopback host IP 127.0.0.1 is not supported"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.alloc.Allocate(tc.cs(t))
			if got, want := lines(res.Mappings), strings.Join(tc.want.mappings, "\n"); got != want {
				t.Errorf("mappings:\n%s\nwant:\n%s", got, want)
			}
			for name, want := range tc.want.errors {
				if err := res.Errors[name]; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error of %q = %v; want %q", name, err, want)
				}
			}
			for name, err := range res.Errors {
				if _, ok := tc.want.errors[name]; !ok {
					t.Errorf("unexpected error of %q: %v", name, err)
				}
				if len(res.For(name)) != 0 {
					t.Errorf("refused container %q has mappings %v", name, res.For(name))
				}
			}
		})
	}
}

func TestAllocateStable(t *testing.T) {
	a := Allocator{}
	cs := []Container{ctr(t, "a", "172.26.0.2", "80", "81/udp"), ctr(t, "b", "172.26.0.3", "80", "8080:90")}
	first := a.Allocate(cs)
	if len(first.Errors) != 0 {
		t.Fatal(first.Errors)
	}
	if want := map[string]uint16{
		"a/tcp/80/*/random": 32768, "a/udp/81/*/random": 32768,
		"b/tcp/80/*/random": 32769, "b/tcp/90/*/8080": 8080,
	}; !maps.Equal(first.Assignments, want) {
		t.Fatalf("assignments = %v; want %v", first.Assignments, want)
	}

	// A newcomer listed first, taking the lowest port, does not move the
	// others; removing "a" frees its ports for later, not for "b".
	a.Previous = first.Assignments
	cs2 := append([]Container{ctr(t, "c", "172.26.0.4", "80")}, cs[1:]...)
	second := a.Allocate(cs2)
	if got, want := lines(second.Mappings), "b 80/tcp -> 0.0.0.0:32769\nb 90/tcp -> 0.0.0.0:8080\nc 80/tcp -> 0.0.0.0:32768"; got != want {
		t.Fatalf("after change:\n%s\nwant:\n%s", got, want)
	}
	if _, ok := second.Assignments["a/tcp/80/*/random"]; ok {
		t.Fatal("assignment of a removed container kept")
	}

	// A refused container keeps its previous assignment for next time.
	a.Previous = second.Assignments
	cs3 := []Container{ctr(t, "b", "172.26.0.3", "80", "8080:90", "127.0.0.1:1:1"), ctr(t, "c", "172.26.0.4", "80")}
	third := a.Allocate(cs3)
	if third.Errors["b"] == nil || third.Assignments["b/tcp/80/*/random"] != 32769 {
		t.Fatalf("refused b: errors %v, assignments %v", third.Errors, third.Assignments)
	}
	// ... and nobody else takes its ports meanwhile.
	cs4 := append(cs3, ctr(t, "d", "172.26.0.5", "80", "8080:80"))
	fourth := a.Allocate(cs4)
	if err := fourth.Errors["d"]; err == nil || !strings.Contains(err.Error(), `8080/tcp on 0.0.0.0 is already published by container "b"`) {
		t.Fatalf("d: %v", err)
	}
	cs4[2] = ctr(t, "d", "172.26.0.5", "80")
	fourth = a.Allocate(cs4)
	if got := lines(fourth.For("d")); got != "d 80/tcp -> 0.0.0.0:32770" {
		t.Fatalf("d got %s, want 32770 (32768 is c's, 32769 is b's)", got)
	}
	if !slices.IsSortedFunc(fourth.Mappings, compareMappings) {
		t.Fatal("mappings not sorted")
	}
}
