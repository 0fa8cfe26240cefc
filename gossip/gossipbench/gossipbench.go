// Package gossipbench measures a gossip cluster run in one process: how
// long a new record takes to reach every member, and the traffic per member
// idle and under churn. The benchmarks in its tests and `vxmesh bench` use
// it; docs/benchmarks.md (## Gossip) has the figures.
package gossipbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"github.com/vxmesh/vxmesh/gossip"
)

// Options configures Convergence.
type Options struct {
	// Nodes is the number of members (default 3).
	Nodes int
	// Writes is the number of records created, one at a time, whose
	// convergence is measured (default 200).
	Writes int
	// Rate is writes per second across the cluster (default 20). Each
	// write adds one endpoint and deletes another on a member, round robin.
	Rate float64
	// Endpoints is the number of endpoints each member holds throughout
	// (default 10).
	Endpoints int
	// Idle is the window over which idle traffic is measured (default: one
	// push/pull period as memberlist scales it for Nodes, so the window
	// holds one full-state exchange per member).
	Idle time.Duration
	// Timeout bounds the wait for the last writes (default 30s); writes not
	// everywhere by then count as Missed.
	Timeout time.Duration
	// Netns is the namespace to bind in; zero means the current one.
	// 127.0.0.0/8 must be local there (a fresh namespace with lo up is).
	Netns netns.NsHandle
	// Base is the first member's address; member i binds Base+i
	// (default 127.0.1.1).
	Base netip.Addr
	// Port is the memberlist port of every member (default gossip.DefaultPort).
	Port int
	// Tuning is the protocol tuning under test (zero: DefaultTuning).
	Tuning gossip.Tuning
	// Log receives the members' logs (nil: discarded).
	Log *slog.Logger
	// Progress, when set, receives a line about the cluster's forming
	// every few seconds (large clusters take minutes).
	Progress func(string)
	// MaxRSS, when positive, stops Convergence with an error once the
	// process's resident memory passes it (bytes), checked while the
	// cluster forms: a cluster that does not form in one process can
	// grow by gigabytes a minute (docs/benchmarks.md, Scale), and the
	// machine is shared.
	MaxRSS uint64
	// Settle, when positive, keeps the cluster running this long after
	// the writes and then checks that it stayed formed: every member
	// still sees every member alive (Result.Settle*).
	Settle time.Duration
}

// MaxNodes is the most members Convergence runs: members bind
// consecutive addresses from Base, and names are numbered.
const MaxNodes = 4000

// Result is what Convergence measured.
type Result struct {
	Nodes  int `json:"nodes"`
	Writes int `json:"writes"`
	// P50, P90, P99 and Max are the times from SetLocal on the writer to
	// the record being live on every other member.
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
	// Missed counts writes not everywhere within Timeout.
	Missed int `json:"missed"`
	// IdleBytesPerNodeSec is the gossip traffic sent per member per second
	// with nothing changing; ChurnBytesPerNodeSec the same while writes run
	// at WritesPerSec.
	IdleBytesPerNodeSec  float64 `json:"idle_bytes_per_node_sec"`
	ChurnBytesPerNodeSec float64 `json:"churn_bytes_per_node_sec"`
	WritesPerSec         float64 `json:"writes_per_sec"`
	// StateBytes is the largest push/pull payload a member sent.
	StateBytes int `json:"state_bytes"`
	// Form is the time from the first member's start to every member
	// holding every member and record.
	Form time.Duration `json:"form"`
	// With Options.Settle: SettleBehind counts the members that did not
	// see every member alive at its end, SettleExchanges the full-state
	// exchanges (heals and rejoins, gossip.Stats.Exchanges) started
	// during it, and Goroutines is the process's goroutine count then
	// (the whole cluster is one process).
	SettleBehind    int    `json:"settle_behind"`
	SettleExchanges uint64 `json:"settle_exchanges"`
	Goroutines      int    `json:"goroutines"`
}

// String prints the result on one line.
func (r Result) String() string {
	out := fmt.Sprintf("nodes=%d formed=%v writes=%d p50=%v p90=%v p99=%v max=%v missed=%d idle=%.0fB/node/s churn=%.0fB/node/s@%.0fw/s pushpull=%dB",
		r.Nodes, r.Form.Round(100*time.Millisecond), r.Writes, r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.Max.Round(time.Microsecond), r.Missed, r.IdleBytesPerNodeSec, r.ChurnBytesPerNodeSec, r.WritesPerSec, r.StateBytes)
	if r.Goroutines > 0 {
		out += fmt.Sprintf(" settle: behind=%d exchanges=%d goroutines=%d", r.SettleBehind, r.SettleExchanges, r.Goroutines)
	}
	return out
}

// tracker follows writes until every member has them. Every member calls
// observe for every record it stores, under its table's lock (Observe), so
// the tracker is one lock shared by the whole in-process cluster: while no
// write is being timed (the cluster forming: 500 members storing 5,000
// records each) observe returns before taking it. Without that, members
// queued on the tracker's lock while holding their own, and memberlist's
// callbacks behind those (docs/benchmarks.md, Scale).
type tracker struct {
	timing  atomic.Int64 // writes registered and not yet everywhere
	mu      sync.Mutex
	pending map[string]*write // owner + key
	others  int
	done    []time.Duration
	all     chan struct{}
	left    int
}

type write struct {
	start time.Time
	seen  map[string]bool
}

func (tr *tracker) observe(member, owner string, k gossip.RecordKey, live bool) {
	if !live || member == owner || tr.timing.Load() == 0 {
		return
	}
	now := time.Now()
	id := owner + "\x00" + k.ID
	tr.mu.Lock()
	defer tr.mu.Unlock()
	w := tr.pending[id]
	if w == nil || w.seen[member] {
		return
	}
	w.seen[member] = true
	if len(w.seen) == tr.others {
		tr.done = append(tr.done, now.Sub(w.start))
		delete(tr.pending, id)
		tr.timing.Add(-1)
		if tr.left--; tr.left == 0 {
			close(tr.all)
		}
	}
}

// Convergence runs a cluster of opts.Nodes members in one process and
// measures how long a new record takes to reach every member, and the
// gossip traffic per member when idle and under churn.
func Convergence(ctx context.Context, opts Options) (Result, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Nodes > MaxNodes {
		return Result{}, fmt.Errorf("bench gossip: at most %d nodes", MaxNodes)
	}
	if opts.Writes <= 0 {
		opts.Writes = 200
	}
	if opts.Rate <= 0 {
		opts.Rate = 20
	}
	if opts.Endpoints <= 0 {
		opts.Endpoints = 10
	}
	if opts.Idle <= 0 {
		opts.Idle = pushPullPeriod(pushPullInterval(opts.Tuning), opts.Nodes)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if !opts.Base.IsValid() {
		opts.Base = netip.MustParseAddr("127.0.1.1")
	}
	if opts.Port == 0 {
		opts.Port = gossip.DefaultPort
	}
	res := Result{Nodes: opts.Nodes, Writes: opts.Writes}
	tr := &tracker{pending: map[string]*write{}, others: opts.Nodes - 1, all: make(chan struct{}), left: opts.Writes}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var cs []*gossip.Cluster
	defer func() {
		for _, c := range cs {
			c.Shutdown()
		}
		wg.Wait()
	}()
	t0 := time.Now()
	var err error
	cs, err = startMembers(ctx, opts, tr, func(c *gossip.Cluster) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(runCtx)
		}()
	})
	if err != nil {
		return res, err
	}
	if err := waitFormed(ctx, opts, cs); err != nil {
		return res, err
	}
	res.Form = time.Since(t0)

	// Idle traffic: after the queues drained.
	if err := benchWait(ctx, 60*time.Second, 100*time.Millisecond, func() error {
		for _, c := range cs {
			if n := c.Stats().BroadcastsQueued; n > 0 {
				return fmt.Errorf("%s has %d broadcasts queued", c.Name(), n)
			}
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("bench gossip: queues did not drain: %w", err)
	}
	sent := func() uint64 {
		var n uint64
		for _, c := range cs {
			n += c.Stats().BytesSent
		}
		return n
	}
	b0, t0 := sent(), time.Now()
	select {
	case <-time.After(opts.Idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.IdleBytesPerNodeSec = float64(sent()-b0) / float64(opts.Nodes) / time.Since(t0).Seconds()

	// Churn: one write every 1/Rate, round robin over the members. A write
	// replaces the member's oldest endpoint with a new one.
	gen := make([]int, opts.Nodes)
	b0, t0 = sent(), time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / opts.Rate))
	for w := range opts.Writes {
		i := w % opts.Nodes
		gen[i]++
		recs := benchEndpoints(i, gen[i], opts.Endpoints)
		added := recs[len(recs)-1]
		tr.mu.Lock()
		tr.pending[cs[i].Name()+"\x00"+gossip.KeyOf(added).ID] = &write{start: time.Now(), seen: map[string]bool{}}
		tr.timing.Add(1)
		tr.mu.Unlock()
		if err := cs[i].SetLocal(recs); err != nil {
			tick.Stop()
			return res, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			tick.Stop()
			return res, ctx.Err()
		}
	}
	tick.Stop()
	churn := time.Since(t0)
	res.WritesPerSec = float64(opts.Writes) / churn.Seconds()
	res.ChurnBytesPerNodeSec = float64(sent()-b0) / float64(opts.Nodes) / churn.Seconds()
	select {
	case <-tr.all:
	case <-time.After(opts.Timeout):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	tr.mu.Lock()
	d := slices.Clone(tr.done)
	res.Missed = len(tr.pending)
	tr.mu.Unlock()
	slices.Sort(d)
	if len(d) > 0 {
		pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		res.P50, res.P90, res.P99, res.Max = pct(0.50), pct(0.90), pct(0.99), d[len(d)-1]
	}
	for _, c := range cs {
		res.StateBytes = max(res.StateBytes, c.Stats().StateBytes)
	}
	if opts.Settle > 0 {
		if err := settle(ctx, opts, cs, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// settle keeps the cluster running for opts.Settle and records whether it
// stayed formed: a tuning whose repairs feed on themselves forms, then
// comes apart (members declared dead, full-state exchanges piling up).
func settle(ctx context.Context, opts Options, cs []*gossip.Cluster, res *Result) error {
	exchanges := func() (n, dead, unreach, behind, skipped uint64) {
		for _, c := range cs {
			st := c.Stats()
			n += st.Exchanges
			dead += st.HealDead
			unreach += st.HealUnreachable
			behind += st.HealBehind
			skipped += st.HealSkipped
		}
		return
	}
	e0, d0, u0, b0, s0 := exchanges()
	select {
	case <-time.After(opts.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	e1, d1, u1, b1, s1 := exchanges()
	res.SettleExchanges = e1 - e0
	res.Goroutines = runtime.NumGoroutine()
	for _, c := range cs {
		if c.Stats().Members != opts.Nodes {
			res.SettleBehind++
		}
	}
	progress(opts, "after %s: %d members do not see every member alive, %d full exchanges (heals: %d back from dead, %d after missed probes, %d behind an ack digest; %d skipped by the bound), %d goroutines",
		opts.Settle, res.SettleBehind, res.SettleExchanges, d1-d0, u1-u0, b1-b0, s1-s0, res.Goroutines)
	return nil
}

// joinBatch is how many members start at once. Each batch joins the
// members already running before the next starts: hundreds of members
// joining one cluster in the same second (all on the same cores) lose
// alive messages to full queues and then wait a push/pull period for them.
const joinBatch = 10

// startMembers creates and starts opts.Nodes members (run starts each one's
// Run), in batches of joinBatch. Member i joins two earlier members chosen
// at random, so no single seed serves every join.
// Members are appended to the result as they are created, so the caller
// can shut them down after an error.
func startMembers(ctx context.Context, opts Options, tr *tracker, run func(*gossip.Cluster)) ([]*gossip.Cluster, error) {
	var cs []*gossip.Cluster
	addr := opts.Base
	seed := func(i int) netip.AddrPort {
		a := opts.Base
		for range i {
			a = a.Next()
		}
		return netip.AddrPortFrom(a, uint16(opts.Port))
	}
	t0 := time.Now()
	for i := range opts.Nodes {
		cfg := gossip.Config{Name: fmt.Sprintf("n%03d", i+1), Addr: addr, Port: opts.Port, Netns: opts.Netns, Tuning: opts.Tuning}
		if i > 0 {
			// Two earlier members at random, not one seed for all: in
			// one process a seed that every member joins (and rejoins)
			// shares the cores with the rest while doing N times their
			// work, and falls behind on its probes.
			j := rand.IntN(i)
			cfg.Join = []netip.AddrPort{seed(j)}
			if i > 1 {
				k := rand.IntN(i - 1)
				if k >= j {
					k++
				}
				cfg.Join = append(cfg.Join, seed(k))
			}
		}
		addr = addr.Next()
		c, err := gossip.New(cfg, opts.Log)
		if err != nil {
			return cs, err
		}
		cs = append(cs, c)
		name := cfg.Name
		c.Observe(func(ch gossip.Change) { tr.observe(name, ch.Owner, ch.Key, ch.Live) })
		if err := c.SetLocal(benchEndpoints(i, 0, opts.Endpoints)); err != nil {
			return cs, err
		}
		run(c)
		if (i+1)%joinBatch != 0 || i+1 == opts.Nodes {
			continue
		}
		// Pace: wait (bounded) until every member sees everyone started
		// so far. A batch that is slow to join is not an error here;
		// waitFormed decides.
		err = benchWait(ctx, 20*time.Second, 500*time.Millisecond, func() error {
			if err := overMemory(opts.MaxRSS); err != nil {
				return err
			}
			return seeAll(cs)
		})
		if ctx.Err() != nil {
			return cs, ctx.Err()
		}
		if errors.Is(err, errOverMemory) {
			return cs, fmt.Errorf("bench gossip: %d members started: %w", len(cs), err)
		}
		progress(opts, "%d members started in %s (%v)", len(cs), time.Since(t0).Round(time.Second), errOrOK(err))
	}
	return cs, nil
}

// waitFormed waits until every member sees every member and every
// record. Forming can take a push/pull period when an alive message is
// lost in the epidemic's tail (memberlist's defaults at 50 members: 60 s),
// and hundreds of members in one process take longer to start and merge:
// the deadline grows with the number of members.
func waitFormed(ctx context.Context, opts Options, cs []*gossip.Cluster) error {
	want := opts.Nodes * opts.Endpoints
	t0 := time.Now()
	last := t0
	limit := 2*pushPullPeriod(pushPullInterval(opts.Tuning), opts.Nodes) + 10*time.Second + time.Duration(opts.Nodes)*200*time.Millisecond
	err := benchWait(ctx, limit, time.Second, func() error {
		if err := overMemory(opts.MaxRSS); err != nil {
			return err
		}
		err := formed(cs, opts.Nodes, want)
		if err != nil && time.Since(last) >= 10*time.Second {
			last = time.Now()
			progress(opts, "forming for %s: %v", time.Since(t0).Round(time.Second), err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("bench gossip: cluster did not form in %s: %w", limit, err)
	}
	progress(opts, "%d members formed in %s after the last start", opts.Nodes, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// seeAll reports the first member that does not see every member in cs.
func seeAll(cs []*gossip.Cluster) error {
	for _, c := range cs {
		if n := c.AliveMembers(); n < len(cs) {
			return fmt.Errorf("%s sees %d of %d members", c.Name(), n, len(cs))
		}
	}
	return nil
}

// formed checks every member's view; it reports how many members are not
// formed yet, with the first one's counts.
func formed(cs []*gossip.Cluster, nodes, records int) error {
	var first error
	behind := 0
	for _, c := range cs {
		// Stats counts the table (O(records)): checked once a second.
		st := c.Stats()
		switch {
		case st.Members != nodes:
			behind++
			if first == nil {
				first = fmt.Errorf("%s: %d members; want %d", c.Name(), st.Members, nodes)
			}
		case st.LocalRecords+st.RemoteRecords != records:
			behind++
			if first == nil {
				first = fmt.Errorf("%s: %d records; want %d", c.Name(), st.LocalRecords+st.RemoteRecords, records)
			}
		}
	}
	if first != nil {
		return fmt.Errorf("%d of %d members not formed, first %w", behind, len(cs), first)
	}
	return nil
}

func progress(opts Options, format string, a ...any) {
	if opts.Progress != nil {
		opts.Progress(fmt.Sprintf(format, a...))
	}
}

func errOrOK(err error) string {
	if err != nil {
		return "still joining: " + err.Error()
	}
	return "all see each other"
}

// pushPullPeriod is memberlist's push/pull period for n members: the
// interval, scaled by ceil(log2(n)-log2(32))+1 above 32 members.
func pushPullPeriod(interval time.Duration, n int) time.Duration {
	if n <= 32 {
		return interval
	}
	return interval * time.Duration(math.Ceil(math.Log2(float64(n))-5)+1)
}

// benchEndpoints is member i's endpoint set at generation g: n endpoints
// with addresses g..g+n-1 in its own /16.
func benchEndpoints(i, g, n int) []gossip.Record {
	out := make([]gossip.Record, 0, n)
	for j := g; j < g+n; j++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i), byte(j >> 8), byte(j)})
		name := fmt.Sprintf("c%d-%d", i, j)
		out = append(out, gossip.Endpoint{
			Network: "bench", Container: name, IP: ip,
			MAC:   []byte{2, 0x42, 10, byte(i), byte(j >> 8), byte(j)},
			Names: []string{name},
		})
	}
	return out
}

// errOverMemory is overMemory's error; benchWait returns it at once.
var errOverMemory = errors.New("process memory over the limit")

// overMemory reports errOverMemory when limit is positive and this
// process's resident memory (VmRSS) is above it.
func overMemory(limit uint64) error {
	if limit == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil && kb*1024 > limit {
				return fmt.Errorf("%w: resident %d MiB, limit %d MiB", errOverMemory, kb/1024, limit>>20)
			}
		}
	}
	return nil
}

func benchWait(ctx context.Context, timeout, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if errors.Is(err, errOverMemory) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pushPullInterval is t's push/pull interval, defaults applied.
func pushPullInterval(t gossip.Tuning) time.Duration {
	if t.PushPullInterval > 0 {
		return t.PushPullInterval
	}
	return gossip.DefaultTuning().PushPullInterval
}
