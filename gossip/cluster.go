package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	// directLimit bounds one direct Update packet: memberlist's 1400-byte
	// UDP budget minus its user-message, CRC and encryption overheads.
	directLimit = 1300
	// Queue caps: beyond them the oldest (most transmitted) broadcasts
	// go; direct sends and push/pull still deliver what they carried.
	maxLocalQueue = 8192
	maxRelayQueue = 4096
	// Updates from an owner memberlist has not told us about yet (its alive
	// message is still on the way) wait this long, this many at most.
	defaultPendingTTL = 30 * time.Second
	maxPending        = 1024
	// maxSyncs bounds concurrent Sync sends to members that just came up.
	maxSyncs = 8
)

// Cluster is one member of the gossip cluster and its replica of the
// record table. Create it with New, declare local records with SetLocal,
// run it with Run, read it with Snapshot, Members and Stats.
type Cluster struct {
	cfg Config
	tun Tuning
	log *slog.Logger
	now func() time.Time
	// joinSleep waits between joinLoop's turns (sleepOrStop); false
	// means stop. A field so tests can run many turns fast.
	joinSleep func(time.Duration) bool

	ml      *memberlist.Memberlist
	tr      *transport
	keyring *memberlist.Keyring

	mu      sync.Mutex // guards tab, members, pending
	tab     *table
	members map[string]*member
	pending []pendingGroup

	pendingTTL time.Duration // how long parked updates wait for their owner

	alive          atomic.Int64 // alive members including self: NumNodes of the queues
	localQ, relayQ *memberlist.TransmitLimitedQueue

	changed chan struct{}
	wake    chan struct{}
	jobs    chan job
	syncSem chan struct{}
	heal    healer // full-state exchanges with members that come back (heal.go)

	lifeMu  sync.Mutex // orders Leave and Shutdown
	shut    bool
	stop    chan struct{}
	running atomic.Bool
	wg      sync.WaitGroup

	ctr         counters
	stateBytes  atomic.Int64
	digestBytes atomic.Int64
	stateCache  stateCache // the last whole-table State encoded (bound.go)
	logMu       sync.Mutex
	lastLog     map[string]time.Time
}

type counters struct {
	rejVTEP, rejUnknown, rejMalformed     atomic.Uint64
	invalid, refuted, reaped, dropped     atomic.Uint64
	stale, nameConflicts, fanoutDropped   atomic.Uint64
	digests, wanted                       atomic.Uint64 // digest.go
	exchanges, healSkipped                atomic.Uint64 // heal.go, join.go, bound.go
	healDead, healUnreachable, healBehind atomic.Uint64 // heal.go, by reason
}

// source is how a group arrived.
type source uint8

// String names the source in log lines.
func (s source) String() string {
	switch s {
	case srcUpdate:
		return "update"
	case srcSync:
		return "sync"
	}
	return "push-pull"
}

const (
	srcUpdate source = iota // gossip or direct update: relayed when new
	srcSync                 // an owner's complete set, sent to us alone
	srcState                // push/pull
)

type pendingGroup struct {
	g       group
	src     source
	expires time.Time
}

// job is work for the fan-out goroutine.
type job struct {
	msgs   [][]byte // Update packets for every alive member
	syncTo string   // or: send our complete set to this member
}

// New validates cfg, binds memberlist's sockets on cfg.Addr:cfg.Port (in
// cfg.Netns when set) and returns a cluster of one. Nothing is sent until
// Run. log may be nil.
func New(cfg Config, log *slog.Logger) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Name)
	c := &Cluster{
		cfg:     cfg,
		tun:     cfg.Tuning,
		log:     log,
		now:     time.Now,
		members: map[string]*member{},
		changed: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		jobs:    make(chan job, 1024),
		syncSem: make(chan struct{}, maxSyncs),
		stop:    make(chan struct{}),
		lastLog: map[string]time.Time{},

		pendingTTL: defaultPendingTTL,
	}
	c.joinSleep = c.sleepOrStop
	c.tab = newTable(cfg.Name, cfg.Addr, cfg.TombstoneTTL, c.now())
	numNodes := func() int { return int(c.alive.Load()) }
	c.localQ = &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: c.tun.RetransmitMult}
	c.relayQ = &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: c.tun.RetransmitMult}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = cfg.Addr.String(), cfg.Port
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.Addr.String(), cfg.Port
	mc.GossipInterval = c.tun.GossipInterval
	mc.GossipNodes = c.tun.GossipNodes
	mc.RetransmitMult = c.tun.RetransmitMult
	mc.ProbeInterval = c.tun.ProbeInterval
	mc.ProbeTimeout = c.tun.ProbeTimeout
	mc.SuspicionMult = c.tun.SuspicionMult
	mc.SuspicionMaxTimeoutMult = c.tun.SuspicionMaxTimeoutMult
	mc.PushPullInterval = c.tun.PushPullInterval
	mc.TCPTimeout = c.tun.TCPTimeout
	// Our State payload compresses itself; memberlist's per-packet LZW
	// costs more than it saves on small updates.
	mc.EnableCompression = false
	mc.HandoffQueueDepth = 4096
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Conflict = (*events)(c)
	mc.Ping = (*pinger)(c) // meta.go: clocks; heal.go: probe gaps
	mc.Logger = newStdLogger(log)
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		c.keyring = kr
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	tr, err := newTransport(cfg.Addr, cfg.Port, cfg.Netns, mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("bind gossip on %s: %w", netip.AddrPortFrom(cfg.Addr, uint16(cfg.Port)), err)
	}
	c.tr = tr
	mc.Transport = tr
	ml, err := memberlist.Create(mc)
	if err != nil {
		tr.Shutdown()
		return nil, fmt.Errorf("start memberlist %q: %w", cfg.Name, err)
	}
	c.ml = ml
	return c, nil
}

// Name is this host's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Addr is this host's gossip address.
func (c *Cluster) Addr() netip.AddrPort { return netip.AddrPortFrom(c.cfg.Addr, uint16(c.cfg.Port)) }

// Run joins the configured peers (retrying with backoff), keeps rejoining
// peers and members that are not alive, reaps the records of members dead
// for longer than ReapAfter and collects tombstones, until ctx is done; then
// it leaves the cluster (its records stay ReapAfter on the others, like a
// dead host's) and shuts down. It returns early when Shutdown is called.
func (c *Cluster) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("gossip: Run called twice")
	}
	select {
	case <-c.stop:
		return errors.New("gossip: cluster is shut down")
	default:
	}
	c.wg.Add(2)
	go c.fanoutLoop()
	go c.joinLoop()
	tick := time.NewTicker(min(max(c.cfg.ReapAfter/20, 10*time.Millisecond), 500*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := c.Leave(c.tun.LeaveTimeout); err != nil {
				c.log.Warn("leave gossip cluster", "err", err)
			}
			return c.Shutdown()
		case <-c.stop:
			return nil
		case <-tick.C:
			c.maintain()
		case <-c.wake:
			c.maintain()
		}
	}
}

// Leave tells the other members that this host leaves on purpose and
// waits up to timeout for that message to go out. The host keeps
// answering until Shutdown.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.shut {
		return nil
	}
	// memberlist's events do not say whether a member left or failed; tell
	// the others ourselves first (it only changes what they display).
	bye := encodeUpdate(msgLeave, &group{owner: c.cfg.Name, vtep: c.cfg.Addr})
	c.localQ.QueueBroadcast(&broadcast{name: "\x00leave", msg: bye})
	c.mu.Lock()
	var targets []memberlist.Node
	for name, m := range c.members {
		if name != c.cfg.Name && m.state == MemberAlive {
			targets = append(targets, m.node)
		}
	}
	c.mu.Unlock()
	for i := range targets {
		c.ml.SendBestEffort(&targets[i], bye)
	}
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("leave gossip cluster: %w", err)
	}
	return nil
}

// Shutdown stops gossip at once, without a leave message (to the others
// this looks like a crash). It is safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.lifeMu.Lock()
	if c.shut {
		c.lifeMu.Unlock()
		return nil
	}
	c.shut = true
	c.lifeMu.Unlock()
	close(c.stop)
	err := c.ml.Shutdown()
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("shut down memberlist: %w", err)
	}
	return nil
}

// SetLocal declares the complete set of this host's records (level
// triggered): records not declared before are added, changed ones get a
// new version, ones no longer declared are deleted everywhere. Each
// record's owner (Host) and, for endpoints, VTEP are filled with this
// host's; a record naming another owner or VTEP is an error. On any error
// nothing changes.
//
// Until the first SetLocal the host publishes nothing and leaves the
// records of its previous life alone, so an agent restart drops no traffic:
// declare the local records before (or right after) Run.
func (c *Cluster) SetLocal(records []Record) error {
	c.mu.Lock()
	ups, err := c.tab.setLocal(records, c.now())
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("set local records: %w", err)
	}
	if len(ups) > 0 {
		c.publish(ups)
		c.notify()
	}
	return nil
}

// Snapshot returns the live table with conflicts resolved. The caller owns
// the result.
func (c *Cluster) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tab.snapshot().clone()
}

// Changed returns a channel that receives a value after the live table
// changes. It holds at most one pending value, so bursts of changes
// coalesce: on receipt, read Snapshot.
func (c *Cluster) Changed() <-chan struct{} { return c.changed }

// SetKeys replaces the gossip keys at run time: keys[0] becomes the
// encryption key, all of keys decrypt, and installed keys not in keys are
// removed. It only works on a cluster created with keys (encryption cannot
// be switched on or off without a restart). See docs/gossip.md for
// rotation.
func (c *Cluster) SetKeys(keys [][]byte) error {
	if c.keyring == nil {
		return errors.New("set gossip keys: encryption is off; restart with keys to turn it on")
	}
	if len(keys) == 0 {
		return errors.New("set gossip keys: no keys; encryption cannot be switched off at run time")
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("set gossip keys: key %d: %w", i+1, err)
		}
	}
	for _, k := range keys {
		if err := c.keyring.AddKey(k); err != nil {
			return fmt.Errorf("set gossip keys: %w", err)
		}
	}
	if err := c.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("set gossip keys: %w", err)
	}
	for _, old := range c.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return string(k) == string(old) }) {
			if err := c.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("set gossip keys: %w", err)
			}
		}
	}
	// Tell the others the new fingerprints (node meta).
	if c.running.Load() && !c.isShut() {
		if err := c.ml.UpdateNode(c.tun.TCPTimeout); err != nil {
			c.log.Warn("announce new gossip keys", "err", err)
		}
	}
	c.log.Info("gossip keys set", "keys", c.ownMeta().keys)
	return nil
}

// SetJoin replaces the configured peers (on reload): from now on these are
// the peers rejoined whenever they are not alive members.
func (c *Cluster) SetJoin(peers []netip.AddrPort) error {
	for _, j := range peers {
		if !j.IsValid() || j.Port() == 0 {
			return fmt.Errorf("set gossip peers: invalid address %v", j)
		}
	}
	c.mu.Lock()
	c.cfg.Join = slices.Clone(peers)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) isShut() bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	return c.shut
}

func (c *Cluster) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *Cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cluster) enqueue(j job) {
	select {
	case c.jobs <- j:
	default:
		c.ctr.fanoutDropped.Add(1)
	}
}

// logReject logs a refused message, at most once a second per reason.
func (c *Cluster) logReject(reason string, args ...any) {
	c.logMu.Lock()
	now := time.Now()
	ok := now.Sub(c.lastLog[reason]) >= time.Second
	if ok {
		c.lastLog[reason] = now
	}
	c.logMu.Unlock()
	if ok {
		c.log.Warn("rejected gossip", append([]any{"reason", reason}, args...)...)
	}
}
