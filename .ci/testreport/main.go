// Command testreport reads `go test -json` events on stdin, prints the plain
// `go test -v` text as it arrives (and to -log), and ends with a summary:
// packages, tests passed/failed/skipped, every skip with its reason.
//
// It exits 1 when a package or test failed, when no test ran, or — with
// -strict-skips, which .ci/run sets when running as root — when a test
// skipped for a reason that does not match -allow-skip (by default a
// missing kernel feature: "kernel lacks ...").
//
// It lives in .ci/ (ignored by ./...) and uses only the standard library, so
// it builds even when a package of the module does not.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	ImportPath  string // build-output, build-fail
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

type testKey struct{ pkg, test string }

type pkgResult struct {
	action  string // pass, fail, skip ("no test files")
	elapsed float64
	build   bool // failed to build
}

type report struct {
	out      io.Writer
	pkgs     map[string]*pkgResult
	pkgOrder []string
	output   map[testKey][]string // a test's own lines, for skip and fail reasons
	result   map[testKey]string
	order    []testKey
}

func main() {
	logPath := flag.String("log", "", "also write the `go test -v` text here")
	allow := flag.String("allow-skip", `(?i)kernel lacks`, "regexp a skip reason must match under -strict-skips")
	strict := flag.Bool("strict-skips", false, "fail on any skip whose reason does not match -allow-skip")
	flag.Parse()
	allowRE, err := regexp.Compile(*allow)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: -allow-skip: %v\n", err)
		os.Exit(2)
	}
	var out io.Writer = os.Stdout
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	r := &report{out: out, pkgs: map[string]*pkgResult{}, output: map[testKey][]string{}, result: map[testKey]string{}}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "testreport: read: %v\n", err)
		os.Exit(2)
	}
	if !r.summary(os.Stdout, *strict, allowRE) {
		os.Exit(1)
	}
}

func (r *report) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		// Not an event (go vet or the go command itself talking): pass it on.
		fmt.Fprintf(r.out, "%s\n", b)
		return
	}
	pkg := e.Package
	if pkg == "" {
		pkg = e.ImportPath
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.out, e.Output)
		return
	case "build-fail":
		r.pkg(pkg).build = true
		return
	case "output":
		fmt.Fprint(r.out, e.Output)
		if e.Test != "" {
			k := testKey{pkg, e.Test}
			if t := strings.TrimSpace(e.Output); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
				r.output[k] = append(r.output[k], t)
			}
		}
		return
	case "pass", "fail", "skip":
	default:
		return
	}
	if e.Test == "" {
		p := r.pkg(pkg)
		p.action, p.elapsed = e.Action, e.Elapsed
		if e.FailedBuild != "" {
			p.build = true
		}
		return
	}
	k := testKey{pkg, e.Test}
	if _, seen := r.result[k]; !seen {
		r.order = append(r.order, k)
	}
	r.result[k] = e.Action
}

func (r *report) pkg(name string) *pkgResult {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgResult{}
		r.pkgs[name] = p
		r.pkgOrder = append(r.pkgOrder, name)
	}
	return p
}

// reason is the last lines a test printed, which for a skip is its reason.
func (r *report) reason(k testKey) string {
	lines := r.output[k]
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// summary prints the summary and reports whether the run is a success.
func (r *report) summary(w io.Writer, strict bool, allow *regexp.Regexp) bool {
	ok := true
	fmt.Fprintf(w, "\n==================== test summary ====================\n")
	slices.Sort(r.pkgOrder)
	var npass, nfail, nnone int
	for _, name := range r.pkgOrder {
		p := r.pkgs[name]
		var status string
		switch {
		case p.build:
			status, ok = "FAIL (build)", false
			nfail++
		case p.action == "fail":
			status, ok = "FAIL", false
			nfail++
		case p.action == "skip":
			status = "no tests"
			nnone++
		case p.action == "pass":
			status = "ok"
			npass++
		default:
			status, ok = "INCOMPLETE (no result: crashed or killed?)", false
			nfail++
		}
		fmt.Fprintf(w, "  %7.1fs  %-12s %s\n", p.elapsed, status, name)
	}
	fmt.Fprintf(w, "packages: %d ok, %d failed, %d without tests\n", npass, nfail, nnone)

	var passed, failed, skipped int
	var failures, skips, badSkips []string
	for _, k := range r.order {
		switch r.result[k] {
		case "pass":
			passed++
		case "fail":
			failed++
			failures = append(failures, fmt.Sprintf("  FAIL %s %s", short(k.pkg), k.test))
		case "skip":
			skipped++
			why := r.reason(k)
			line := fmt.Sprintf("  SKIP %s %s: %s", short(k.pkg), k.test, why)
			skips = append(skips, line)
			if strict && !allow.MatchString(why) {
				badSkips = append(badSkips, line)
			}
		}
	}
	if len(failures) > 0 {
		ok = false
		fmt.Fprintf(w, "failed tests:\n%s\n", strings.Join(failures, "\n"))
	}
	if len(skips) > 0 {
		fmt.Fprintf(w, "skipped tests:\n%s\n", strings.Join(skips, "\n"))
	}
	if len(badSkips) > 0 {
		ok = false
		fmt.Fprintf(w, "FAIL: running as root, yet these tests skipped for a reason other than a missing kernel feature (allowed: %s):\n%s\n",
			allow, strings.Join(badSkips, "\n"))
	}
	if passed+failed == 0 {
		ok = false
		fmt.Fprintf(w, "FAIL: no test ran\n")
	}
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	return ok
}

func short(pkg string) string { return strings.TrimPrefix(pkg, "github.com/vxmesh/vxmesh/") }
