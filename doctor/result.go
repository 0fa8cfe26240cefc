package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Status is a check's outcome.
type Status string

// The outcomes, printed as ✓ ✗ ! and -.
const (
	OK   Status = "ok"   // ✓ checked, fine
	Fail Status = "fail" // ✗ broken, or will break traffic: doctor exits 1
	Warn Status = "warn" // ! works, but a known risk or a doubt
	Skip Status = "skip" // - could not be checked here (says why)
)

// Symbol is the one-character mark of s.
func (s Status) Symbol() string {
	switch s {
	case OK:
		return "✓"
	case Fail:
		return "✗"
	case Warn:
		return "!"
	}
	return "-"
}

// Result is one check's line.
type Result struct {
	// Check names the check and its subject, e.g. "kernel vxlan",
	// "mtu mesh h2".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Evidence is what was seen, in one sentence.
	Evidence string `json:"evidence"`
	// Fix says what to do (Fail and Warn).
	Fix string `json:"fix,omitempty"`
}

// Report is every check's result for one host.
type Report struct {
	Host    string   `json:"host"`
	Results []Result `json:"results"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool { return r.Count(Fail) > 0 }

// Count counts the results with status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, x := range r.Results {
		if x.Status == s {
			n++
		}
	}
	return n
}

// Find returns the results whose Check starts with prefix.
func (r *Report) Find(prefix string) []Result {
	var out []Result
	for _, x := range r.Results {
		if strings.HasPrefix(x.Check, prefix) {
			out = append(out, x)
		}
	}
	return out
}

// Write prints one line per check ("✓ CHECK  EVIDENCE"), the fix under
// each failure and warning, and a summary line.
func (r *Report) Write(w io.Writer) {
	width := 0
	for _, x := range r.Results {
		width = max(width, len(x.Check))
	}
	for _, x := range r.Results {
		fmt.Fprintf(w, "%s %-*s  %s\n", x.Status.Symbol(), width, x.Check, x.Evidence)
		if x.Fix != "" && (x.Status == Fail || x.Status == Warn) {
			fmt.Fprintf(w, "  %*s  fix: %s\n", width, "", x.Fix)
		}
	}
	host := r.Host
	if host == "" {
		host = "this host"
	}
	fmt.Fprintf(w, "\n%s: %d ok, %d failed, %d warnings, %d skipped\n", host, r.Count(OK), r.Count(Fail), r.Count(Warn), r.Count(Skip))
}
