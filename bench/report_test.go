package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{0, "ms", "0 ms"},
		{0.000123456, "", "0.000123"},
		{0.0508, "", "0.0508"},
		{1.5, "ms", "1.50 ms"},
		{42.84, "µs", "42.8 µs"},
		{166.4, "µs", "166 µs"},
		{3041.2, "Mbit/s", "3,041 Mbit/s"},
		{1234567, "B", "1,234,567 B"},
		{-2500, "", "-2,500"},
		{9999, "ms", "9,999 ms"},
		{531234, "ms", "531 s"},
		{12345, "µs", "12.3 ms"},
	}
	for _, tc := range tests {
		if got := FormatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	if got := FormatRatio(0.772); got != "0.772×" {
		t.Errorf("FormatRatio = %q", got)
	}
}

func sampleReport() *Report {
	return &Report{
		Command: "vxmesh bench dataplane docker",
		Started: time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC),
		Elapsed: 21 * time.Second,
		Machine: Machine{CPUs: 2, Kernel: "6.1", Go: "go1.26"},
		Load:    Load{Before: 1.5, After: 2.25},
		Areas:   []string{"dataplane", "docker"},
		Rows: []Row{
			{Area: "dataplane", Name: "TCP 1 stream: overlay a|b", Value: 3041, Unit: "Mbit/s", Baseline: "bare underlay", BaselineValue: 3940, Ratio: 3041.0 / 3940, Load: Load{1.5, 2}, Command: "vxmesh bench dataplane"},
			{Area: "dataplane", Name: "goroutines", Value: 50, Load: Load{2, 2}, Command: "vxmesh bench dataplane", Note: "idle"},
			{Area: "docker", Skipped: "dockerd not installed", Command: "vxmesh bench docker"},
		},
		Failures: []string{"attach: boom"},
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	sampleReport().WriteMarkdown(&b)
	out := b.String()
	for _, want := range []string{
		"`vxmesh bench dataplane docker`, 2026-12-06 11:00 UTC, 2 CPUs, Linux 6.1, go1.26; load 1.5→2.2; took 21s.",
		"### dataplane",
		"| measure | value | baseline | baseline value | ratio | load | command |",
		`| TCP 1 stream: overlay a\|b | 3,041 Mbit/s | bare underlay | 3,940 Mbit/s | 0.772× | 1.5→2.0 | ` + "`vxmesh bench dataplane`" + ` |`,
		"| goroutines (idle) | 50.0 | — | — | — | 2.0→2.0 |",
		"### docker\n\ndocker: skipped (dockerd not installed)",
		"FAILED: attach: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// Every table line has the header's number of cells.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| ") {
			if n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); n != 8 {
				t.Errorf("table line has %d pipes, want 8: %s", n, line)
			}
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	js := b.String()
	gotp, err := ReadReport(strings.NewReader(js))
	if err != nil {
		t.Fatalf("JSON does not read back: %v\n%s", err, js)
	}
	got := *gotp
	var again, want bytes.Buffer
	got.WriteMarkdown(&again)
	sampleReport().WriteMarkdown(&want)
	if again.String() != want.String() {
		t.Errorf("Markdown of the read-back report differs:\n%s\nwant:\n%s", again.String(), want.String())
	}
	if len(got.Rows) != 3 || got.Rows[0].Ratio == 0 || got.Rows[0].Baseline != "bare underlay" || got.Rows[2].Skipped == "" {
		t.Errorf("rows lost in JSON: %+v", got.Rows)
	}
	for _, key := range []string{`"load": {`, `"before": 1.5`, `"command": "vxmesh bench dataplane"`, `"skipped": "dockerd not installed"`} {
		if !strings.Contains(b.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if strings.Contains(b.String(), `"note": ""`) {
		t.Errorf("empty notes should be omitted")
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		max  float64
		want []float64
	}{
		{0, []float64{0, 1}},
		{9, []float64{0, 2, 4, 6, 8, 10}},
		{10, []float64{0, 2, 4, 6, 8, 10}},
		{480, []float64{0, 100, 200, 300, 400, 500}},
		{0.3, []float64{0, 0.1, 0.2, 0.30000000000000004}},
	}
	for _, tc := range tests {
		got := niceTicks(tc.max)
		if len(got) != len(tc.want) {
			t.Errorf("niceTicks(%v) = %v, want %v", tc.max, got, tc.want)
			continue
		}
		if got[len(got)-1] < tc.max {
			t.Errorf("niceTicks(%v) ends below the max: %v", tc.max, got)
		}
	}
}

func TestWriteSVG(t *testing.T) {
	panels := plotPanels(
		[]scalePoint{{Members: 50, P50: 3 * time.Millisecond, P99: 48 * time.Millisecond, IdleBps: 646, Endpoints: 500, StateBytes: 7000}, {Members: 200, P50: 9 * time.Millisecond, P99: 120 * time.Millisecond, IdleBps: 900}},
		[]costPoint{{Endpoints: 1000, Bytes: 14000}, {Endpoints: 10000, Bytes: 139000}},
	)
	if len(panels) != 3 {
		t.Fatalf("%d panels, want 3", len(panels))
	}
	var b bytes.Buffer
	WriteSVG(&b, "vxmesh bench <scale> & cost", panels)
	// Well-formed XML with an svg root, and the labels escaped.
	dec := xml.NewDecoder(&b)
	root := ""
	paths := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "path" {
				paths++
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	// One axis per panel plus one line per series (4 + 2 + 2: the
	// push/pull panel has the cost area's and the scale runs' sizes).
	if paths != 3+8 {
		t.Errorf("%d paths, want 11", paths)
	}
	if got := tickLabel(2000); got != "2,000" {
		t.Errorf("tickLabel(2000) = %q", got)
	}
	if len(plotPanels(nil, nil)) != 0 {
		t.Errorf("panels without figures")
	}
}
