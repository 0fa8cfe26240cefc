package bench

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
	"github.com/vxmesh/vxmesh/overlay/overlaybench"
)

// The programming area: N remote endpoints (N unicast FDB entries, N/100
// flood entries, N neighbours) written into an empty VXLAN device by
// vxmesh's overlay.Sync, by `bridge -batch` + `ip -batch`, and by a shell
// loop of one command per entry; then a pass that finds nothing to do.

// loopCap is the largest size the shell loop runs at: it takes ~15 s per
// 1,000 endpoints, so larger sizes are extrapolated from its rate there
// (and said so in the row).
const loopCap = 1000

func runProgramming(ctx context.Context, r *Runner) error {
	sizes := []int{1000, 10000, 50000}
	noop := 10000
	if r.opts.Quick {
		sizes, noop = []int{200}, 200
	}
	ns, err := r.netns("prog")
	if err != nil {
		return err
	}
	defer r.dropNetns(ns)
	d, err := progDevice(ns)
	if err != nil {
		return err
	}
	var loopRate float64 // entries per second of the loop at its largest run
	for _, n := range sizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res, load, err := programOnce(ns, d, n, n <= loopCap, r.dir)
		if err != nil {
			return fmt.Errorf("%d endpoints: %w", n, err)
		}
		sync, batch := res["sync"], res["batch"]
		name := fmt.Sprintf("program %d endpoints (%d kernel entries) from empty: vxmesh", n, sync.Entries)
		note := fmt.Sprintf("%.0f entries/s", sync.PerSecond())
		r.add("programming", Row{Name: name, Value: Ms(sync.Duration), Unit: "ms", Baseline: "bridge -batch + ip -batch",
			BaselineValue: Ms(batch.Duration), Load: load, Note: note})
		if loop, ok := res["loop"]; ok {
			loopRate = loop.PerSecond()
			r.add("programming", Row{Name: name, Value: Ms(sync.Duration), Unit: "ms", Baseline: "shell loop, one bridge/ip command per entry",
				BaselineValue: Ms(loop.Duration), Load: load, Note: note})
		} else if loopRate > 0 {
			est := time.Duration(float64(sync.Entries) / loopRate * float64(time.Second))
			r.add("programming", Row{Name: name, Value: Ms(sync.Duration), Unit: "ms", Baseline: fmt.Sprintf("shell loop, extrapolated from its %d-endpoint rate (not run)", loopCap),
				BaselineValue: Ms(est), Load: load, Note: note})
		}
		if n == noop {
			rs := res["resync"]
			r.add("programming", Row{Name: fmt.Sprintf("no-op pass at %d endpoints (dump + plan, nothing written): vxmesh", n),
				Value: Ms(rs.Duration), Unit: "ms", Baseline: "programming the same from empty", BaselineValue: Ms(sync.Duration), Load: load})
			if err := mirrorRows(r, ns, d, n, rs); err != nil {
				return fmt.Errorf("%d endpoints, mirror: %w", n, err)
			}
		}
	}
	return nil
}

// progDevice makes a bridge and a VXLAN device in ns, enough to program
// entries (no traffic).
func progDevice(ns string) (overlay.Device, error) {
	d := overlay.Device{Name: "bench", VNI: 4200, Local: netip.MustParseAddr("198.18.0.1"), MTU: 1450, Bridge: "vxb-bench"}
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return d, err
	}
	defer nsh.Close()
	h, err := overlay.NewHandle(nsh)
	if err != nil {
		return d, err
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: d.Bridge}}); err != nil {
		return d, fmt.Errorf("add bridge %q in %q: %w", d.Bridge, ns, err)
	}
	if _, err := overlay.EnsureDevice(h, d); err != nil {
		return d, err
	}
	return d, nil
}

// programOnce programs n endpoints from an empty device each way (-batch,
// the loop when asked, then Sync and the no-op Sync after it) and returns
// the results by method and the load around all of them.
func programOnce(ns string, d overlay.Device, n int, loop bool, dir string) (map[string]overlaybench.Result, Load, error) {
	eps := overlaybench.Endpoints(n, max(n/100, 1))
	link := d.LinkName()
	steps := []struct {
		name  string
		reset bool
		run   func() (overlaybench.Result, error)
	}{
		{"batch", true, func() (overlaybench.Result, error) { return overlaybench.Batch(ns, link, eps, dir) }},
		{"loop", true, func() (overlaybench.Result, error) { return overlaybench.ScriptLoop(ns, link, eps, dir) }},
		{"sync", true, func() (overlaybench.Result, error) { return overlaybench.SyncPipelined(ns, link, eps) }},
		{"resync", false, func() (overlaybench.Result, error) { return overlaybench.Resync(ns, link, eps) }},
	}
	out := map[string]overlaybench.Result{}
	load, err := loaded(func() error {
		for _, s := range steps {
			if s.name == "loop" && !loop {
				continue
			}
			if s.reset {
				if err := overlaybench.Reset(ns, d); err != nil {
					return err
				}
			}
			res, err := s.run()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			out[s.name] = res
		}
		return nil
	})
	return out, load, err
}

// mirrorRows adds what the agent's passes cost between resyncs, with the
// watcher's mirror of the device (overlay.Mirror), on the device programmed
// with n endpoints: an unchanged pass against the dumping one (dump), and
// a single added endpoint against the same planned from a dump.
func mirrorRows(r *Runner, ns string, d overlay.Device, n int, dump overlaybench.Result) error {
	eps := overlaybench.Endpoints(n, max(n/100, 1))
	var noop, add, addDump overlaybench.Result
	load, err := loaded(func() error {
		var err error
		noop, add, addDump, err = overlaybench.MirrorPasses(ns, d.LinkName(), eps)
		return err
	})
	if err != nil {
		return err
	}
	r.add("programming", Row{Name: fmt.Sprintf("no-op pass at %d endpoints with the watcher's mirror (what the agent runs between resyncs): vxmesh", n),
		Value: Ms(noop.Duration), Unit: "ms", Baseline: "the same pass dumping the kernel (row above)", BaselineValue: Ms(dump.Duration), Load: load})
	r.add("programming", Row{Name: fmt.Sprintf("one endpoint added at %d endpoints with the mirror (an attach on another host): vxmesh", n),
		Value: Ms(add.Duration), Unit: "ms", Baseline: "the same planned against a dump of the kernel", BaselineValue: Ms(addDump.Duration), Load: load})
	return nil
}
