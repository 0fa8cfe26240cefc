package gossip

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestHealerBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		op   string // "begin" or "end"
		name string
		at   time.Duration
		want bool
	}{
		{"begin", "a", 0, true},
		{"begin", "b", 0, true},
		{"begin", "c", 0, false}, // maxExchanges in flight
		{"end", "a", 0, false},
		{"begin", "c", 0, true},
		{"end", "b", 0, false},
		{"end", "c", 0, false},
		{"begin", "a", minExchangeGap / 2, false}, // too soon after the last
		{"begin", "a", minExchangeGap, true},
		{"end", "a", 0, false},
		{"begin", "d", 0, true}, // a clock step back is no gap
	}
	var h healer
	for i, s := range steps {
		if s.op == "end" {
			h.end(s.name)
			continue
		}
		if got := h.begin(s.name, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: begin(%s) = %v, want %v", i, s.name, got, s.want)
		}
	}
	h.forget("a")
	if got := h.begin("a", t0); !got {
		t.Fatal("begin after forget refused")
	}
}

func TestPicked(t *testing.T) {
	names := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("n%03d", i))
		}
		return out
	}
	tests := []struct {
		name    string
		members int
		k       int
		want    int // members that pick the target
	}{
		{"small cluster: everyone", 4, 3, 3},
		{"three of many", 200, 3, 3},
		{"one", 50, 1, 1},
		{"alone", 1, 3, 0}, // only the target itself
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := names(tt.members)
			target := all[0]
			got := 0
			for _, self := range all {
				if self != target && picked(target, self, slices.Values(all), tt.k) {
					got++
				}
			}
			if got != tt.want {
				t.Fatalf("%d members picked %s, want %d", got, target, tt.want)
			}
		})
	}
	// A member alone on its side of a partition always picks.
	if !picked("x", "self", slices.Values([]string{"self"}), 3) {
		t.Fatal("a lone member did not pick")
	}
}

func TestWholeStateCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := &Cluster{tab: newTable("h1", lo(1), time.Minute, t0)}
	if _, err := c.tab.setLocal(hostEndpoints(1, 3, 1), t0); err != nil {
		t.Fatal(err)
	}
	first := c.wholeState(t0)
	steps := []struct {
		name   string
		change func() time.Time // returns when to ask
		same   bool             // the cached encoding is returned
	}{
		{"unchanged", func() time.Time { return t0.Add(stateCacheAge / 2) }, true},
		{"too old", func() time.Time { return t0.Add(stateCacheAge) }, false},
		{"a record changed", func() time.Time {
			if _, err := c.tab.setLocal(hostEndpoints(1, 2, 1), t0); err != nil {
				t.Fatal(err)
			}
			return t0
		}, false},
		{"clock moved", func() time.Time { c.tab.witness(c.tab.clock + 10); return t0 }, false},
	}
	for _, s := range steps {
		c.stateCache = stateCache{key: c.tab.stateKey(), at: t0, b: first}
		at := s.change()
		got := c.wholeState(at)
		if same := len(got) > 0 && &got[0] == &first[0]; same != s.same {
			t.Errorf("%s: cached encoding reused = %v, want %v", s.name, same, s.same)
		}
		m, err := decodeMessage(got)
		if err != nil || m.typ != msgState {
			t.Fatalf("%s: decode: %v", s.name, err)
		}
	}
}
