package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/doctor"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// Timing of Up.
const (
	// DefaultWait bounds the wait for the checks to pass.
	DefaultWait = 20 * time.Second
	// ReadyTimeout bounds the wait for agents to answer and containers
	// to appear.
	ReadyTimeout = 15 * time.Second
	// ProbeTimeout bounds one ping, lookup or connection.
	ProbeTimeout = time.Second
	// checkInterval separates rounds of checks.
	checkInterval = 500 * time.Millisecond
	// quietLimit is the longest Up stays silent while waiting.
	quietLimit = 5 * time.Second
)

// UpOptions configure Up.
type UpOptions struct {
	// Name of the lab; default DefaultName.
	Name string
	// Hosts is the number of hosts; default DefaultHosts, or the existing
	// lab's.
	Hosts int
	// Root holds the lab directories; default DefaultRoot.
	Root string
	// Binary is the vxmesh binary the lab's processes run. Required.
	Binary string
	// Wait bounds the wait for the checks to pass; default DefaultWait.
	Wait time.Duration
	// Out gets the progress lines and the table; default io.Discard.
	Out io.Writer
	// Invoked is how the user called vxmesh (e.g. "./vxmesh"), for the
	// closing hints; default "vxmesh".
	Invoked string
}

// UpResult is what Up did.
type UpResult struct {
	Record *Record
	// Checks are the results of the last round.
	Checks []Check
	// Existing is true when the lab was up already and only re-checked.
	Existing bool
	// Elapsed is how long Up took.
	Elapsed time.Duration
	// Doctor are `vxmesh doctor`'s reports, one per host, run last.
	Doctor []*doctor.Report
}

// runDoctor runs `vxmesh doctor` for every host, from inside its namespace,
// and prints one summary line each.
func runDoctor(ctx context.Context, rec *Record, pr *progress) []*doctor.Report {
	var reps []*doctor.Report
	for _, h := range rec.Hosts {
		r := doctor.Run(ctx, doctor.Options{Client: api.NewClient(h.Socket), Netns: h.Netns})
		r.Host = h.Name
		reps = append(reps, r)
		pr.step("doctor %s: %d ok, %d failed, %d warnings, %d skipped", h.Name, r.Count(doctor.OK), r.Count(doctor.Fail), r.Count(doctor.Warn), r.Count(doctor.Skip))
	}
	return reps
}

// writeDoctorFailures prints doctor's failures and warnings, if any.
func writeDoctorFailures(w io.Writer, reps []*doctor.Report) {
	for _, r := range reps {
		for _, x := range r.Results {
			if x.Status == doctor.Fail || x.Status == doctor.Warn {
				fmt.Fprintf(w, "doctor %s: %s %s: %s\n    fix: %s\n", r.Host, x.Status.Symbol(), x.Check, x.Evidence, x.Fix)
			}
		}
	}
}

// OK reports whether every check passed and doctor found no failure.
func (r *UpResult) OK() bool {
	if r == nil || Passed(r.Checks) != len(r.Checks) {
		return false
	}
	for _, d := range r.Doctor {
		if d.Failed() {
			return false
		}
	}
	return true
}

// progress prints steps with the time since start.
type progress struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
	last  time.Time
}

func (p *progress) step(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = time.Now()
	fmt.Fprintf(p.w, "[%4.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, a...))
}

func (p *progress) quiet() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.last)
}

// Up builds the lab (or, when it is up already, restarts what of it is not
// running), waits for the agents and containers, then runs the checks
// until they all pass or opts.Wait passes, printing each step and finally
// the table to opts.Out. An error means the lab could not be built or
// started (a lab that failed to build is removed again); failed checks are
// no error: see UpResult.OK.
func Up(ctx context.Context, opts UpOptions) (*UpResult, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Binary == "" {
		return nil, errors.New("lab up: no vxmesh binary to run")
	}
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	pr := &progress{w: opts.Out, start: time.Now(), last: time.Now()}
	res := &UpResult{}
	rec, err := LoadRecord(opts.Root, opts.Name)
	switch {
	case err == nil:
		res.Existing = true
		if opts.Hosts != 0 && opts.Hosts != len(rec.Hosts) {
			return nil, fmt.Errorf("lab %q is up with %d hosts, not %d: run `vxmesh lab down --name %s` first to rebuild it", opts.Name, len(rec.Hosts), opts.Hosts, opts.Name)
		}
		pr.step("lab %q is up already (%d hosts, built %s ago): checking it again", rec.Name, len(rec.Hosts), time.Since(rec.Created).Round(time.Second))
		if err := resume(rec, opts, pr); err != nil {
			return nil, err
		}
	case errors.Is(err, ErrNoLab):
		if opts.Hosts == 0 {
			opts.Hosts = DefaultHosts
		}
		rec, err = build(ctx, opts, pr)
		if err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	res.Record = rec
	if err := waitReady(ctx, rec, opts, pr); err != nil {
		return res, err
	}
	checks := rec.Checks()
	pr.step("checking: %d checks, until all pass or %s", len(checks), opts.Wait)
	lastPassed := -1
	res.Checks = rec.Converge(ctx, checks, opts.Wait, checkInterval, ProbeTimeout, func(round int, cs []Check) {
		n := Passed(cs)
		if n == len(cs) {
			return
		}
		if n != lastPassed || pr.quiet() >= quietLimit {
			lastPassed = n
			var first *Check
			for i := range cs {
				if !cs[i].OK {
					first = &cs[i]
					break
				}
			}
			pr.step("%d/%d checks pass; waiting for %s: %s", n, len(cs), first.ID(), first.Error)
		}
	})
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("interrupted: the lab stays up; `vxmesh lab down --name %s` removes it", rec.Name)
	}
	if err := rec.SaveChecks(res.Checks); err != nil {
		pr.step("warning: %v", err)
	}
	if res.OK() {
		pr.step("converged: %d/%d checks", len(res.Checks), len(res.Checks))
	} else {
		pr.step("NOT converged after %s: %d/%d checks pass", opts.Wait, Passed(res.Checks), len(res.Checks))
	}
	res.Doctor = runDoctor(ctx, rec, pr)
	res.Elapsed = time.Since(pr.start)
	fmt.Fprintln(opts.Out)
	rec.WriteTable(opts.Out, res.Checks)
	fmt.Fprintln(opts.Out)
	writeDoctorFailures(opts.Out, res.Doctor)
	if !res.OK() {
		writeLogTails(opts.Out, rec, 15)
	}
	named := ""
	if rec.Name != DefaultName {
		named = " --name " + rec.Name
	}
	// Say the command as the user typed it: ./vxmesh right after a build.
	self := "vxmesh"
	if opts.Invoked != "" {
		self = opts.Invoked
	}
	fmt.Fprintf(opts.Out, "Look inside: %s lab exec%s h1 -- vxmesh status   (configs, logs: %s lab status%s)\n", self, named, self, named)
	fmt.Fprintf(opts.Out, "Kernel:      %s inspect%s --host h1   (bridges, VXLAN FDB and neighbours, iptables: each line tied to its container)\n", self, named)
	fmt.Fprintf(opts.Out, "Doctor:      %s doctor%s --host h1   (MTU, ports, kernel features, offload, leftovers: one line per check)\n", self, named)
	fmt.Fprintf(opts.Out, "Remove it:   %s lab down%s\n", self, named)
	return res, nil
}

// build makes a new lab. On failure it removes what it made.
func build(ctx context.Context, opts UpOptions, pr *progress) (rec *Record, err error) {
	plan, err := NewPlan(opts.Name, opts.Hosts, opts.Root)
	if err != nil {
		return nil, err
	}
	configs, err := plan.Configs()
	if err != nil {
		return nil, err
	}
	if left := Leftovers(opts.Name, opts.Root); len(left) > 0 {
		return nil, fmt.Errorf("lab %q has no lab.json but parts of it exist (%s): run `vxmesh lab down --name %s` first", opts.Name, strings.Join(left, ", "), opts.Name)
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("make lab root: %w", err)
	}
	if err := os.Mkdir(plan.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("make lab dir: %w", err)
	}
	defer func() {
		if err != nil {
			derr := Down(context.WithoutCancel(ctx), DownOptions{Name: opts.Name, Root: opts.Root})
			if derr != nil {
				err = fmt.Errorf("%w (and removing the half-built lab failed: %v; run `vxmesh lab down --name %s`)", err, derr, opts.Name)
			} else {
				err = fmt.Errorf("%w (the half-built lab was removed)", err)
			}
		}
	}()
	rec = &Record{Plan: *plan, Created: time.Now().UTC(), Binary: opts.Binary}
	// lab.json first, so `lab down` knows every name should we crash.
	if err := rec.Save(); err != nil {
		return nil, err
	}
	pr.step("lab %q: %d hosts, files in %s", plan.Name, len(plan.Hosts), plan.Dir)

	tp, err := topo.New(topo.Options{Prefix: NetnsPrefixOf(plan.Name), Internet: true})
	if err != nil {
		return nil, err
	}
	pr.step("underlay %s on bridge %s in %s; internet %s in %s (default route of every host)", plan.Prefix, topo.UnderlayBridge, plan.Underlay, plan.Internet.Address, plan.Internet.Netns)
	for _, h := range plan.Hosts {
		th, err := tp.AddHost(h.Name)
		if err != nil {
			return nil, err
		}
		if th.NS != h.Netns || th.Addr != h.Address {
			return nil, fmt.Errorf("host %s built as %s %s, planned as %s %s", h.Name, th.NS, th.Addr, h.Netns, h.Address)
		}
		pr.step("host %s %s in %s", h.Name, h.Address, h.Netns)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := startDNS(rec, pr); err != nil {
		return nil, err
	}
	var names []string
	for _, h := range plan.Hosts {
		if err := writeAtomic(h.Config, configs[h.Config]); err != nil {
			return nil, err
		}
		names = append(names, filepath.Base(h.Config))
	}
	pr.step("configs written and validated: %s", strings.Join(names, " "))
	for _, h := range plan.Hosts {
		if err := startAgent(rec, h.Name, pr); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// resume restarts what of an existing lab does not run, after checking
// that its namespaces are there.
func resume(rec *Record, opts UpOptions, pr *progress) error {
	var missing []string
	for _, ns := range append([]string{rec.Underlay, rec.Internet.Netns}, hostNetns(rec)...) {
		if !netnsutil.Exists(ns) {
			missing = append(missing, ns)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab %q is broken: namespace %s gone; run `vxmesh lab down --name %s` and `lab up` again", rec.Name, strings.Join(missing, ", "), rec.Name)
	}
	rec.Binary = opts.Binary
	if p := rec.Proc(RoleDNS, topo.DefaultInternetRole); p == nil || !p.Ours() {
		if err := startDNS(rec, pr); err != nil {
			return err
		}
	}
	configs, err := rec.Configs()
	if err != nil {
		return err
	}
	for _, h := range rec.Hosts {
		if _, err := os.Stat(h.Config); errors.Is(err, os.ErrNotExist) {
			if err := writeAtomic(h.Config, configs[h.Config]); err != nil {
				return err
			}
			pr.step("config %s was missing: written again", h.Config)
		}
		if p := rec.Proc(RoleAgent, h.Name); p == nil || !p.Ours() {
			pr.step("agent %s is not running", h.Name)
			if err := startAgent(rec, h.Name, pr); err != nil {
				return err
			}
		}
	}
	return nil
}

func hostNetns(rec *Record) []string {
	var out []string
	for _, h := range rec.Hosts {
		out = append(out, h.Netns)
	}
	return out
}

// startDNS starts the fake upstream DNS server in the internet namespace
// and waits until it answers from h1.
func startDNS(rec *Record, pr *progress) error {
	addr := netip.AddrPortFrom(rec.Internet.DNS, 53)
	p, err := startProc(rec, RoleDNS, topo.DefaultInternetRole, rec.Internet.Netns, rec.Internet.Log, HelperArg0,
		[]string{"dns", addr.String(), rec.Dir})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(ReadyTimeout)
	for {
		_, qerr := queryA(context.Background(), rec.Hosts[0].Netns, addr, UpstreamName, 200*time.Millisecond)
		if qerr == nil {
			break
		}
		if !Alive(p.PID) {
			return fmt.Errorf("fake upstream DNS server exited: %s", tail(rec.Internet.Log, 5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fake upstream DNS server %s not answering from %s after %s: %v", addr, rec.Hosts[0].Name, ReadyTimeout, qerr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pr.step("fake upstream DNS %s in %s (pid %d): *.%s -> %s", addr, rec.Internet.Netns, p.PID, UpstreamZone, UpstreamAnswer)
	return nil
}

// startAgent starts host's agent.
func startAgent(rec *Record, host string, pr *progress) error {
	h := rec.Host(host)
	// The state dir holds the socket; the agent makes it too, but the
	// socket's directory must exist for clients before.
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return fmt.Errorf("make state dir of %s: %w", host, err)
	}
	p, err := startProc(rec, RoleAgent, h.Name, h.Netns, h.Log, "",
		[]string{"agent", "--config", h.Config, "--cleanup-on-exit"})
	if err != nil {
		return err
	}
	pr.step("agent %s started in %s (pid %d), log %s", h.Name, h.Netns, p.PID, h.Log)
	return nil
}

// startProc starts rec.Binary with args in netns and records it.
func startProc(rec *Record, role, of, netns, logPath, arg0 string, args []string) (*Proc, error) {
	argv := append([]string{rec.Binary}, args...)
	proc, err := StartDetached(netns, argv, arg0, nil, logPath)
	if err != nil {
		return nil, err
	}
	recorded := slices.Clone(argv)
	if arg0 != "" {
		recorded[0] = arg0
	}
	p := Proc{Role: role, Of: of, Netns: netns, PID: proc.Pid, Log: logPath, Argv: recorded, Started: time.Now().UTC()}
	rec.setProc(p)
	if err := rec.Save(); err != nil {
		return nil, err
	}
	return &p, nil
}

// waitReady waits until every agent has reconciled and every container
// has its addresses, then starts the TCP server in the container that
// serves one. A container that does not come up is reported, not fatal:
// the checks will show it.
func waitReady(ctx context.Context, rec *Record, opts UpOptions, pr *progress) error {
	deadline := time.Now().Add(ReadyTimeout)
	agentReady := map[string]bool{}
	ctrReady := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: the lab stays up; `vxmesh lab down --name %s` removes it", rec.Name)
		}
		for _, h := range rec.Hosts {
			if agentReady[h.Name] {
				continue
			}
			p := rec.Proc(RoleAgent, h.Name)
			if p == nil || !Alive(p.PID) {
				return fmt.Errorf("agent %s exited; its log %s ends:\n%s", h.Name, h.Log, tail(h.Log, 15))
			}
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := api.NewClient(h.Socket).Status(sctx)
			cancel()
			if err == nil && !st.LastReconcile.IsZero() {
				agentReady[h.Name] = true
				msg := "reconciled"
				if st.LastError != "" {
					msg = "reconciled with an error: " + st.LastError
				}
				pr.step("agent %s ready: %s, %d peers, %d local endpoints", h.Name, msg, len(st.Peers), st.Endpoints.Local)
			}
		}
		for _, c := range rec.Containers {
			if ctrReady[c.Name] {
				continue
			}
			addrs, err := containerAddrs(&c)
			if err != nil {
				continue
			}
			ctrReady[c.Name] = true
			var parts []string
			for i, n := range c.Networks {
				parts = append(parts, fmt.Sprintf("%s %s", n, addrs[i]))
			}
			pr.step("container %s on %s in %s: %s", c.Name, c.Host, c.Netns, strings.Join(parts, ", "))
			if c.Serves != 0 {
				if err := ensureServer(rec, &c, pr); err != nil {
					return err
				}
			}
		}
		if len(agentReady) == len(rec.Hosts) && len(ctrReady) == len(rec.Containers) {
			return nil
		}
		if pr.quiet() >= quietLimit && !time.Now().After(deadline) {
			pr.step("waiting for %s", notReady(rec, agentReady, ctrReady))
		}
		if time.Now().After(deadline) {
			var notAgents, notCtrs []string
			for _, h := range rec.Hosts {
				if !agentReady[h.Name] {
					notAgents = append(notAgents, h.Name)
				}
			}
			for _, c := range rec.Containers {
				if !ctrReady[c.Name] {
					notCtrs = append(notCtrs, c.Name)
				}
			}
			pr.step("after %s still not ready: agents %v, containers %v (the checks will tell)", ReadyTimeout, notAgents, notCtrs)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notReady says which agents and containers are not ready yet.
func notReady(rec *Record, agents, ctrs map[string]bool) string {
	var parts []string
	for _, h := range rec.Hosts {
		if !agents[h.Name] {
			parts = append(parts, "agent "+h.Name)
		}
	}
	for _, c := range rec.Containers {
		if !ctrs[c.Name] {
			parts = append(parts, "container "+c.Name)
		}
	}
	return strings.Join(parts, ", ")
}

// containerAddrs returns the IPv4 address of each of c's interfaces
// (eth0, eth1… in network order), or an error while one is missing.
func containerAddrs(c *ContainerPlan) ([]netip.Addr, error) {
	if !netnsutil.Exists(c.Netns) {
		return nil, fmt.Errorf("netns %q does not exist", c.Netns)
	}
	var out []netip.Addr
	for i := range c.Networks {
		a, err := InterfaceAddr(c.Netns, fmt.Sprintf("eth%d", i))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// ensureServer starts the TCP server in container c unless it runs.
func ensureServer(rec *Record, c *ContainerPlan, pr *progress) error {
	if p := rec.Proc(RoleServer, c.Name); p != nil && p.Ours() && sameNetns(p.PID, c.Netns) {
		return nil
	}
	p, err := startProc(rec, RoleServer, c.Name, c.Netns, c.ServerLog, HelperArg0,
		[]string{"server", fmt.Sprintf("0.0.0.0:%d", c.Serves), Banner(rec.Name, c.Name), rec.Dir})
	if err != nil {
		return err
	}
	h := rec.Host(c.Host)
	pr.step("TCP server in %s on :%d (pid %d), published as %s:%d", c.Name, c.Serves, p.PID, h.Address, PublishedPort)
	return nil
}

// sameNetns reports whether pid runs in the named namespace (a container
// namespace made again by its agent is a new one).
func sameNetns(pid int, netns string) bool {
	a := netnsInode(fmt.Sprintf("/proc/%d/ns/net", pid))
	return a != 0 && a == netnsInode(netnsutil.Path(netns))
}

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", file, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// writeLogTails prints the end of every agent's log.
func writeLogTails(w io.Writer, rec *Record, n int) {
	for _, h := range rec.Hosts {
		fmt.Fprintf(w, "--- agent %s: last %d lines of %s\n%s\n", h.Name, n, h.Log, tail(h.Log, n))
	}
	fmt.Fprintln(w)
}
