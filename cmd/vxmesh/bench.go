package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxmesh/vxmesh/bench"
)

// `vxmesh bench`: flags and printing; the measuring is package bench.

func init() {
	register(&command{
		name:  "bench",
		args:  "[AREA...]",
		short: "measure data plane, attach, programming, scale and cost against baselines in one run",
		long: `Builds its own namespaces (a lab of real agents, plus baselines) on a
private underlay in 198.18.0.0/15, runs every comparison of the chosen
areas (all when none is named) and prints a Markdown table: each figure
next to its baseline measured in the same run, the ratio, the machine's
load before and after, and the command that reproduces it. Removes
everything it built, also when interrupted. Needs root.

areas:
` + bench.AreaHelp(),
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the report as JSON")
			fs.Bool("quick", false, "a tiny version of every area (seconds; figures not worth publishing)")
			fs.Duration("stream", 3*time.Second, "how long each TCP throughput test sends")
			fs.Duration("idle", 30*time.Second, "window over which idle agent cost is sampled (e.g. 10m)")
			fs.Int("samples", 20, "attach samples per case")
			fs.String("members", "", "scale area's cluster sizes, e.g. `10,50,200` (default 50,200,500)")
			fs.String("plot", "", "write an SVG plot of convergence and cost to `FILE`")
			fs.Bool("v", false, "print progress to stderr")
			fs.String("from", "", "do not measure: print the report saved with --json in `FILE` (e.g. as Markdown for docs/)")
		},
		run: runBench,
	})
}

func runBench(e *env, args []string) error {
	if from := benchGet[string](e.fs, "from"); from != "" {
		return benchReprint(e, from, args)
	}
	for _, a := range args {
		if !slices.Contains(bench.AreaNames(), a) {
			return usagef("unknown area %q: want %s", a, strings.Join(bench.AreaNames(), ", "))
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: the benchmark builds network namespaces")
	}
	members, err := benchInts(benchGet[string](e.fs, "members"))
	if err != nil {
		return usagef("--members: %v", err)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the vxmesh binary: %w", err)
	}
	self := filepath.Base(os.Args[0])
	opts := bench.Options{
		Areas:   args,
		Binary:  bin,
		Quick:   benchGet[bool](e.fs, "quick"),
		Stream:  benchGet[time.Duration](e.fs, "stream"),
		Idle:    benchGet[time.Duration](e.fs, "idle"),
		Samples: benchGet[int](e.fs, "samples"),
		Plot:    benchGet[string](e.fs, "plot"),
		Members: members,
		Self:    self,
		Flags:   benchFlags(e.fs),
	}
	opts.Invoked = strings.Join(append([]string{self, "bench"}, append(opts.Flags, args...)...), " ")
	// The packages under test log through slog's default logger (e.g.
	// overlay.Sync's "synced vxlan entries"): that is progress, not output.
	logTo := io.Discard
	if benchGet[bool](e.fs, "v") {
		opts.Progress, logTo = e.stderr, e.stderr
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, opts)
	if rep != nil {
		if werr := benchPrint(e, rep); werr != nil {
			return werr
		}
	}
	return err
}

// benchReprint prints a report saved with --json.
func benchReprint(e *env, file string, args []string) error {
	if len(args) > 0 {
		return usagef("--from takes no areas")
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return benchPrint(e, rep)
}

func benchPrint(e *env, rep *bench.Report) error {
	if benchGet[bool](e.fs, "json") {
		return rep.WriteJSON(e.stdout)
	}
	rep.WriteMarkdown(e.stdout)
	return nil
}

// benchGet returns a flag's value.
func benchGet[T any](fs *flag.FlagSet, name string) T {
	var zero T
	f := fs.Lookup(name)
	if f == nil {
		return zero
	}
	v, _ := f.Value.(flag.Getter).Get().(T)
	return v
}

// benchFlags are the measuring flags the user set (not --json, --v), as
// "--name=value", so each row's command reproduces it.
func benchFlags(fs *flag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "json", "v", "plot", "from":
			return
		}
		if b, ok := f.Value.(flag.Getter).Get().(bool); ok && b {
			out = append(out, "--"+f.Name)
			return
		}
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	return out
}

// benchInts parses "10,50,200" (empty: none).
func benchInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("%q: want a list of sizes of at least 2, like 10,50,200", s)
		}
		out = append(out, n)
	}
	return out, nil
}
