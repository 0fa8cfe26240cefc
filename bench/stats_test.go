package bench

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..4 is the 2nd", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100 is 99", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 1..100 is 50", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 1, 100 * time.Millisecond},
		{"p0 is the min", ms(hundred...), 0, 1 * time.Millisecond},
		{"q above 1 is clamped", ms(1, 2), 7, 2 * time.Millisecond},
		{"p99 of 10 samples is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tc.in...)
			if got := Percentile(tc.in, tc.q); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.in[i] {
					t.Fatalf("Percentile reordered its input")
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 200; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	s := Summarize(ds)
	want := Summary{N: 200, P50: 100 * time.Microsecond, P99: 198 * time.Microsecond, Max: 200 * time.Microsecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Errorf("Summarize(nil) is not zero")
	}
}

func TestRatioAndUnits(t *testing.T) {
	tests := []struct {
		got, want float64
	}{
		{Ratio(3, 2), 1.5},
		{Ratio(3, 0), 0},
		{Ms(1500 * time.Microsecond), 1.5},
		{Us(2 * time.Millisecond), 2000},
	}
	for i, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("case %d: got %v, want %v", i, tc.got, tc.want)
		}
	}
}

func TestParseLoadAvg(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  bool
	}{
		{"0.52 0.58 0.59 1/467 12345\n", 0.52, false},
		{"12.47 5.03 1.91 11/222 16090", 12.47, false},
		{"", 0, true},
		{"x 1 2", 0, true},
		{"-1 0 0", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseLoadAvg(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseLoadAvg(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
		err  bool
	}{
		{"plain", "1234 (vxmesh) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0", 300, false},
		{"name with spaces and parens", "77 (a b) c)) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0", 10, false},
		{"no name", "1234 vxmesh S", 0, true},
		{"short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatTicks(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseStatTicks = %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestDockerSkipReason(t *testing.T) {
	missing := func(string) (string, error) { return "", errors.New("not found") }
	found := func(string) (string, error) { return "/usr/sbin/dockerd", nil }
	if got := dockerSkipReason(missing); got != "dockerd not installed" {
		t.Errorf("without dockerd: %q", got)
	}
	if got := dockerSkipReason(found); got == "dockerd not installed" {
		t.Errorf("with dockerd: %q", got)
	}
}

func TestSelectAreas(t *testing.T) {
	all, err := selectAreas(nil)
	if err != nil || len(all) != len(areas) {
		t.Fatalf("selectAreas(nil) = %v, %v", all, err)
	}
	got, err := selectAreas([]string{"cost", "dataplane"})
	if err != nil || len(got) != 2 || got[0] != "dataplane" || got[1] != "cost" {
		t.Errorf("selectAreas(cost, dataplane) = %v, %v; want run order", got, err)
	}
	if _, err := selectAreas([]string{"nope"}); err == nil {
		t.Errorf("selectAreas(nope) accepted an unknown area")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestLabAfter(t *testing.T) {
	names := []string{"dataplane", "cost", "attach", "programming", "scale"}
	for name, want := range map[string]bool{"dataplane": true, "cost": true, "attach": false, "programming": false, "scale": false} {
		if got := labAfter(names, name); got != want {
			t.Errorf("labAfter(%s) = %v, want %v", name, got, want)
		}
	}
}
