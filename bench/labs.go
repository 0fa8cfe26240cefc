package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/lab"
)

// labWait bounds a lab's convergence: on a loaded machine ten agents take
// a while.
const labWait = 90 * time.Second

func (r *Runner) labRoot() string { return filepath.Join(r.dir, "labs") }

// labName is "b<id>h<hosts>": lab names are letters and digits only.
func (r *Runner) labName(hosts int) string { return fmt.Sprintf("b%sh%d", r.id, hosts) }

// lab returns the run's lab of n hosts, building it on first use: real
// agents as `vxmesh lab up` runs them, the lab's example containers, all
// checks passing.
func (r *Runner) lab(ctx context.Context, n int) (*lab.Record, error) {
	if rec := r.labs[n]; rec != nil {
		return rec, nil
	}
	if r.opts.Binary == "" {
		return nil, errors.New("no vxmesh binary to run the lab's agents")
	}
	// One lab at a time: two would measure each other's agents.
	for m := range r.labs {
		if err := r.dropLab(m); err != nil {
			return nil, err
		}
	}
	r.logf("building a %d-host lab %q (agents: %s)", n, r.labName(n), r.opts.Binary)
	res, err := lab.Up(ctx, lab.UpOptions{
		Name: r.labName(n), Hosts: n, Root: r.labRoot(), Binary: r.opts.Binary,
		Wait: labWait, Out: io.Discard, Invoked: r.opts.Self,
	})
	if res != nil && res.Record != nil {
		r.labs[n] = res.Record // Close takes it down, whatever happened
	}
	if err != nil {
		return nil, fmt.Errorf("build %d-host lab: %w", n, err)
	}
	if !res.OK() {
		return nil, fmt.Errorf("%d-host lab did not converge in %s: %d/%d checks pass", n, labWait, lab.Passed(res.Checks), len(res.Checks))
	}
	r.logf("lab %q up in %s", r.labName(n), res.Elapsed.Round(100*time.Millisecond))
	return res.Record, nil
}

// client is the API client of a lab host.
func client(rec *lab.Record, host string) *api.Client {
	return api.NewClient(rec.Host(host).Socket)
}

// dropLab takes the run's lab of n hosts down.
func (r *Runner) dropLab(n int) error {
	if err := lab.Down(context.Background(), lab.DownOptions{Name: r.labName(n), Root: r.labRoot()}); err != nil {
		return fmt.Errorf("take the %d-host lab down: %w", n, err)
	}
	delete(r.labs, n)
	return nil
}
