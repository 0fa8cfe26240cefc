package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/agent/api"
)

// Chaos runs (`vxmesh lab chaos`).
//
// A run is a sequence of episodes on a lab that is up. Each episode
// applies one fault — a partition (one host cut off, the hosts split in
// halves, or two groups joined only through a "bridge" host), or an
// agent killed with SIGKILL — holds it a random while, and meanwhile adds,
// removes and moves (remove here, re-add with the same address there)
// containers through the agents' APIs on both sides of the cut. Then it
// heals the fault (partition rules emptied, agent restarted) and times how
// long until the invariant (CheckInvariant) holds: every host's gossip
// table and kernel entries equal the live endpoints. Every random choice
// comes from one math/rand/v2 generator seeded with the run's seed, so a
// seed names a schedule; what the agents do with it can still differ in
// timing from run to run, which is what a chaos run is for.

// ChaosOptions configure a chaos run.
type ChaosOptions struct {
	Name, Root string
	Seed       uint64
	// Duration is how long to keep starting episodes.
	Duration time.Duration
	// ConvergeTimeout is how long a heal may take before the run counts a
	// violation (DefaultChaosTimeout when zero).
	ConvergeTimeout time.Duration
	// Target is the p99 convergence goal reported (DefaultChaosTarget).
	Target time.Duration
	// MaxPerHost bounds the chaos containers on a host (default 4).
	MaxPerHost int
	Out        io.Writer
}

// Chaos defaults.
const (
	DefaultChaosTimeout = 30 * time.Second
	DefaultChaosTarget  = 5 * time.Second
	chaosOpTimeout      = 20 * time.Second
)

// Heal is one episode's outcome.
type Heal struct {
	N     int           `json:"n"`
	Fault string        `json:"fault"`
	Hold  time.Duration `json:"hold"`
	Ops   []string      `json:"ops"`
	// Converge is the time from the heal until the invariant held.
	Converge time.Duration `json:"converge"`
	// Repaired describes the differences right after the heal ("" when
	// the invariant already held).
	Repaired string `json:"repaired,omitempty"`
	// Error is the difference still there at ConvergeTimeout ("" if none).
	Error string `json:"error,omitempty"`
}

// ChaosResult is a whole run.
type ChaosResult struct {
	Seed  uint64 `json:"seed"`
	Heals []Heal `json:"heals"`
	// P50, P99 and Max are over the converged heals.
	P50, P99, Max time.Duration
	// LoadStart and LoadEnd are /proc/loadavg's first field.
	LoadStart, LoadEnd string
}

// Violations counts heals that did not converge.
func (r *ChaosResult) Violations() int {
	n := 0
	for _, h := range r.Heals {
		if h.Error != "" {
			n++
		}
	}
	return n
}

// chaosRun is the state of a run.
type chaosRun struct {
	opts   ChaosOptions
	rec    *Record
	rng    *rand.Rand
	cut    *cutter
	want   Expected
	ips    map[string]string // chaos container -> its overlay address
	seq    int
	pr     *progress
	killed int // host index whose agent is down, or -1
}

// Chaos runs the chaos schedule of opts.Seed on the lab for opts.Duration.
// An error means the run could not be done (no lab, iptables missing); a
// heal that does not converge is recorded in the result (Violations).
func Chaos(ctx context.Context, opts ChaosOptions) (*ChaosResult, error) {
	if opts.ConvergeTimeout <= 0 {
		opts.ConvergeTimeout = DefaultChaosTimeout
	}
	if opts.Target <= 0 {
		opts.Target = DefaultChaosTarget
	}
	if opts.MaxPerHost <= 0 {
		opts.MaxPerHost = 4
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	rec, err := LoadRecord(opts.Root, opts.Name)
	if err != nil {
		return nil, err
	}
	r := &chaosRun{opts: opts, rec: rec, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
		want: Expected{}, ips: map[string]string{}, killed: -1,
		pr: &progress{w: opts.Out, start: time.Now(), last: time.Now()}}
	for _, c := range rec.Containers {
		if slices.Contains(c.Networks, OverlayNet) {
			r.want[c.Name] = c.Host
		}
	}
	res := &ChaosResult{Seed: opts.Seed, LoadStart: loadAvg()}
	r.pr.step("chaos on lab %q (%d hosts), seed %d, for %s; load %s", rec.Name, len(rec.Hosts), opts.Seed, opts.Duration, res.LoadStart)
	if d, err := rec.ConvergeInvariant(ctx, OverlayNet, r.want, opts.ConvergeTimeout); err != nil {
		return nil, fmt.Errorf("the lab is not converged before any fault (run `vxmesh lab up --name %s` first): %w", rec.Name, err)
	} else {
		r.pr.step("baseline: invariant holds (%s)", d.Round(time.Millisecond))
	}
	r.cut, err = newCutter(&rec.Plan)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := r.cut.remove(); err != nil {
			r.pr.step("warning: %v", err)
		}
	}()
	end := time.Now().Add(opts.Duration)
	for n := 1; time.Now().Before(end) && ctx.Err() == nil; n++ {
		h := r.episode(ctx, n)
		res.Heals = append(res.Heals, h)
		r.report(h)
	}
	res.Heals = append(res.Heals, r.cleanup(ctx, len(res.Heals)+1))
	r.report(res.Heals[len(res.Heals)-1])
	res.LoadEnd = loadAvg()
	res.summarize()
	r.summary(res)
	return res, ctx.Err()
}

// episode runs one fault, its operations, the heal and the wait.
func (r *chaosRun) episode(ctx context.Context, n int) Heal {
	hosts := len(r.rec.Hosts)
	hold := time.Duration(1500+r.rng.IntN(5000)) * time.Millisecond
	kinds := []string{"isolate", "kill"}
	if hosts >= 2 {
		kinds = append(kinds, "halves")
	}
	if hosts >= 3 {
		kinds = append(kinds, "bridge")
	}
	kind := kinds[r.rng.IntN(len(kinds))]
	h := Heal{N: n, Hold: hold}
	var sides [2][]int
	switch kind {
	case "kill":
		victim := r.rng.IntN(hosts)
		h.Fault = "kill -9 agent " + r.rec.Hosts[victim].Name
		if err := r.kill(victim); err != nil {
			h.Error = err.Error()
			return h
		}
		for i := range hosts {
			if i != victim {
				sides[i%2] = append(sides[i%2], i)
			}
		}
	default:
		var cut [][2]int
		sides, cut, h.Fault = r.partition(kind)
		if err := r.cut.apply(cut); err != nil {
			h.Error = err.Error()
			return h
		}
	}
	t0 := time.Now()
	nops := 1 + r.rng.IntN(4)
	for i := range nops {
		side := sides[i%2]
		if len(side) == 0 {
			side = sides[(i+1)%2]
		}
		h.Ops = append(h.Ops, r.op(ctx, side, sides))
	}
	if left := hold - time.Since(t0); left > 0 {
		sleepCtx(ctx, left)
	}
	if err := r.heal(); err != nil {
		h.Error = err.Error()
		return h
	}
	healed := time.Now()
	// What differs right after the heal says what the cluster had to
	// repair (and, for a slow heal, what it waited for).
	if err := r.rec.CheckInvariant(ctx, OverlayNet, r.want); err != nil {
		lines := strings.Split(err.Error(), "\n")
		h.Repaired = fmt.Sprintf("%d differences, first: %s", len(lines), lines[0])
	}
	_, err := r.rec.ConvergeInvariant(ctx, OverlayNet, r.want, r.opts.ConvergeTimeout-time.Since(healed))
	h.Converge = time.Since(healed)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	r.refreshIPs(ctx, &h)
	return h
}

// refreshIPs takes the chaos containers' addresses from their agents: a
// container that lost an address conflict at the heal was renumbered, and
// a later move must take its new address, not the one it gave up.
func (r *chaosRun) refreshIPs(ctx context.Context, h *Heal) {
	ips, err := r.rec.LocalIPs(ctx, OverlayNet)
	if err != nil {
		return // the next check reads them again
	}
	for name, old := range r.ips {
		if ip, ok := ips[name]; ok && ip != old && ip != "" {
			r.ips[name] = ip
			h.Ops = append(h.Ops, fmt.Sprintf("(%s renumbered %s -> %s)", name, old, ip))
		}
	}
}

// partition picks a partition of kind and returns the two sides (for
// operations) and the cut pairs.
func (r *chaosRun) partition(kind string) ([2][]int, [][2]int, string) {
	hosts := len(r.rec.Hosts)
	perm := r.rng.Perm(hosts)
	var a, b []int
	bridge := -1
	switch kind {
	case "isolate":
		a, b = perm[:1], perm[1:]
	case "halves":
		k := max(1, hosts/2)
		a, b = perm[:k], perm[k:]
	case "bridge":
		bridge = perm[0]
		rest := perm[1:]
		k := 1 + r.rng.IntN(len(rest)-1)
		a, b = rest[:k], rest[k:]
	}
	// Copies: the sides grow below, and must not write into perm.
	a, b = slices.Clone(a), slices.Clone(b)
	var cut [][2]int
	for _, x := range a {
		for _, y := range b {
			cut = append(cut, [2]int{x, y})
		}
	}
	sort.Ints(a)
	sort.Ints(b)
	desc := fmt.Sprintf("partition %s %s | %s", kind, r.names(a), r.names(b))
	if bridge >= 0 {
		desc += " (both reach " + r.rec.Hosts[bridge].Name + ")"
		// The bridge host reaches both sides; operations land on either.
		if r.rng.IntN(2) == 0 {
			a = append(a, bridge)
		} else {
			b = append(b, bridge)
		}
	}
	return [2][]int{a, b}, cut, desc
}

func (r *chaosRun) names(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, r.rec.Hosts[i].Name)
	}
	return "{" + strings.Join(s, ",") + "}"
}

// kill sends SIGKILL to host i's agent and waits until it is gone.
func (r *chaosRun) kill(i int) error {
	h := r.rec.Hosts[i]
	p := r.rec.Proc(RoleAgent, h.Name)
	if p == nil || !p.Ours() {
		return fmt.Errorf("agent %s is not running", h.Name)
	}
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		return fmt.Errorf("kill agent %s (pid %d): %w", h.Name, p.PID, err)
	}
	if left := waitGone([]int{p.PID}, 5*time.Second); len(left) > 0 {
		return fmt.Errorf("agent %s (pid %d) still alive after SIGKILL", h.Name, p.PID)
	}
	r.killed = i
	return nil
}

// heal removes the partition and restarts a killed agent.
func (r *chaosRun) heal() error {
	if err := r.cut.apply(nil); err != nil {
		return err
	}
	if r.killed >= 0 {
		h := r.rec.Hosts[r.killed]
		r.killed = -1
		if err := startAgent(r.rec, h.Name, r.pr); err != nil {
			return fmt.Errorf("restart agent %s: %w", h.Name, err)
		}
	}
	return nil
}

// op does one random container operation on a host of side and returns
// what it did.
func (r *chaosRun) op(ctx context.Context, side []int, sides [2][]int) string {
	host := side[r.rng.IntN(len(side))]
	mine := r.chaosOn(side)
	roll := r.rng.IntN(4)
	switch {
	case len(mine) > 0 && roll == 0:
		return r.remove(ctx, mine[r.rng.IntN(len(mine))])
	case len(mine) > 0 && roll == 1:
		// Move: free an address on this side, take it on the other.
		other := sides[0]
		if slices.Equal(other, side) {
			other = sides[1]
		}
		if len(other) == 0 {
			other = side
		}
		victim := mine[r.rng.IntN(len(mine))]
		ip := r.ips[victim]
		msg := r.remove(ctx, victim)
		return msg + "; " + r.add(ctx, other[r.rng.IntN(len(other))], ip)
	case r.count(r.rec.Hosts[host].Name) >= r.opts.MaxPerHost && len(mine) > 0:
		return r.remove(ctx, mine[r.rng.IntN(len(mine))])
	default:
		return r.add(ctx, host, "")
	}
}

// chaosOn returns the chaos containers on the hosts of side, sorted.
func (r *chaosRun) chaosOn(side []int) []string {
	var out []string
	for name := range r.ips {
		for _, i := range side {
			if r.want[name] == r.rec.Hosts[i].Name {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (r *chaosRun) count(host string) int {
	n := 0
	for name := range r.ips {
		if r.want[name] == host {
			n++
		}
	}
	return n
}

// add runs a new chaos container on host i (with address ip if given).
func (r *chaosRun) add(ctx context.Context, i int, ip string) string {
	h := r.rec.Hosts[i]
	r.seq++
	name := fmt.Sprintf("chaos%d", r.seq)
	spec := api.ContainerSpec{Name: name, Netns: ContainerNetnsPrefixOf(r.rec.Name) + name, Networks: []string{OverlayNet}}
	if ip != "" {
		spec.IP = map[string]string{OverlayNet: ip}
	}
	cctx, cancel := context.WithTimeout(ctx, chaosOpTimeout)
	defer cancel()
	c := AgentClient(h.Socket)
	ctr, err := c.Run(cctx, spec)
	if err != nil {
		// A refused run must leave nothing; if the agent kept it anyway,
		// it is live and the invariant covers it.
		if got, gerr := c.Container(cctx, name); gerr == nil && got != nil {
			r.want[name], r.ips[name] = h.Name, containerIP(got)
			return fmt.Sprintf("add %s@%s %s: error %v, but the agent kept it", name, h.Name, ip, err)
		}
		return fmt.Sprintf("add %s@%s %s: refused: %v", name, h.Name, ip, firstLine(err))
	}
	r.want[name] = h.Name
	r.ips[name] = containerIP(ctr)
	if r.ips[name] == "" {
		r.ips[name] = ip
	}
	return fmt.Sprintf("add %s@%s %s", name, h.Name, r.ips[name])
}

// remove removes chaos container name through its host's agent.
func (r *chaosRun) remove(ctx context.Context, name string) string {
	host := r.want[name]
	h := r.rec.Host(host)
	cctx, cancel := context.WithTimeout(ctx, chaosOpTimeout)
	defer cancel()
	err := AgentClient(h.Socket).Remove(cctx, name)
	if err != nil && !api.IsNotFound(err) {
		return fmt.Sprintf("rm %s@%s: error: %v", name, host, firstLine(err))
	}
	delete(r.want, name)
	delete(r.ips, name)
	return fmt.Sprintf("rm %s@%s", name, host)
}

// containerIP is a container's overlay address as the agent reported it
// (empty while it is pending).
func containerIP(c *api.Container) string {
	for _, ep := range c.Endpoints {
		if ep.Network == OverlayNet {
			return ep.IP
		}
	}
	return ""
}

// cleanup removes every chaos container left and checks the lab once more.
func (r *chaosRun) cleanup(ctx context.Context, n int) Heal {
	h := Heal{N: n, Fault: "cleanup: remove chaos containers"}
	names := make([]string, 0, len(r.ips))
	for name := range r.ips {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		h.Ops = append(h.Ops, r.remove(ctx, name))
	}
	d, err := r.rec.ConvergeInvariant(ctx, OverlayNet, r.want, r.opts.ConvergeTimeout)
	h.Converge = d
	if err != nil {
		h.Error = err.Error()
	}
	return h
}

func (r *chaosRun) report(h Heal) {
	status := fmt.Sprintf("converged in %s", h.Converge.Round(time.Millisecond))
	if h.Repaired != "" && h.Converge > r.opts.Target {
		status += " (right after the heal: " + h.Repaired + ")"
	}
	if h.Error != "" {
		status = "VIOLATION: " + h.Error
	}
	r.pr.step("heal %d: %s, held %s; ops: %s; %s", h.N, h.Fault, h.Hold.Round(100*time.Millisecond), strings.Join(h.Ops, "; "), status)
}

// summarize computes the percentiles of the converged heals.
func (res *ChaosResult) summarize() {
	var ds []time.Duration
	for _, h := range res.Heals {
		if h.Error == "" {
			ds = append(ds, h.Converge)
		}
	}
	res.P50, res.P99, res.Max = Percentile(ds, 50), Percentile(ds, 99), Percentile(ds, 100)
}

// Percentile returns the p-th percentile (nearest rank) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func (r *chaosRun) summary(res *ChaosResult) {
	w := r.opts.Out
	fmt.Fprintf(w, "\nchaos seed %d: %d heals, %d violations; convergence p50 %s p99 %s max %s (target p99 <= %s: %s); load %s -> %s\n",
		res.Seed, len(res.Heals), res.Violations(), res.P50.Round(time.Millisecond), res.P99.Round(time.Millisecond),
		res.Max.Round(time.Millisecond), r.opts.Target, met(res.P99 <= r.opts.Target), res.LoadStart, res.LoadEnd)
	if res.Violations() > 0 {
		fmt.Fprintf(w, "reproduce: vxmesh lab chaos --name %s --seed %d --duration %s\n", r.rec.Name, res.Seed, r.opts.Duration)
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// loadAvg is the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
