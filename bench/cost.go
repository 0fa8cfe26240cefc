package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vxmesh/vxmesh/agent/metrics"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/atomicfile"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The cost area: what an idle agent costs (memory, CPU, goroutines,
// underlay bytes) on the run's 3-host lab over a window, the same with
// 10,000 cluster endpoints injected by a fake member, and the size of the
// gossip push/pull at 10,000 endpoints. The targets of issue 16 stand
// in for a baseline where nothing comparable runs on the machine.

// Targets of issue 16.
const (
	targetRSSMiB      = 50
	targetIdleCPU     = 0.5 // % of a core
	targetLoadedCPU   = 1   // % of a core, at 10,000 cluster endpoints
	targetPushPullMiB = 1
	metricsListen     = "127.0.0.1:9469"
)

// costPoint is one push/pull size, for the plot.
type costPoint struct {
	Endpoints int
	Bytes     int
}

// agentSample is one agent's counters at one moment.
type agentSample struct {
	at         time.Time
	cpuTicks   uint64 // utime + stime
	rssKiB     uint64
	txBytes    uint64 // the host's underlay link
	goroutines int    // -1 when unknown
}

// ProfileEnv names a directory: when set, the cost area turns on the
// agents' profiling endpoints (metrics.PprofEnv, inherited by the lab's
// agents) and saves the first agent's CPU profile over the idle and the
// loaded window and its heap and goroutines after each there, for `go tool
// pprof`.
const ProfileEnv = "VXMESH_BENCH_PPROF"

func runCost(ctx context.Context, r *Runner) error {
	if os.Getenv(ProfileEnv) != "" {
		// Before the lab exists, so its agents inherit it (a lab another
		// area built earlier has no profiles: startProfiles says so).
		os.Setenv(metrics.PprofEnv, "1")
	}
	rec, err := r.lab(ctx, 3)
	if err != nil {
		return err
	}
	idle, err := r.idleRows(ctx, rec)
	if err != nil {
		return err
	}
	n := 10000
	if r.opts.Quick {
		n = 500
	}
	return r.loadedRows(ctx, rec, n, idle)
}

// pushPullRows adds the push/pull payloads at n endpoints: the whole
// table, as a joining member receives it (and as every push/pull sent it
// before digests), and the digest a push/pull sends while tables agree,
// the largest the injector sent (the sampling window is longer than a
// push/pull period, so it has sent one by then).
func (r *Runner) pushPullRows(inj *injector, n int, load Load) error {
	if r.opts.Quick {
		r.skip("cost", "push/pull payload", "--quick: the window is shorter than a push/pull period")
		return nil
	}
	js, err := json.Marshal(injectedEndpoints(n))
	if err != nil {
		return err
	}
	full := inj.c.FullStateSize()
	r.cost = append(r.cost, costPoint{Endpoints: n, Bytes: full})
	name := fmt.Sprintf("push/pull payload at %d endpoints, whole table (a join; before digests, every push/pull)", n)
	r.add("cost", Row{Name: name, Value: float64(full) / 1024, Unit: "KiB",
		Baseline: "the same endpoints as a JSON array", BaselineValue: float64(len(js)) / 1024, Load: load})
	r.add("cost", Row{Name: name, Value: float64(full) / 1024, Unit: "KiB",
		Baseline: "target (issue 16)", BaselineValue: targetPushPullMiB * 1024, Load: load})
	deadline := time.Now().Add(2 * gossip.DefaultTuning().PushPullInterval)
	var st gossip.Stats
	for st = inj.c.Stats(); st.DigestBytes == 0 && time.Now().Before(deadline); st = inj.c.Stats() {
		time.Sleep(200 * time.Millisecond)
	}
	if st.DigestBytes == 0 {
		return fmt.Errorf("the endpoint injector sent no push/pull digest in two periods (state %d bytes)", st.StateBytes)
	}
	r.add("cost", Row{Name: fmt.Sprintf("push/pull payload at %d endpoints, digest (tables agree: the steady state)", n),
		Value: float64(st.DigestBytes), Unit: "B", Baseline: "target (issue 16)", BaselineValue: targetPushPullMiB << 20, Load: load,
		Note: fmt.Sprintf("the injector received %d digests and asked for %d owners", st.Digests, st.Wanted)})
	return nil
}

// agentCost is the worst agent's figures over a window.
type agentCost struct {
	cpu, rssMiB, txBps float64
	goroutines         int // -1: unknown
	// each lists every agent's CPU and RSS, in the lab's host order: the
	// busiest agent alone hides whether the cost is everyone's.
	each []string
}

// eachNote is the note of the CPU rows: every agent's figures.
func (c agentCost) eachNote() string {
	return "every agent (% of a core, RSS): " + strings.Join(c.each, "; ")
}

// sampleWindow samples every agent of the lab at the start and the end of
// window and returns the worst agent's figures.
func sampleWindow(ctx context.Context, rec *lab.Record, window time.Duration) (agentCost, Load, error) {
	var first, last []agentSample
	load, err := loaded(func() error {
		var err error
		if first, err = sampleAgents(rec); err != nil {
			return err
		}
		if !sleepCtx(ctx, window) {
			return ctx.Err()
		}
		last, err = sampleAgents(rec)
		return err
	})
	c := agentCost{goroutines: -1}
	if err != nil {
		return c, load, err
	}
	for i := range first {
		el := last[i].at.Sub(first[i].at).Seconds()
		cpu := float64(last[i].cpuTicks-first[i].cpuTicks) / clockTicks / el * 100
		c.cpu = max(c.cpu, cpu)
		c.each = append(c.each, fmt.Sprintf("%s %.2f %%, %.1f MiB", rec.Hosts[i].Name, cpu, float64(last[i].rssKiB)/1024))
		c.rssMiB = max(c.rssMiB, float64(last[i].rssKiB)/1024)
		c.txBps = max(c.txBps, float64(last[i].txBytes-first[i].txBytes)/el)
		c.goroutines = max(c.goroutines, last[i].goroutines)
	}
	return c, load, nil
}

// idleRows samples the lab's idle agents and adds the worst agent's
// figures; it returns them as the baseline of the loaded rows.
func (r *Runner) idleRows(ctx context.Context, rec *lab.Record) (agentCost, error) {
	if err := enableMetrics(ctx, rec); err != nil {
		r.logf("cost: goroutines unknown: %v", err)
	}
	r.logf("cost: sampling %d idle agents for %s", len(rec.Hosts), r.opts.Idle)
	prof := r.startProfiles(ctx, rec, r.opts.Idle, "idle")
	c, load, err := sampleWindow(ctx, rec, r.opts.Idle)
	prof()
	if err != nil {
		return c, fmt.Errorf("idle agents: %w", err)
	}
	hosts := len(rec.Hosts)
	window := r.opts.Idle.String()
	r.add("cost", Row{Name: fmt.Sprintf("agent RSS, idle, %d-host lab (largest agent)", hosts), Value: c.rssMiB, Unit: "MiB",
		Baseline: "target (issue 16)", BaselineValue: targetRSSMiB, Load: load})
	r.add("cost", Row{Name: fmt.Sprintf("agent CPU, idle over %s, %d-host lab (busiest agent)", window, hosts), Value: c.cpu, Unit: "% of a core",
		Baseline: "target (issue 16)", BaselineValue: targetIdleCPU, Load: load, Note: c.eachNote()})
	if c.goroutines >= 0 {
		r.add("cost", Row{Name: fmt.Sprintf("agent goroutines, idle, %d-host lab (most)", hosts), Value: float64(c.goroutines), Load: load})
	}
	r.add("cost", Row{Name: fmt.Sprintf("underlay bytes sent per host, idle over %s (gossip probes, push/pull, ARP)", window), Value: c.txBps, Unit: "B/s", Load: load,
		Note: "compare the scale area's idle bytes per member"})
	return c, nil
}

// loadedRows injects n cluster endpoints into the lab (a fake member
// publishing them), waits until every agent holds them, samples the agents
// over the idle window and adds their figures next to idle's.
func (r *Runner) loadedRows(ctx context.Context, rec *lab.Record, n int, idle agentCost) error {
	inj, err := r.inject(ctx, rec, n)
	if inj != nil {
		defer func() {
			if err := inj.stop(r); err != nil {
				r.logf("cost: stop the endpoint injector: %v", err)
			}
		}()
	}
	if err != nil {
		return err
	}
	took, err := waitRemote(ctx, rec, n, 3*time.Minute)
	if err != nil {
		return err
	}
	if err := waitPass(ctx, rec, time.Now(), time.Minute); err != nil {
		return err
	}
	r.logf("cost: every agent holds %d injected endpoints after %s; sampling for %s", n, took.Round(time.Millisecond), r.opts.Idle)
	prof := r.startProfiles(ctx, rec, r.opts.Idle, "loaded")
	c, load, err := sampleWindow(ctx, rec, r.opts.Idle)
	prof()
	if err != nil {
		return fmt.Errorf("agents with %d endpoints: %w", n, err)
	}
	at := fmt.Sprintf("with %d cluster endpoints (injected by a fake member), %d-host lab", n, len(rec.Hosts))
	if err := r.pushPullRows(inj, n, load); err != nil {
		return err
	}
	r.add("cost", Row{Name: "endpoints published → held by every agent (status), " + at, Value: Ms(took), Unit: "ms", Load: load})
	r.add("cost", Row{Name: "agent RSS " + at + " (largest agent)", Value: c.rssMiB, Unit: "MiB",
		Baseline: "target (issue 16)", BaselineValue: targetRSSMiB, Load: load})
	r.add("cost", Row{Name: "agent RSS " + at + " (largest agent)", Value: c.rssMiB, Unit: "MiB",
		Baseline: "idle with the lab's own endpoints", BaselineValue: idle.rssMiB, Load: load})
	r.add("cost", Row{Name: fmt.Sprintf("agent CPU over %s %s (busiest agent)", r.opts.Idle, at), Value: c.cpu, Unit: "% of a core",
		Baseline: "target (issue 16)", BaselineValue: targetLoadedCPU, Load: load, Note: c.eachNote()})
	r.add("cost", Row{Name: fmt.Sprintf("underlay bytes sent per host over %s %s", r.opts.Idle, at), Value: c.txBps, Unit: "B/s",
		Baseline: "idle with the lab's own endpoints", BaselineValue: idle.txBps, Load: load})
	if c.goroutines >= 0 {
		r.add("cost", Row{Name: "agent goroutines " + at + " (most)", Value: float64(c.goroutines),
			Baseline: "idle with the lab's own endpoints", BaselineValue: float64(idle.goroutines), Load: load})
	}
	return nil
}

// startProfiles, when ProfileEnv names a directory, fetches the first
// agent's CPU profile over window in the background; the function it
// returns waits for it and then saves the heap, goroutines and metrics,
// each file named after label ("idle", "loaded"). Failures are logged: the
// profiles are an aid, not a figure.
func (r *Runner) startProfiles(ctx context.Context, rec *lab.Record, window time.Duration, label string) func() {
	dir := os.Getenv(ProfileEnv)
	if dir == "" {
		return func() {}
	}
	h := rec.Hosts[0]
	save := func(name, path string, timeout time.Duration) {
		ext := ".pb.gz"
		if name == "metrics" {
			ext = ".txt"
		}
		file := filepath.Join(dir, fmt.Sprintf("agent-%s-%s-%s%s", h.Name, label, name, ext))
		if err := fetchTo(ctx, h.Netns, path, file, timeout); err != nil {
			r.logf("cost: %s profile of %s: %v (is %s=1 in the agent's environment?)", name, h.Name, err, metrics.PprofEnv)
			return
		}
		r.logf("cost: saved %s (go tool pprof -top %s)", file, file)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(int(window.Seconds()), 1)
		save("cpu", fmt.Sprintf("%sprofile?seconds=%d", metrics.PprofPath, secs), window+30*time.Second)
	}()
	return func() {
		<-done
		save("heap", metrics.PprofPath+"heap?gc=1", 30*time.Second)
		save("goroutine", metrics.PprofPath+"goroutine", 30*time.Second)
		// The runtime's memory figures (go_memstats_*): how RSS splits into
		// live heap, GC headroom and memory not yet returned to the OS.
		save("metrics", metrics.MetricsPath, 30*time.Second)
	}
}

// fetchTo saves what the agent's metrics listener in netns serves at path
// into file.
func fetchTo(ctx context.Context, netns, path, file string, timeout time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsListen+"/"+strings.TrimPrefix(path, "/"), nil)
	if err != nil {
		return err
	}
	resp, err := agentHTTP(netns, timeout).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return atomicfile.Write(file, b, 0o644)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

func sampleAgents(rec *lab.Record) ([]agentSample, error) {
	var out []agentSample
	for _, h := range rec.Hosts {
		p := rec.Proc(lab.RoleAgent, h.Name)
		if p == nil || !p.Ours() {
			return nil, fmt.Errorf("agent %s is not running", h.Name)
		}
		s := agentSample{at: time.Now(), goroutines: -1}
		var err error
		if s.cpuTicks, err = procCPUTicks(p.PID); err != nil {
			return nil, err
		}
		if s.rssKiB, err = procRSSKiB(p.PID); err != nil {
			return nil, err
		}
		if s.txBytes, err = txBytes(h.Netns); err != nil {
			return nil, err
		}
		if g, err := goroutines(h.Netns); err == nil {
			s.goroutines = g
		}
		out = append(out, s)
	}
	return out, nil
}

// procCPUTicks is utime + stime of pid (fields 14 and 15 of its stat).
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(string(b))
}

// ParseStatTicks returns utime + stime from a /proc/PID/stat line. The
// command name is in parentheses and may hold spaces, so fields count from
// the last ')'.
func ParseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse stat: %d fields after the name", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse stat: %w", err)
	}
	return u + s, nil
}

// procRSSKiB is VmRSS of pid.
func procRSSKiB(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// txBytes is what the host's underlay link has sent.
func txBytes(netns string) (uint64, error) {
	h, err := topo.Handle(netns)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(topo.HostLink)
	if err != nil {
		return 0, fmt.Errorf("find %q in %q: %w", topo.HostLink, netns, err)
	}
	if l.Attrs().Statistics == nil {
		return 0, fmt.Errorf("no statistics for %q in %q", topo.HostLink, netns)
	}
	return l.Attrs().Statistics.TxBytes, nil
}

// enableMetrics turns the agents' Prometheus endpoint on by adding
// metrics.listen to each host's config (the agent reloads it) and waits
// until every one answers.
func enableMetrics(ctx context.Context, rec *lab.Record) error {
	for _, h := range rec.Hosts {
		b, err := os.ReadFile(h.Config)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "\nmetrics:") {
			b = fmt.Appendf(b, "\n# added by vxmesh bench (cost): goroutines\nmetrics:\n  listen: %s\n", metricsListen)
			if err := atomicfile.Write(h.Config, b, 0o644); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range rec.Hosts {
		for {
			_, err := goroutines(h.Netns)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("metrics of %s: %w", h.Name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// agentHTTP is a client whose connections are made inside netns, where
// the agent's metrics listener is.
func agentHTTP(netns string, timeout time.Duration) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netnsutil.Do(netns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}, DisableKeepAlives: true} // one request each: no connection left open in the agent
	return &http.Client{Transport: tr, Timeout: timeout}
}

// goroutines reads go_goroutines from the agent's metrics endpoint in its
// host namespace.
func goroutines(netns string) (int, error) {
	resp, err := agentHTTP(netns, 2*time.Second).Get("http://" + metricsListen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, errors.New("no go_goroutines in the metrics")
}
