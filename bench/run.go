package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// Options configure a run. The zero value of each field is its default.
type Options struct {
	// Areas to run, in this order; empty runs every area (AreaNames).
	Areas []string
	// Binary is the vxmesh binary the labs' agents run (required by the
	// areas that build labs).
	Binary string
	// Quick runs a tiny version of every area (seconds): the smoke test
	// and CI use it; the figures are not worth publishing.
	Quick bool
	// Stream is how long each TCP throughput test sends (default 3s).
	Stream time.Duration
	// Idle is the window over which idle cost is sampled (default 30s).
	Idle time.Duration
	// Samples is the number of attach samples per case (default 20).
	Samples int
	// Members are the scale area's cluster sizes (default 50, 200, 500).
	Members []int
	// Plot, when set, is where the SVG plot of convergence and cost is
	// written.
	Plot string
	// Invoked is the command line that started the run ("vxmesh bench
	// --quick"), for the report; Self is how the binary was called
	// ("vxmesh"), for each row's command.
	Invoked, Self string
	// Flags are the non-area flags the user gave, repeated in each row's
	// command so it reproduces the row.
	Flags []string
	// Progress receives one line per step (nil: discarded).
	Progress io.Writer
	// RunDir holds one directory per run (default DefaultRunDir).
	RunDir string
}

// DefaultRunDir holds the files of running benchmarks, one directory per
// run named by its id, with the pid of its process.
const DefaultRunDir = "/run/vxmesh-bench"

// NetnsPrefix starts the name of every namespace a run makes outside its
// labs: "vxb-<id>-<role>".
const NetnsPrefix = "vxb-"

// area is one part of the benchmark.
type area struct {
	name string
	help string
	run  func(ctx context.Context, r *Runner) error
}

// areas in the order a full run goes through them. The lab-based ones
// come first and share one 3-host lab (cost samples it after the data
// plane, quiet); attach then replaces it by a 10-host lab.
var areas = []area{
	{"dataplane", "TCP 1 and 4 streams, request latency, UDP at the MTU: overlay vs underlay vs kernel VXLAN; bridge vs veth", runDataplane},
	{"cost", "agent RSS, CPU and goroutines idle on a 3-host lab; gossip bytes per member; push/pull size at 10,000 endpoints", runCost},
	{"attach", "attach → reachable on the same host and from the others, p50/p99, 3 and 10 hosts, quiet, under churn (50/host) and with 100 containers on the host", runAttach},
	{"programming", "1k/10k/50k remote endpoints from empty and a no-op pass, vs bridge -batch and a shell loop", runProgramming},
	{"scale", "gossip convergence p50/p99 and bytes at 50, 200, 500 members vs memberlist's defaults", runScale},
	{"docker", "attach, DNS, -p and overlay through the vxmesh plugin vs Docker's bridge, embedded DNS, docker-proxy and Swarm (needs docker.io)", runDocker},
}

// AreaNames returns every area's name, in run order.
func AreaNames() []string {
	var out []string
	for _, a := range areas {
		out = append(out, a.name)
	}
	return out
}

// AreaHelp returns "name  help" lines for every area.
func AreaHelp() string {
	var b strings.Builder
	for _, a := range areas {
		fmt.Fprintf(&b, "  %-12s %s\n", a.name, a.help)
	}
	return b.String()
}

// Runner is one run in progress: its options, rows, and the namespaces
// and labs it made (removed by Close).
type Runner struct {
	opts Options
	id   string
	dir  string // RunDir/id
	rows []Row
	fail []string

	labs map[int]*lab.Record // by host count
	nss  []string            // namespaces made outside labs

	// Figures kept for the plot.
	scale []scalePoint
	cost  []costPoint
}

// Run runs the areas of opts and returns the report. Errors of one area
// become a failure line of the report and the run goes on; the error
// returned is for what stops the whole run (bad options, not root, an
// interrupt) or, at the end, any area's failure, and any failure to
// remove what the run built.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	names, err := selectAreas(opts.Areas)
	if err != nil {
		return nil, err
	}
	opts = withDefaults(opts)
	if err := checkPlotPath(opts.Plot); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: builds network namespaces")
	}
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove what the run built: %w", cerr))
		}
	}()
	rep = &Report{Command: opts.Invoked, Started: time.Now(), Areas: names, Machine: machine()}
	rep.Load.Before = ReadLoad()
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		a := areaByName(name)
		r.logf("%s: %s", a.name, a.help)
		start := time.Now()
		if err := a.run(ctx, r); err != nil {
			r.failf("%s: %v", a.name, err)
		}
		r.logf("%s: done in %s", a.name, time.Since(start).Round(100*time.Millisecond))
		if !labAfter(names, name) {
			r.dropLabs()
		}
	}
	rep.Load.After = ReadLoad()
	rep.Elapsed = time.Since(rep.Started)
	rep.Rows = r.rows
	rep.Failures = r.fail
	if err := r.writePlot(rep); err != nil {
		r.failf("plot: %v", err)
		rep.Failures = r.fail
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("interrupted: %w", err)
	}
	if len(r.fail) > 0 {
		return rep, fmt.Errorf("%d of the measurements failed (see the report)", len(r.fail))
	}
	return rep, nil
}

// labAreas are the areas that run on labs.
var labAreas = []string{"dataplane", "cost", "attach"}

// labAfter reports whether an area after name in names runs on a lab.
func labAfter(names []string, name string) bool {
	i := slices.Index(names, name)
	for _, n := range names[i+1:] {
		if slices.Contains(labAreas, n) {
			return true
		}
	}
	return false
}

// dropLabs takes every lab of the run down, so later areas measure on a
// machine without idle agents.
func (r *Runner) dropLabs() {
	for n := range r.labs {
		if err := r.dropLab(n); err != nil {
			r.failf("%v", err)
		}
	}
}

func withDefaults(o Options) Options {
	if o.Stream <= 0 {
		o.Stream = 3 * time.Second
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Second
	}
	if o.Samples <= 0 {
		o.Samples = 20
	}
	if o.Quick {
		o.Stream = min(o.Stream, 300*time.Millisecond)
		o.Idle = min(o.Idle, 2*time.Second)
		o.Samples = min(o.Samples, 3)
	}
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.Self == "" {
		o.Self = "vxmesh"
	}
	if o.Invoked == "" {
		o.Invoked = o.Self + " bench"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// selectAreas checks the requested areas and returns them in run order
// (every area when none is asked for).
func selectAreas(want []string) ([]string, error) {
	if len(want) == 0 {
		return AreaNames(), nil
	}
	var out []string
	for _, a := range areas {
		if slices.Contains(want, a.name) {
			out = append(out, a.name)
		}
	}
	for _, w := range want {
		if areaByName(w) == nil {
			return nil, fmt.Errorf("unknown area %q: want %s", w, strings.Join(AreaNames(), ", "))
		}
	}
	return out, nil
}

func areaByName(name string) *area {
	for i := range areas {
		if areas[i].name == name {
			return &areas[i]
		}
	}
	return nil
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

func newRunner(opts Options) (*Runner, error) {
	if err := Reap(opts.RunDir, opts.Progress); err != nil {
		fmt.Fprintf(opts.Progress, "bench: reap earlier runs: %v\n", err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make run id: %w", err)
	}
	r := &Runner{opts: opts, id: hex.EncodeToString(b[:]), labs: map[int]*lab.Record{}}
	r.dir = filepath.Join(opts.RunDir, r.id)
	if err := os.MkdirAll(filepath.Join(r.dir, "labs"), 0o755); err != nil {
		return nil, fmt.Errorf("make run directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "pid"), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return nil, fmt.Errorf("record run owner: %w", err)
	}
	return r, nil
}

func (r *Runner) logf(format string, a ...any) {
	fmt.Fprintf(r.opts.Progress, "bench: "+format+"\n", a...)
}

func (r *Runner) failf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.fail = append(r.fail, msg)
	r.logf("FAILED %s", msg)
}

// command is the command that reproduces a row of area.
func (r *Runner) command(area string, extra ...string) string {
	parts := append([]string{r.opts.Self, "bench", area}, r.opts.Flags...)
	return strings.Join(append(parts, extra...), " ")
}

// add appends a row, filling its area's command when empty and the ratio.
func (r *Runner) add(area string, row Row) {
	row.Area = area
	if row.Command == "" {
		row.Command = r.command(area)
	}
	if row.Ratio == 0 && row.Baseline != "" {
		row.Ratio = Ratio(row.Value, row.BaselineValue)
	}
	r.rows = append(r.rows, row)
}

// skip records that a row (or a whole area, name "") was not measured.
func (r *Runner) skip(area, name, why string) {
	row := Row{Area: area, Name: name, Skipped: why, Command: r.command(area)}
	r.rows = append(r.rows, row)
	r.logf("%s", skipLine(row))
}

// loaded runs fn and returns the load average before and after it.
func loaded(fn func() error) (Load, error) {
	l := Load{Before: ReadLoad()}
	err := fn()
	l.After = ReadLoad()
	return l, err
}

// netns makes the namespace "vxb-<id>-<role>" with lo up; Close deletes
// it.
func (r *Runner) netns(role string) (string, error) {
	name := NetnsPrefix + r.id + "-" + role
	if err := topo.CreateNetns(name); err != nil {
		return "", err
	}
	r.nss = append(r.nss, name)
	return name, nil
}

// dropNetns deletes a namespace made by netns before Close.
func (r *Runner) dropNetns(name string) error {
	if err := netnsutil.Delete(name); err != nil {
		return err
	}
	r.nss = slices.DeleteFunc(r.nss, func(s string) bool { return s == name })
	return nil
}

// Close removes every lab and namespace of the run and its directory.
func (r *Runner) Close() error {
	var errs []error
	for n := range r.labs {
		if err := r.dropLab(n); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(r.nss) - 1; i >= 0; i-- {
		if err := netnsutil.Delete(r.nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	r.nss = nil
	if len(errs) == 0 {
		os.RemoveAll(r.dir)
	}
	return errors.Join(errs...)
}
