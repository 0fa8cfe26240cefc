package lab

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestSetDiff(t *testing.T) {
	tests := []struct {
		name       string
		want, have []string
		diff       []string
	}{
		{"equal", []string{"a", "b"}, []string{"b", "a"}, nil},
		{"missing", []string{"a", "b"}, []string{"a"}, []string{"x: missing b"}},
		{"stale", []string{"a"}, []string{"a", "c"}, []string{"x: stale c"}},
		{"duplicate", []string{"a"}, []string{"a", "a"}, []string{"x: stale or duplicate a (2 times)"}},
		{"both", nil, []string{"c"}, []string{"x: stale c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := setDiff("x", tc.want, tc.have); !slices.Equal(got, tc.diff) {
				t.Errorf("setDiff = %q, want %q", got, tc.diff)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(5), 99, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 99, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{ms(3, 1, 2), 100, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := Percentile(tc.ds, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.ds, tc.p, got, tc.want)
		}
	}
}

// TestPartition checks the cuts of each kind on 4 hosts: every pair cut
// is across the sides, the bridge host is cut from nobody, and one seed
// always gives the same partition.
func TestPartition(t *testing.T) {
	plan := &Plan{}
	for i := range 4 {
		plan.Hosts = append(plan.Hosts, HostPlan{Name: string(rune('a' + i)), Address: netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)})})
	}
	for _, kind := range []string{"isolate", "halves", "bridge"} {
		t.Run(kind, func(t *testing.T) {
			r := &chaosRun{rec: &Record{Plan: *plan}, rng: rand.New(rand.NewPCG(9, 9))}
			sides, cut, desc := r.partition(kind)
			r2 := &chaosRun{rec: &Record{Plan: *plan}, rng: rand.New(rand.NewPCG(9, 9))}
			if _, cut2, desc2 := r2.partition(kind); desc != desc2 || !slices.Equal(cut, cut2) {
				t.Errorf("same seed, different partitions: %s / %s", desc, desc2)
			}
			inCut := map[int]bool{}
			for _, p := range cut {
				inCut[p[0]], inCut[p[1]] = true, true
				if slices.Contains(sides[0], p[0]) == slices.Contains(sides[0], p[1]) && kind != "bridge" {
					t.Errorf("%s: cut %v within a side %v", desc, p, sides)
				}
			}
			switch kind {
			case "isolate":
				if len(cut) != 3 || len(sides[0]) != 1 {
					t.Errorf("%s: cut %v", desc, cut)
				}
			case "halves":
				if len(cut) != 4 {
					t.Errorf("%s: cut %v, want 4 pairs", desc, cut)
				}
			case "bridge":
				if len(inCut) != 3 {
					t.Errorf("%s: cut %v: want exactly one host outside the cut", desc, cut)
				}
			}
			if len(sides[0])+len(sides[1]) != 4 {
				t.Errorf("%s: sides %v do not hold every host", desc, sides)
			}
		})
	}
}

// TestDuplicateIPs: an address held by two live endpoints is a violation,
// whichever hosts they are on.
func TestDuplicateIPs(t *testing.T) {
	tests := []struct {
		name string
		live map[string][]endpointKey
		want []string
	}{
		{"none", map[string][]endpointKey{"h1": {{Container: "a", IP: "10.0.0.2"}}, "h2": {{Container: "b", IP: "10.0.0.3"}}}, nil},
		{"across a cut", map[string][]endpointKey{"h1": {{Container: "a", IP: "10.0.0.2"}}, "h2": {{Container: "b", IP: "10.0.0.2"}}},
			[]string{"duplicate address 10.0.0.2: a@h1 and b@h2 (conflict not resolved)"}},
		{"on one host", map[string][]endpointKey{"h1": {{Container: "a", IP: "10.0.0.2"}, {Container: "c", IP: "10.0.0.2"}}}, []string{"duplicate address 10.0.0.2: a@h1 and c@h1 (conflict not resolved)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := duplicateIPs(tc.live); !slices.Equal(got, tc.want) {
				t.Errorf("duplicateIPs = %q, want %q", got, tc.want)
			}
		})
	}
}
