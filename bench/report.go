package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Load is the machine's 1-minute load average before and after a
// measurement.
type Load struct {
	Before float64 `json:"before"`
	After  float64 `json:"after"`
}

// String is "1.2→3.4".
func (l Load) String() string { return fmt.Sprintf("%.1f→%.1f", l.Before, l.After) }

// Row is one figure of a run: a measured value next to its baseline.
type Row struct {
	Area string `json:"area"`
	// Name says what was measured, e.g. "TCP 1 stream, container→container (overlay)".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Baseline names what Value is compared with, measured in the same
	// run (or a target, said so in the name); BaselineValue is in Unit.
	Baseline      string  `json:"baseline,omitempty"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	// Ratio is Value ÷ BaselineValue (0: no baseline).
	Ratio float64 `json:"ratio,omitempty"`
	Load  Load    `json:"load"`
	// Command reproduces the row.
	Command string `json:"command"`
	// Note qualifies the figure (an extrapolation, a cap, an error).
	Note string `json:"note,omitempty"`
	// Skipped says why the row has no figure.
	Skipped string `json:"skipped,omitempty"`
}

// Report is a whole run.
type Report struct {
	Command  string        `json:"command"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Machine  Machine       `json:"machine"`
	Load     Load          `json:"load"`
	Areas    []string      `json:"areas"`
	Rows     []Row         `json:"rows"`
	Failures []string      `json:"failures,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(r io.Reader) (*Report, error) {
	var rep Report
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("read bench report: %w", err)
	}
	return &rep, nil
}

// WriteMarkdown writes the report as Markdown: a header with the command,
// machine and load, then one table per area in the order run, skipped
// rows as lines under their area's table.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "`%s`, %s, %d CPUs, Linux %s, %s; load %s; took %s.\n",
		r.Command, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Machine.CPUs, r.Machine.Kernel, r.Machine.Go,
		r.Load, r.Elapsed.Round(time.Second))
	for _, area := range r.Areas {
		var rows, skipped []Row
		for _, row := range r.Rows {
			if row.Area != area {
				continue
			}
			if row.Skipped != "" {
				skipped = append(skipped, row)
			} else {
				rows = append(rows, row)
			}
		}
		fmt.Fprintf(w, "\n### %s\n\n", area)
		if len(rows) > 0 {
			writeTable(w, rows)
		}
		if len(rows) > 0 && len(skipped) > 0 {
			fmt.Fprintln(w)
		}
		for _, row := range skipped {
			fmt.Fprintf(w, "%s\n\n", skipLine(row))
		}
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "\nFAILED: %s\n", f)
	}
}

// skipLine is "docker: skipped (dockerd not installed)" or, for a named
// row, "attach 10 hosts: skipped (...)".
func skipLine(row Row) string {
	what := row.Area
	if row.Name != "" {
		what += " " + row.Name
	}
	return fmt.Sprintf("%s: skipped (%s)", what, row.Skipped)
}

func writeTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| measure | value | baseline | baseline value | ratio | load | command |")
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: | ---: | --- |")
	for _, row := range rows {
		name := row.Name
		if row.Note != "" {
			name += " (" + row.Note + ")"
		}
		base, bval, ratio := "—", "—", "—"
		if row.Baseline != "" {
			base = row.Baseline
			bval = FormatValue(row.BaselineValue, row.Unit)
			if row.Ratio != 0 {
				ratio = FormatRatio(row.Ratio)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | `%s` |\n",
			cell(name), FormatValue(row.Value, row.Unit), cell(base), bval, ratio, row.Load, cell(row.Command))
	}
}

// cell keeps a table cell on one line and its pipes escaped.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// FormatRatio prints a ratio with three significant digits and "×".
func FormatRatio(r float64) string { return sig3(r) + "×" }

// FormatValue prints v with its unit, three significant digits (sig3);
// times of 10,000 of their unit and more go up one unit (µs to ms, ms to
// s), so a table cell stays readable.
func FormatValue(v float64, unit string) string {
	if up, ok := upUnit[unit]; ok && math.Abs(v) >= 10000 {
		v, unit = v/1000, up
	}
	s := sig3(v)
	if unit == "" {
		return s
	}
	return s + " " + unit
}

var upUnit = map[string]string{"µs": "ms", "ms": "s"}

// sig3 prints v with at least three significant digits and no exponent;
// integers of 1,000 and more keep every digit, grouped by commas.
func sig3(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		// Three significant digits below 1: 0.0123.
		digits := 2 - int(math.Floor(math.Log10(a)))
		return strconv.FormatFloat(v, 'f', digits, 64)
	}
}

// group puts commas between thousands of an integer string.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
