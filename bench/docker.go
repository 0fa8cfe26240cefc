package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"sync"
	"time"

	"github.com/vxmesh/vxmesh/dockerplugin/dockerharness"
)

// The docker area: vxmesh through its Docker plugin against Docker's own
// drivers, on real engines (dockerd 20.10 of docker.io) inside two lab
// hosts (docker_world.go), every pair measured in the same run,
// alternating:
//
//   - bridge attach: `docker run -d --network N --ip IP` until the
//     container answers ICMP from the host, on a vxmesh bridge network
//     (plugin) and on a Docker bridge network (dockerd runs with
//     --iptables=false, which same-host reach does not need);
//   - DNS answers/s from inside a container: vxmesh's resolver on the
//     network's gateway, Docker's embedded DNS (127.0.0.11) for a name it
//     knows itself, and for a container of the other engine (Docker
//     forwards it to vxmesh's resolver: the real path of a remote name);
//   - `-p` connect + one-byte request + answer, from the other host:
//     vxmesh's DNAT (ProgramExternalConnectivity) against Docker's
//     publishing, which with --iptables=false is its userland proxy
//     (docker-proxy);
//   - overlay attach → reachable from a container on the other engine,
//     and TCP throughput between the engines: the vxmesh overlay against
//     a Swarm overlay (swarm init on A, join on B, an attachable overlay
//     network, its VXLAN on port 4790 beside vxmesh's 4789).
//
// A sample's container is removed again (untimed); probes and servers run
// `sleep` while the bench opens its sockets in their namespaces
// (/proc/PID/ns/net).

func runDocker(ctx context.Context, r *Runner) error {
	if why := dockerSkipReason(exec.LookPath); why != "" {
		r.skip("docker", "", why)
		return nil
	}
	if err := dockerharness.Check(); err != nil {
		r.skip("docker", "", err.Error())
		return nil
	}
	r.logf("docker: two hosts, each with a dockerd (own mount namespace) and a vxmesh agent serving the plugin")
	start := time.Now()
	w, err := r.newDockerWorld(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := w.Close(); err != nil {
			r.failf("docker: remove the engines: %v", err)
		}
	}()
	r.logf("docker: engines and agents up in %s", time.Since(start).Round(100*time.Millisecond))
	steps := []struct {
		name string
		fn   func(context.Context, *Runner, *dockerWorld) error
	}{
		{"bridge attach", dkBridgeAttach},
		{"DNS", dkDNS},
		{"published port", dkPorts},
		{"overlay", dkOverlay},
	}
	var errs []error
	for _, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.logf("docker: %s", s.name)
		if err := s.fn(ctx, r, w); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// dockerSkipReason says why the docker area does not run ("" when it
// can); lookPath finds binaries (exec.LookPath).
func dockerSkipReason(lookPath func(string) (string, error)) string {
	if _, err := lookPath("dockerd"); err != nil {
		return "dockerd not installed"
	}
	return ""
}

// dkPath is one way of attaching a container: a Docker network on a host,
// the addresses its samples get, and where reachability is probed from.
type dkPath struct {
	name    string
	host    int
	network string
	ip      func(i int) netip.Addr
	probe   string // netns path or name
}

// dkSamples is the number of attach samples per path.
func (r *Runner) dkSamples() int {
	if r.opts.Quick {
		return 2
	}
	return min(r.opts.Samples, 10)
}

// attachPaths takes dkSamples samples of each path, alternating, and
// returns each path's times.
func (r *Runner) attachPaths(ctx context.Context, w *dockerWorld, tag string, paths []dkPath) ([][]time.Duration, Load, error) {
	out := make([][]time.Duration, len(paths))
	load, err := loaded(func() error {
		for i := range r.dkSamples() {
			for k := range paths {
				// Alternate which path goes first.
				j := k
				if i%2 == 1 {
					j = len(paths) - 1 - k
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				d, err := attachSampleDocker(ctx, w, paths[j], fmt.Sprintf("%s%d%d", tag, j, i), i)
				if err != nil {
					return fmt.Errorf("%s: %w", paths[j].name, err)
				}
				out[j] = append(out[j], d)
			}
		}
		return nil
	})
	return out, load, err
}

// attachSampleDocker runs one container on p and times `docker run -d`
// until its first ICMP echo reply to p.probe; the container is removed.
func attachSampleDocker(ctx context.Context, w *dockerWorld, p dkPath, name string, i int) (time.Duration, error) {
	ip := p.ip(i)
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, runErr = w.docker(ctx, p.host, "run", "-d", "--network", p.network, "--ip", ip.String(), "--name", name, dockerharness.Image, "sleep", "3600")
		if runErr != nil {
			cancel() // no echo will come
		}
	}()
	d, echoErr := firstEcho(ectx, p.probe, ip, start)
	wg.Wait()
	defer w.docker(context.WithoutCancel(ctx), p.host, "rm", "-f", name)
	if runErr != nil {
		return 0, runErr
	}
	return d, echoErr
}

// attachRows adds a p50 and a p99 row of subject against base.
func (r *Runner) attachRows(what string, subject, base string, sv, bv []time.Duration, load Load) {
	ss, bs := Summarize(sv), Summarize(bv)
	note := fmt.Sprintf("%d samples each, alternating", ss.N)
	r.add("docker", Row{Name: what + " p50: " + subject, Value: Ms(ss.P50), Unit: "ms", Baseline: base, BaselineValue: Ms(bs.P50), Load: load, Note: note})
	r.add("docker", Row{Name: what + " p99: " + subject, Value: Ms(ss.P99), Unit: "ms", Baseline: base, BaselineValue: Ms(bs.P99), Load: load, Note: note})
}

// dkBridgeAttach: docker run on a vxmesh bridge network vs Docker's.
func dkBridgeAttach(ctx context.Context, r *Runner, w *dockerWorld) error {
	host := w.hosts[0].h.NS
	paths := []dkPath{
		{name: "vxmesh bridge network (plugin)", network: "v" + dkWeb, probe: host, ip: func(i int) netip.Addr { return netip.AddrFrom4([4]byte{172, 30, 0, byte(100 + i)}) }},
		{name: "Docker bridge network", network: dkDockerBr, probe: host, ip: func(i int) netip.Addr { return netip.AddrFrom4([4]byte{172, 31, 0, byte(100 + i)}) }},
	}
	times, load, err := r.attachPaths(ctx, w, "ba", paths)
	if err != nil {
		return err
	}
	r.attachRows("docker run -d → answers ping from the host", paths[0].name, paths[1].name+" (Docker's bridge driver, --iptables=false)", times[0], times[1], load)
	return nil
}
