package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/agent/dns/dnsload"
	"github.com/vxmesh/vxmesh/dockerplugin/dockerharness"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// The docker area's DNS, -p and overlay measures (see docker.go).

// dkCtr is a running container the bench opens sockets in.
type dkCtr struct {
	ns string     // /proc/PID/ns/net
	ip netip.Addr // on the network it was started on
}

// runCtr starts a `sleep` container on host i and network, and returns
// its namespace and address there.
func (w *dockerWorld) runCtr(ctx context.Context, i int, network, name string, extra ...string) (dkCtr, error) {
	args := append([]string{"run", "-d", "--network", network, "--name", name}, extra...)
	if _, err := w.docker(ctx, i, append(args, dockerharness.Image, "sleep", "3600")...); err != nil {
		return dkCtr{}, err
	}
	ns, err := w.netnsOf(ctx, i, name)
	if err != nil {
		return dkCtr{}, err
	}
	if err := fastARP(ns); err != nil { // it may be a probe
		return dkCtr{}, err
	}
	out, err := w.docker(ctx, i, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").IPAddress}}`, name)
	if err != nil {
		return dkCtr{}, err
	}
	ip, err := netip.ParseAddr(out)
	if err != nil {
		return dkCtr{}, fmt.Errorf("container %s on %s: address %q: %w", name, network, out, err)
	}
	return dkCtr{ns: ns, ip: ip}, nil
}

// oneLine is err's message on one line, for a skip line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// waitFor polls fn every 50 ms until it succeeds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// dkDNSQuery is one DNS load: a question to a server from a namespace.
type dkDNSQuery struct {
	name   string
	server netip.AddrPort
	q      string
}

// lookupA asks server for q's A record from inside ns.
func lookupA(ns string, server netip.AddrPort, q string) error {
	return netnsutil.Do(ns, func() error {
		c := &mdns.Client{Timeout: time.Second}
		m := new(mdns.Msg).SetQuestion(q, mdns.TypeA)
		resp, _, err := c.Exchange(m, server.String())
		if err != nil {
			return fmt.Errorf("ask %s for %s: %w", server, q, err)
		}
		if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) == 0 {
			return fmt.Errorf("ask %s for %s: %s, %d answers", server, q, mdns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
		return nil
	})
}

// dkDNS: answers/s in a container on the overlay of engine A.
func dkDNS(ctx context.Context, r *Runner, w *dockerWorld) error {
	gw := netip.AddrPortFrom(netip.MustParseAddr("10.200.0.1"), 53)
	docker := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.11"), 53)
	mesh := "v" + dkMesh
	asker, err := w.runCtr(ctx, 0, mesh, "dq", "--dns", gw.Addr().String())
	if err != nil {
		return err
	}
	if _, err := w.runCtr(ctx, 0, mesh, "dt"); err != nil {
		return err
	}
	if _, err := w.runCtr(ctx, 1, mesh, "dr"); err != nil {
		return err
	}
	queries := []dkDNSQuery{
		{"Docker's embedded DNS (127.0.0.11), a container of the same engine", docker, "dt."},
		{"vxmesh's resolver on the gateway (docker run --dns 10.200.0.1), a container of the same engine", gw, "dt."},
		{"127.0.0.11 forwarding to vxmesh's resolver, a container of the other engine", docker, "dr."},
	}
	for _, q := range queries {
		if err := waitFor(ctx, 20*time.Second, func() error { return lookupA(asker.ns, q.server, q.q) }); err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
	}
	d := 2 * time.Second
	if r.opts.Quick {
		d = 300 * time.Millisecond
	}
	qps := make([][]float64, len(queries))
	load, err := loaded(func() error {
		for range r.rounds() {
			for i, q := range queries {
				res, err := dnsload.Run(ctx, dnsload.Options{Netns: asker.ns, Server: q.server, Name: q.q, Duration: d})
				if err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
				qps[i] = append(qps[i], res.QPS)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("4 clients, %s per round, median of %d rounds", d, r.rounds())
	for _, i := range []int{1, 2} {
		r.add("docker", Row{Name: "DNS answers/s in a container: " + queries[i].name, Value: Median(qps[i]), Unit: "answers/s",
			Baseline: queries[0].name, BaselineValue: Median(qps[0]), Load: load, Note: note})
	}
	return nil
}

// serveOneByte answers every connection on ln with the byte it sends,
// then closes it: the server side of a connect + request measure.
func serveOneByte(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				c.Write(b)
			}
		}()
	}
}

// listenPort80 listens on 0.0.0.0:80 inside ns.
func listenPort80(ns string) (net.Listener, error) {
	var ln net.Listener
	err := netnsutil.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", "0.0.0.0:80")
		return err
	})
	return ln, err
}

// connectRequest connects from ns to to, sends one byte and reads it
// back, and returns how long that took.
func connectRequest(ns string, to netip.AddrPort) (time.Duration, error) {
	t := time.Now()
	c, err := dial(ns, to)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, fmt.Errorf("answer from %s: %w", to, err)
	}
	return time.Since(t), nil
}

// dkPorts: -p connect + request from the other host.
func dkPorts(ctx context.Context, r *Runner, w *dockerWorld) error {
	type pub struct {
		name, network, ctr string
		port               uint16
	}
	pubs := []pub{
		{"vxmesh -p (DNAT, ProgramExternalConnectivity)", "v" + dkWeb, "pv", 18080},
		{"Docker's -p (docker-proxy: dockerd runs with --iptables=false)", dkDockerBr, "pd", 18081},
	}
	client := w.hosts[1].h.NS
	var tos []netip.AddrPort
	for _, p := range pubs {
		c, err := w.runCtr(ctx, 0, p.network, p.ctr, "-p", fmt.Sprintf("%d:80", p.port))
		if err != nil {
			return err
		}
		ln, err := listenPort80(c.ns)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		defer ln.Close()
		go serveOneByte(ln)
		to := netip.AddrPortFrom(w.hosts[0].h.Addr, p.port)
		if err := waitFor(ctx, 20*time.Second, func() error { _, err := connectRequest(client, to); return err }); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		tos = append(tos, to)
	}
	n, block := 400, 20
	if r.opts.Quick {
		n = 40
	}
	times := make([][]time.Duration, len(pubs))
	load, err := loaded(func() error {
		for len(times[0]) < n {
			for i, to := range tos {
				for range block {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					d, err := connectRequest(client, to)
					if err != nil {
						return fmt.Errorf("%s: %w", pubs[i].name, err)
					}
					times[i] = append(times[i], d)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s, b := Summarize(times[0]), Summarize(times[1])
	note := fmt.Sprintf("%d each, in alternating blocks of %d", s.N, block)
	what := "-p: connect + 1-byte request/answer from the other host"
	r.add("docker", Row{Name: what + " p50: " + pubs[0].name, Value: Us(s.P50), Unit: "µs", Baseline: pubs[1].name, BaselineValue: Us(b.P50), Load: load, Note: note})
	r.add("docker", Row{Name: what + " p99: " + pubs[0].name, Value: Us(s.P99), Unit: "µs", Baseline: pubs[1].name, BaselineValue: Us(b.P99), Load: load, Note: note})
	return nil
}

// swarm makes engine 0 a Swarm manager and engine 1 a worker, and adds
// the attachable overlay dkSwarmOv.
func (w *dockerWorld) swarm(ctx context.Context) error {
	a, b := w.hosts[0].h.Addr.String(), w.hosts[1].h.Addr.String()
	if _, err := w.docker(ctx, 0, "swarm", "init", "--advertise-addr", a, "--listen-addr", a+":2377", "--data-path-port", dkSwarmPort); err != nil {
		return err
	}
	token, err := w.docker(ctx, 0, "swarm", "join-token", "-q", "worker")
	if err != nil {
		return err
	}
	if _, err := w.docker(ctx, 1, "swarm", "join", "--token", token, "--advertise-addr", b, "--listen-addr", b+":2377", a+":2377"); err != nil {
		return err
	}
	_, err = w.docker(ctx, 0, "network", "create", "-d", "overlay", "--attachable", "--subnet", dkSwarmNt, dkSwarmOv)
	return err
}

// dkOverlay: attach → reachable from the other engine, and throughput,
// vxmesh's overlay against Swarm's.
func dkOverlay(ctx context.Context, r *Runner, w *dockerWorld) error {
	mesh := "v" + dkMesh
	pv, err := w.runCtr(ctx, 1, mesh, "pbv")
	if err != nil {
		return err
	}
	paths := []dkPath{{name: "vxmesh overlay (plugin)", host: 0, network: mesh, probe: pv.ns,
		ip: func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 200, 60, byte(100 + i)}) }}}
	var ps dkCtr
	swarmErr := w.swarm(ctx)
	if swarmErr == nil {
		ps, swarmErr = w.runCtr(ctx, 1, dkSwarmOv, "pbs")
	}
	if swarmErr != nil {
		r.skip("docker", "Swarm overlay", oneLine(swarmErr))
	} else {
		paths = append(paths, dkPath{name: "Swarm overlay (attachable)", host: 0, network: dkSwarmOv, probe: ps.ns,
			ip: func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 220, 60, byte(100 + i)}) }})
	}
	times, load, err := r.attachPaths(ctx, w, "oa", paths)
	if err != nil {
		return err
	}
	what := "docker run -d → answers ping from a container on the other engine"
	if len(paths) == 1 {
		s := Summarize(times[0])
		r.add("docker", Row{Name: what + " p50: " + paths[0].name, Value: Ms(s.P50), Unit: "ms", Load: load, Note: "no Swarm to compare with"})
		return nil
	}
	r.attachRows(what, paths[0].name, paths[1].name, times[0], times[1], load)
	return dkThroughput(ctx, r, w, pv, ps)
}

// dkThroughput: TCP between the engines over each overlay, from the
// probes on engine B to a server container on engine A.
func dkThroughput(ctx context.Context, r *Runner, w *dockerWorld, pv, ps dkCtr) error {
	tv, err := w.runCtr(ctx, 0, "v"+dkMesh, "tv")
	if err != nil {
		return err
	}
	ts, err := w.runCtr(ctx, 0, dkSwarmOv, "ts")
	if err != nil {
		return err
	}
	vx := named{"vxmesh overlay (plugin)", Path{Src: pv.ns, Dst: tv.ns, To: tv.ip}}
	sw := named{"Swarm overlay", Path{Src: ps.ns, Dst: ts.ns, To: ts.ip}}
	for _, p := range []named{vx, sw} {
		if _, err := firstEcho(ctx, p.path.Src, p.path.To, time.Now()); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return r.compare(ctx, "docker", []metric{{"TCP 1 stream between the engines", "Mbit/s"}}, vx, []named{sw}, func(p Path) ([]float64, error) {
		bps, err := Throughput(ctx, p, 1, r.opts.Stream)
		return []float64{bps / 1e6}, err
	})
}
