package dns

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

// TestViewsEqualComputeView: a view from Views answers exactly as the one
// ComputeView makes from the same input, over random clusters: containers
// on random subsets of networks, names that are also hostnames, FQDN
// hostnames whose first label is or is not taken, extra_hosts that shadow
// container names or share their addresses, names recently gone.
func TestViewsEqualComputeView(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	nets := []string{"web", "mesh", "app"}
	names := []string{"a", "b", "c", "www", "db", "a.example.test", "gone1"}
	addr := func() netip.Addr {
		if r.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0xfd, 15: byte(r.IntN(8))})
		}
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(8))})
	}
	pick := func(from []string, n int) []string {
		var out []string
		for range n {
			out = append(out, from[r.IntN(len(from))])
		}
		return out
	}
	for i := range 500 {
		var eps []Endpoint
		for range r.IntN(10) {
			eps = append(eps, Endpoint{Container: names[r.IntN(5)], Network: nets[r.IntN(3)], Aliases: pick(names, r.IntN(2)), Addrs: []netip.Addr{addr()}})
		}
		gone := pick(names, r.IntN(3))
		subnets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")}
		vs := NewViews(eps, gone, subnets)
		for range 4 {
			in := ViewInput{Networks: pick(nets, 1+r.IntN(2)), Hostname: names[r.IntN(len(names))], Endpoints: eps, Gone: gone, Subnets: subnets,
				Search: pick([]string{"example.test"}, r.IntN(2)), Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.5.53:0")}}
			if r.IntN(3) > 0 {
				in.SelfAddrs = []netip.Addr{addr()}
			}
			for range r.IntN(3) {
				in.ExtraHosts = append(in.ExtraHosts, HostEntry{Name: names[r.IntN(len(names))], Addr: addr()})
			}
			if hasDupExtra(in.ExtraHosts) {
				continue // two extra_hosts names on one address: which PTR wins is map order in both
			}
			w := ComputeView(in)
			want := View{Search: w.Search, compiled: compileView(w)}.Flat()
			got := vs.View(in).Flat()
			if !reflect.DeepEqual(normal(got), normal(want)) {
				t.Fatalf("case %d: input %+v\n Views.View: %+v\n ComputeView: %+v", i, in, got, want)
			}
		}
	}
}

func hasDupExtra(hs []HostEntry) bool {
	seen := map[netip.Addr]string{}
	for _, h := range hs {
		if n, ok := seen[h.Addr]; ok && n != h.Name {
			return true
		}
		seen[h.Addr] = h.Name
	}
	return false
}

// normal makes empty and nil the same for comparison.
func normal(v View) string {
	return fmt.Sprintf("%v|%v|%v|%v|%v|%v", v.Records, v.PTR, v.Hidden, v.ReverseZones, v.Search, v.Upstreams)
}
