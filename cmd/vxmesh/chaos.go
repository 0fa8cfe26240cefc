package main

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vxmesh/vxmesh/lab"
)

// `vxmesh lab chaos`: flags and the exit status; the run is lab.Chaos.

func init() {
	register(&command{
		name:  "lab chaos",
		short: "partition, kill and churn a lab at random (seeded), checking every heal",
		long: `Runs a random schedule, fixed by --seed, on lab LAB (which 'vxmesh lab up'
built): partitions (one host cut off, the hosts in halves, two groups
joined only through a bridge host) made with iptables DROP rules inside
the host namespaces, agents killed with SIGKILL and restarted, and
containers added, removed and moved to the other side of a cut through
the agents' APIs. After each heal it waits until every host's gossip
table and VXLAN FDB and neighbour entries equal the live endpoints, and
prints how long that took; at the end p50 and p99.

Exit status 1 when a heal did not converge within --timeout (the seed to
reproduce it is printed). Chaos containers are removed at the end.`,
		flags: func(fs *flag.FlagSet) {
			labNameFlags(fs)
			fs.Uint64("seed", 0, "`SEED` of the schedule (0: pick one from the clock and print it)")
			fs.Duration("duration", time.Minute, "how long to keep starting faults")
			fs.Duration("timeout", lab.DefaultChaosTimeout, "a heal not converged after this is a violation")
			fs.Duration("target", lab.DefaultChaosTarget, "p99 convergence goal to report against")
		},
		run: runLabChaos,
	})
}

func runLabChaos(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	name := cliString(e.fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return usagef("--name: %v", err)
	}
	seed, err := strconv.ParseUint(cliString(e.fs, "seed"), 10, 64)
	if err != nil {
		return usagef("--seed: %v", err)
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	var durs [3]time.Duration
	for i, f := range []string{"duration", "timeout", "target"} {
		d, _ := time.ParseDuration(cliString(e.fs, f))
		if d <= 0 {
			return usagef("--%s %s: want a positive duration", f, cliString(e.fs, f))
		}
		durs[i] = d
	}
	if err := labNeedRoot(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := lab.Chaos(ctx, lab.ChaosOptions{Name: name, Root: cliString(e.fs, "root"), Seed: seed,
		Duration: durs[0], ConvergeTimeout: durs[1], Target: durs[2], Out: e.stdout})
	if err != nil {
		return fmt.Errorf("chaos seed %d: %w", seed, err)
	}
	if n := res.Violations(); n > 0 {
		return exitCodeError{code: exitError, msg: fmt.Sprintf("vxmesh lab chaos: %d heals did not converge; reproduce with --seed %d", n, seed)}
	}
	return nil
}
