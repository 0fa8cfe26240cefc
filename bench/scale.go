package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/gossip/gossipbench"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// The scale area: gossip convergence and bytes with N in-process members,
// each bound to its own 127.0.1.x inside one fresh namespace, vxmesh's
// tuning against memberlist's LAN defaults in the same run.

// endpointsPerMember is the endpoints each member holds in the scale runs.
const endpointsPerMember = 10

// memberlistDefaults is memberlist's DefaultLANConfig timing with only the
// epidemic (no direct sends): the baseline of the gossip benchmarks.
func memberlistDefaults() gossip.Tuning {
	return gossip.Tuning{
		GossipInterval: 200 * time.Millisecond, GossipNodes: 3, RetransmitMult: 4,
		ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		SuspicionMult: 4, SuspicionMaxTimeoutMult: 6, PushPullInterval: 30 * time.Second,
		TCPTimeout: 10 * time.Second, DirectFanout: -1,
	}
}

// scalePoint is one size's vxmesh figures, for the plot.
type scalePoint struct {
	Members                    int
	P50, P99, BaseP50, BaseP99 time.Duration
	// BaseFormed is false when the baseline's cluster did not form (its
	// figures are zero and not plotted).
	BaseFormed           bool
	IdleBps, BaseIdleBps float64
	// Endpoints in the cluster and the largest push/pull payload sent.
	Endpoints, StateBytes int
}

// scaleGCPercent is the GOGC of the scale area's process while it runs.
// It is the harness's, not the product's: the area runs up to 500 members
// in one process, whose collector then pays for 500 agents' heaps at once
// (~40 % of the CPU at 300 members with the default 100), where each
// agent in production is a process with its own heap. docs/benchmarks.md
// states it next to the figures.
const scaleGCPercent = 400

func runScale(ctx context.Context, r *Runner) error {
	defer debug.SetGCPercent(debug.SetGCPercent(scaleGCPercent))
	sizes := []int{50, 200, 500}
	// Settle: a minute after the writes every member must still see every
	// member alive (a tuning whose repairs feed on themselves forms, then
	// comes apart: vxmesh's did at 200 members before gossip/bound.go).
	o := gossipbench.Options{Writes: 50, Rate: 5, Idle: 10 * time.Second, Timeout: 30 * time.Second, Endpoints: endpointsPerMember, Settle: time.Minute}
	if r.opts.Quick {
		sizes = []int{10}
		o = gossipbench.Options{Writes: 10, Rate: 20, Idle: time.Second, Timeout: 10 * time.Second, Endpoints: endpointsPerMember}
	}
	if len(r.opts.Members) > 0 {
		sizes = r.opts.Members
	}
	var errs []error
	for _, n := range sizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n > gossipbench.MaxNodes {
			r.skip("scale", fmt.Sprintf("%d members", n), fmt.Sprintf("the gossip bench harness runs at most %d members (gossipbench.MaxNodes)", gossipbench.MaxNodes))
			continue
		}
		if err := r.scaleOnce(ctx, n, o); err != nil {
			errs = append(errs, fmt.Errorf("%d members: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) scaleOnce(ctx context.Context, n int, o gossipbench.Options) error {
	ns, err := r.netns(fmt.Sprintf("gossip%d", n))
	if err != nil {
		return err
	}
	defer r.dropNetns(ns)
	h, err := netnsutil.Open(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	o.Nodes, o.Netns, o.MaxRSS = n, h, scaleMemLimit()
	o.Progress = func(line string) { r.logf("scale %d members: %s (%s)", n, line, selfUsage()) }
	// vxmesh's tuning runs first, so its figures never depend on what the
	// baseline's run leaves behind; a baseline that does not form within
	// the harness's limit is its measured result (the row says so), not a
	// failed run.
	var v, b gossipbench.Result
	var baseErr error
	load, err := loaded(func() error {
		var err error
		oo := o
		oo.Tuning = gossip.DefaultTuning()
		v, err = gossipbench.Convergence(ctx, oo)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = fmt.Errorf("vxmesh tuning: %w", err)
			r.logf("scale %d members: %v", n, err)
		} else {
			r.logf("scale %d members, vxmesh: %s", n, v)
		}
		// The baseline runs even when vxmesh's did not form: the log
		// then says whether memberlist's defaults do.
		oo.Tuning = memberlistDefaults()
		if b, baseErr = gossipbench.Convergence(ctx, oo); baseErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.logf("scale %d members, base: %v", n, baseErr)
			return err
		}
		r.logf("scale %d members, base: %s", n, b)
		return err
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d writes at %.0f/s, %d missed (baseline %d)", v.Writes, v.WritesPerSec, v.Missed, b.Missed)
	base := "memberlist LAN defaults, epidemic only"
	if baseErr != nil {
		note = fmt.Sprintf("%d writes at %.0f/s, %d missed; baseline not measured: %v", v.Writes, v.WritesPerSec, v.Missed, baseErr)
		base = "" // no baseline figures: the rows print none
	}
	rows := []Row{
		{Name: fmt.Sprintf("gossip convergence p50, %d members: vxmesh default tuning", n), Value: Ms(v.P50), Unit: "ms", BaselineValue: Ms(b.P50), Note: note},
		{Name: fmt.Sprintf("gossip convergence p99, %d members: vxmesh default tuning", n), Value: Ms(v.P99), Unit: "ms", BaselineValue: Ms(b.P99)},
		{Name: fmt.Sprintf("gossip bytes per member idle, %d members (window %s)", n, o.Idle), Value: v.IdleBytesPerNodeSec, Unit: "B/s", BaselineValue: b.IdleBytesPerNodeSec},
		{Name: fmt.Sprintf("gossip bytes per member under churn, %d members", n), Value: v.ChurnBytesPerNodeSec, Unit: "B/s", BaselineValue: b.ChurnBytesPerNodeSec},
	}
	if o.Settle > 0 {
		rows = append(rows, Row{Name: fmt.Sprintf("members not seeing every member alive %s after the writes, %d members", o.Settle, n),
			Value: float64(v.SettleBehind), Unit: "members", BaselineValue: float64(b.SettleBehind),
			Note: fmt.Sprintf("full-state exchanges meanwhile %d (baseline %d), goroutines %d (baseline %d)", v.SettleExchanges, b.SettleExchanges, v.Goroutines, b.Goroutines)})
	}
	rows = append(rows, Row{Name: fmt.Sprintf("cluster formed (harness: batches of members join, then every member holds every member and record), %d members", n),
		Value: v.Form.Seconds(), Unit: "s", BaselineValue: b.Form.Seconds(), Note: "process after both runs: " + selfUsage()})
	for _, row := range rows {
		row.Baseline, row.Load = base, load
		r.add("scale", row)
	}
	r.scale = append(r.scale, scalePoint{Members: n, P50: v.P50, P99: v.P99, BaseP50: b.P50, BaseP99: b.P99, BaseFormed: baseErr == nil,
		IdleBps: v.IdleBytesPerNodeSec, BaseIdleBps: b.IdleBytesPerNodeSec, Endpoints: n * endpointsPerMember, StateBytes: v.StateBytes})
	return nil
}

// selfUsage describes this process: OS threads, resident memory and CPU
// time so far, for the progress lines of runs with hundreds of members.
func selfUsage() string {
	var out []string
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && (f[0] == "Threads:" || f[0] == "VmRSS:") {
				out = append(out, strings.ToLower(strings.TrimSuffix(f[0], ":"))+" "+strings.Join(f[1:], " "))
			}
		}
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		out = append(out, "cpu "+cpu.Round(time.Second).String())
	}
	return strings.Join(out, ", ")
}

// scaleMemLimit is the resident memory at which a scale size stops: half
// the machine's memory. A cluster that does not form in one process grows
// by gigabytes a minute (500 members: 12 to 18.7 GB in two minutes on the
// 24 GB VM), and the machine is shared. 0 (no limit) when unknown.
func scaleMemLimit() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024 / 2
		}
	}
	return 0
}
