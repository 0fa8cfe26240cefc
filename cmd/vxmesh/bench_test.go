package main

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestBenchInts(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		err  bool
	}{
		{"", nil, false},
		{"10,50, 200", []int{10, 50, 200}, false},
		{"1", nil, true},
		{"10,x", nil, true},
	}
	for _, tc := range tests {
		got, err := benchInts(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("benchInts(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestBenchFlagsRepeatMeasuringFlags(t *testing.T) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	commands["bench"].flags(fs)
	if err := fs.Parse([]string{"--quick", "--json", "--idle", "10m", "--plot", "x.svg", "-v"}); err != nil {
		t.Fatal(err)
	}
	got := benchFlags(fs)
	want := []string{"--idle=10m0s", "--quick"}
	if !slices.Equal(got, want) {
		t.Errorf("benchFlags = %q, want %q", got, want)
	}
}

func TestBenchUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "nope"}, nil, &out, &errb); code != exitUsage {
		t.Errorf("unknown area: exit %d, want %d (stderr %q)", code, exitUsage, errb.String())
	}
	if !strings.Contains(errb.String(), `unknown area "nope"`) {
		t.Errorf("stderr %q does not name the area", errb.String())
	}
	out.Reset()
	if code := run([]string{"bench", "--help"}, nil, &out, &errb); code != exitOK || !strings.Contains(out.String(), "dataplane") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
}
