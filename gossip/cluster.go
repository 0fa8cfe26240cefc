package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
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

	lifeMu  sync.Mutex // orders Leave and Shutdown
	shut    bool
	stop    chan struct{}
	running atomic.Bool
	wg      sync.WaitGroup

	ctr        counters
	stateBytes atomic.Int64
	logMu      sync.Mutex
	lastLog    map[string]time.Time
}

type counters struct {
	rejVTEP, rejUnknown, rejMalformed   atomic.Uint64
	invalid, refuted, reaped, dropped   atomic.Uint64
	stale, nameConflicts, fanoutDropped atomic.Uint64
}

// source is how a group arrived.
type source uint8

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

// Members returns every member this host knows, itself included, sorted by
// name. Dead and departed members stay listed until their records are
// reaped and forgotten.
func (c *Cluster) Members() []Member {
	suspect := map[string]bool{}
	if !c.isShut() {
		for _, n := range c.ml.Members() {
			if n.State == memberlist.StateSuspect {
				suspect[n.Name] = true
			}
		}
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, 0, len(c.members))
	for name, m := range c.members {
		mb := Member{
			Name:     name,
			Addr:     m.addr,
			State:    m.state,
			Records:  c.tab.liveCount(name),
			Since:    m.since,
			LastSeen: m.lastSeen,
			Self:     name == c.cfg.Name,
		}
		switch {
		case m.state == MemberAlive:
			mb.LastSeen = now
			if suspect[name] {
				mb.State = MemberSuspect
			}
		case name != c.cfg.Name:
			mb.ReapAt = m.since.Add(c.cfg.ReapAfter)
		}
		out = append(out, mb)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Stats are counters of this member's gossip.
type Stats struct {
	// Members counts alive members, this host included.
	Members int `json:"members"`
	// LocalRecords, RemoteRecords and Tombstones count the table.
	LocalRecords  int `json:"local_records"`
	RemoteRecords int `json:"remote_records"`
	Tombstones    int `json:"tombstones"`
	// Conflicts counts shadowed records (Snapshot.Conflicts) as of the
	// latest Snapshot call; Stats itself does not resolve the table, which
	// costs milliseconds at ten thousand records.
	Conflicts int `json:"conflicts"`
	// Rejected counts refused messages: the sum of the three below.
	Rejected uint64 `json:"rejected"`
	// RejectedVTEP: records whose VTEP is not their owner's member address.
	RejectedVTEP uint64 `json:"rejected_vtep"`
	// RejectedUnknownOwner: records of a host that is not a member.
	RejectedUnknownOwner uint64 `json:"rejected_unknown_owner"`
	// RejectedMalformed: messages that did not decode.
	RejectedMalformed uint64 `json:"rejected_malformed"`
	// InvalidRecords: records of a known kind with invalid fields.
	InvalidRecords uint64 `json:"invalid_records"`
	// Refuted counts own records reissued over newer copies (a previous
	// life of this host, or a forgery).
	Refuted uint64 `json:"refuted"`
	// Reaped counts records removed because their host stayed dead.
	Reaped uint64 `json:"reaped"`
	// Dropped counts records removed because their owner's complete set
	// no longer had them.
	Dropped uint64 `json:"dropped"`
	// Stale counts messages ignored because their owner was reaped.
	Stale uint64 `json:"stale"`
	// NameConflicts counts hosts that tried to join under a taken name.
	NameConflicts uint64 `json:"name_conflicts"`
	// BytesSent and BytesReceived count all gossip traffic (UDP and TCP),
	// memberlist's own included; Packets* count UDP packets.
	BytesSent       uint64 `json:"bytes_sent"`
	BytesReceived   uint64 `json:"bytes_received"`
	PacketsSent     uint64 `json:"packets_sent"`
	PacketsReceived uint64 `json:"packets_received"`
	// BroadcastsQueued counts broadcasts waiting in the local and relay
	// queues.
	BroadcastsQueued int `json:"broadcasts_queued"`
	// FanoutDropped counts direct-send jobs dropped on overflow.
	FanoutDropped uint64 `json:"fanout_dropped"`
	// StateBytes is the size of the last push/pull payload sent.
	StateBytes int `json:"state_bytes"`
}

// Stats returns the counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		Members:              int(c.alive.Load()),
		RejectedVTEP:         c.ctr.rejVTEP.Load(),
		RejectedUnknownOwner: c.ctr.rejUnknown.Load(),
		RejectedMalformed:    c.ctr.rejMalformed.Load(),
		InvalidRecords:       c.ctr.invalid.Load(),
		Refuted:              c.ctr.refuted.Load(),
		Reaped:               c.ctr.reaped.Load(),
		Dropped:              c.ctr.dropped.Load(),
		Stale:                c.ctr.stale.Load(),
		NameConflicts:        c.ctr.nameConflicts.Load(),
		BytesSent:            c.tr.bytesOut.Load(),
		BytesReceived:        c.tr.bytesIn.Load(),
		PacketsSent:          c.tr.pktsOut.Load(),
		PacketsReceived:      c.tr.pktsIn.Load(),
		BroadcastsQueued:     c.localQ.NumQueued() + c.relayQ.NumQueued(),
		FanoutDropped:        c.ctr.fanoutDropped.Load(),
		StateBytes:           int(c.stateBytes.Load()),
	}
	s.Rejected = s.RejectedVTEP + s.RejectedUnknownOwner + s.RejectedMalformed
	c.mu.Lock()
	s.LocalRecords, s.RemoteRecords, s.Tombstones = c.tab.counts()
	if c.tab.snap != nil {
		s.Conflicts = len(c.tab.snap.Conflicts)
	}
	c.mu.Unlock()
	return s
}

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

// --- receiving ---

// receive handles a user message from memberlist (gossip, direct send or
// reliable send).
func (c *Cluster) receive(buf []byte) {
	m, err := decodeMessage(buf)
	if err != nil {
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", err, "bytes", len(buf))
		return
	}
	switch m.typ {
	case msgUpdate:
		c.apply(&m.groups[0], srcUpdate)
	case msgSync:
		c.apply(&m.groups[0], srcSync)
	case msgLeave:
		c.markLeaving(&m.groups[0])
	default:
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", "state message outside push/pull")
	}
}

// verdicts of the ownership check.
const (
	verdictOK = iota
	verdictUnknown
	verdictStale
	verdictVTEP
)

// checkOwnerLocked applies the ownership rules to a group: its owner must be
// a member memberlist told us about, and its VTEP must be that member's
// address. Records owned by this host pass (the table refutes them if
// they are not ours).
func (c *Cluster) checkOwnerLocked(g *group) (int, netip.Addr) {
	if g.owner == c.cfg.Name {
		// Our own records: the table refutes versions that are not ours;
		// one that names another VTEP than ours is forged outright (every
		// other member refuses it by the rule below, so nobody holds it).
		if g.vtep != c.cfg.Addr {
			return verdictVTEP, c.cfg.Addr
		}
		return verdictOK, netip.Addr{}
	}
	m := c.members[g.owner]
	switch {
	case m == nil:
		return verdictUnknown, netip.Addr{}
	case m.reaped:
		return verdictStale, netip.Addr{}
	case g.vtep != m.addr.Addr():
		return verdictVTEP, m.addr.Addr()
	}
	return verdictOK, netip.Addr{}
}

// apply runs one group through the ownership checks and the table, then
// relays, refutes and notifies as the merge says.
func (c *Cluster) apply(g *group, src source) {
	now := c.now()
	c.mu.Lock()
	verdict, want := c.checkOwnerLocked(g)
	switch verdict {
	case verdictUnknown:
		if src != srcState {
			c.parkLocked(g, src, now)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.ctr.rejUnknown.Add(1)
		c.logReject("unknown owner", "owner", g.owner, "vtep", g.vtep, "records", len(g.recs))
		return
	case verdictStale:
		c.mu.Unlock()
		c.ctr.stale.Add(1)
		return
	case verdictVTEP:
		c.mu.Unlock()
		c.ctr.rejVTEP.Add(1)
		c.logReject("vtep is not the owner's address", "owner", g.owner, "vtep", g.vtep, "member_addr", want, "records", len(g.recs))
		return
	}
	res := c.tab.merge(g, now)
	c.mu.Unlock()

	if res.invalid > 0 {
		c.ctr.invalid.Add(uint64(res.invalid))
		c.logReject("invalid record", "owner", g.owner, "records", res.invalid, "err", res.firstInvalid)
	}
	if res.dropped > 0 {
		c.ctr.dropped.Add(uint64(res.dropped))
		c.log.Info("dropped records their owner no longer has", "owner", g.owner, "records", res.dropped)
	}
	if src == srcUpdate && len(res.accepted) > 0 {
		c.relay(g.owner, g.vtep, res.accepted)
	}
	if len(res.own) > 0 {
		c.ctr.refuted.Add(uint64(len(res.own)))
		c.log.Info("reissued own records over newer copies", "records", len(res.own))
		c.publish(res.own)
	}
	if res.changed {
		c.notify()
	}
}

// markLeaving notes that a member announced its departure, so its coming
// (or past) NotifyLeave shows as "left" rather than "dead".
func (c *Cluster) markLeaving(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[g.owner]
	if m == nil || g.owner == c.cfg.Name || m.addr.Addr() != g.vtep {
		return
	}
	m.leaving = true
	if m.state == MemberDead {
		m.state = MemberLeft
	}
}

func (c *Cluster) parkLocked(g *group, src source, now time.Time) {
	if len(c.pending) >= maxPending {
		c.pending = c.pending[1:]
		c.ctr.rejUnknown.Add(1)
	}
	c.pending = append(c.pending, pendingGroup{g: *g, src: src, expires: now.Add(c.pendingTTL)})
}

// --- sending ---

type broadcast struct {
	name string
	msg  []byte
}

// Invalidates implements memberlist.Broadcast; Name does the work: a newer
// broadcast of a record replaces the queued one.
func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Name() string                          { return b.name }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}

func broadcastName(owner string, w *wireRecord) string {
	return owner + "\x00" + string(rune(w.kind)) + w.key
}

func queueRecords(q *memberlist.TransmitLimitedQueue, owner string, vtep netip.Addr, recs []wireRecord, limit int) {
	for i := range recs {
		g := group{owner: owner, vtep: vtep, recs: recs[i : i+1]}
		q.QueueBroadcast(&broadcast{name: broadcastName(owner, &recs[i]), msg: encodeUpdate(msgUpdate, &g)})
	}
	if q.NumQueued() > limit {
		q.Prune(limit)
	}
}

// publish spreads this host's new record versions: queued for gossip and,
// in a small cluster, sent straight to every member.
func (c *Cluster) publish(recs []wireRecord) {
	queueRecords(c.localQ, c.cfg.Name, c.cfg.Addr, recs, maxLocalQueue)
	if c.tun.DirectFanout <= 0 {
		return
	}
	g := group{owner: c.cfg.Name, vtep: c.cfg.Addr, recs: recs}
	var msgs [][]byte
	for _, part := range splitGroup(&g, directLimit) {
		msgs = append(msgs, encodeUpdate(msgUpdate, &part))
	}
	c.enqueue(job{msgs: msgs})
}

// relay queues records learned from a relayed update for gossip.
func (c *Cluster) relay(owner string, vtep netip.Addr, recs []wireRecord) {
	queueRecords(c.relayQ, owner, vtep, recs, maxRelayQueue)
}

func (c *Cluster) fanoutLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case j := <-c.jobs:
			if j.syncTo != "" {
				c.startSync(j.syncTo)
				continue
			}
			c.sendAll(j.msgs)
		}
	}
}

func (c *Cluster) sendAll(msgs [][]byte) {
	c.mu.Lock()
	var targets []memberlist.Node
	for name, m := range c.members {
		if name != c.cfg.Name && m.state == MemberAlive {
			targets = append(targets, m.node)
		}
	}
	c.mu.Unlock()
	if len(targets)+1 > c.tun.DirectFanout {
		return
	}
	for i := range targets {
		for _, msg := range msgs {
			if err := c.ml.SendBestEffort(&targets[i], msg); err != nil {
				c.log.Debug("direct send", "to", targets[i].Name, "err", err)
			}
		}
	}
}

// startSync sends our complete live set to a member that just came up (a
// new host, a restarted one, or one back from a partition), over TCP. It
// is what makes a join or a heal converge without waiting for push/pull,
// and its asOf removes whatever that member still holds of ours that we
// deleted meanwhile.
func (c *Cluster) startSync(to string) {
	select {
	case c.syncSem <- struct{}{}:
	case <-c.stop:
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.syncSem }()
		c.mu.Lock()
		m := c.members[to]
		var node memberlist.Node
		alive := m != nil && m.state == MemberAlive
		if alive {
			node = m.node
		}
		g, ok := c.tab.ownSync(c.now())
		c.mu.Unlock()
		if !alive || !ok {
			return
		}
		if err := c.ml.SendReliable(&node, encodeUpdate(msgSync, &g)); err != nil {
			c.log.Debug("sync own records", "to", to, "err", err)
		}
	}()
}

// --- membership, join, reap ---

func (c *Cluster) memberUp(n *memberlist.Node) {
	now := c.now()
	c.mu.Lock()
	m := c.members[n.Name]
	wasAlive := m != nil && m.state == MemberAlive
	if m == nil {
		m = &member{}
		c.members[n.Name] = m
	}
	m.node = copyNode(n)
	m.addr = nodeAddr(n)
	m.lastSeen = now
	if !wasAlive {
		m.state, m.since, m.reaped, m.leaving = MemberAlive, now, false, false
		c.alive.Add(1)
	}
	hasPending := slices.ContainsFunc(c.pending, func(p pendingGroup) bool { return p.g.owner == n.Name })
	c.mu.Unlock()
	if !wasAlive && n.Name != c.cfg.Name {
		c.log.Info("member up", "member", n.Name, "addr", m.addr)
		c.enqueue(job{syncTo: n.Name})
	}
	if hasPending {
		c.poke()
	}
}

func (c *Cluster) memberDown(n *memberlist.Node) {
	now := c.now()
	st := MemberDead
	if n.State == memberlist.StateLeft {
		st = MemberLeft
	}
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		m = &member{node: copyNode(n), addr: nodeAddr(n), since: now}
		c.members[n.Name] = m
	}
	if m.state == MemberAlive {
		c.alive.Add(-1)
		m.since, m.lastSeen = now, now
	}
	if m.leaving {
		st = MemberLeft
	}
	m.state = st
	c.mu.Unlock()
	if n.Name != c.cfg.Name {
		c.log.Info("member down", "member", n.Name, "state", st, "reap_after", c.cfg.ReapAfter)
	}
	c.poke()
}

// maintain reaps the records of members dead for ReapAfter, forgets them a
// tombstone lifetime later, collects tombstones and retries parked updates.
func (c *Cluster) maintain() {
	now := c.now()
	var replay []pendingGroup
	var reapedNames []string
	reaped, expired := 0, 0
	c.mu.Lock()
	for name, m := range c.members {
		if name == c.cfg.Name || m.state == MemberAlive {
			continue
		}
		switch {
		case !m.reaped && !now.Before(m.since.Add(c.cfg.ReapAfter)):
			reaped += c.tab.reap(name)
			m.reaped = true
			reapedNames = append(reapedNames, name)
		case m.reaped && now.After(m.since.Add(c.cfg.ReapAfter+c.cfg.TombstoneTTL)):
			delete(c.members, name)
		}
	}
	c.tab.gc(now)
	keep := c.pending[:0]
	for _, p := range c.pending {
		switch {
		case c.members[p.g.owner] != nil:
			replay = append(replay, p)
		case now.After(p.expires):
			expired++
		default:
			keep = append(keep, p)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	c.mu.Unlock()

	for _, name := range reapedNames {
		c.log.Info("reaped records of departed member", "member", name, "after", c.cfg.ReapAfter)
	}
	if reaped > 0 {
		c.ctr.reaped.Add(uint64(reaped))
		c.notify()
	}
	if expired > 0 {
		c.ctr.rejUnknown.Add(uint64(expired))
		c.logReject("unknown owner", "groups", expired)
	}
	for i := range replay {
		c.apply(&replay[i].g, replay[i].src)
	}
}

// --- memberlist delegates ---

// delegate is Cluster seen as a memberlist.Delegate, so those methods stay
// off Cluster's API.
type delegate Cluster

func (d *delegate) c() *Cluster { return (*Cluster)(d) }

// NodeMeta implements memberlist.Delegate.
func (d *delegate) NodeMeta(int) []byte { return nil }

// NotifyMsg implements memberlist.Delegate. It decodes into copies, so
// memberlist may reuse buf.
func (d *delegate) NotifyMsg(buf []byte) { d.c().receive(buf) }

// GetBroadcasts implements memberlist.Delegate: own updates first, relays
// in the space left, so relays never starve local changes.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	c := d.c()
	out := c.localQ.GetBroadcasts(overhead, limit)
	used := 0
	for _, b := range out {
		used += overhead + len(b)
	}
	if rest := limit - used; rest > overhead {
		out = append(out, c.relayQ.GetBroadcasts(overhead, rest)...)
	}
	return out
}

// LocalState implements memberlist.Delegate: the whole table.
func (d *delegate) LocalState(bool) []byte {
	c := d.c()
	now := c.now()
	c.mu.Lock()
	gs := c.tab.state(now)
	c.mu.Unlock()
	b := encodeState(gs)
	c.stateBytes.Store(int64(len(b)))
	return b
}

// MergeRemoteState implements memberlist.Delegate: the same merge path as
// updates, without relaying.
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	c := d.c()
	if len(buf) == 0 {
		return
	}
	m, err := decodeMessage(buf)
	if err == nil && m.typ != msgState {
		err = fmt.Errorf("message type %d in push/pull", m.typ)
	}
	if err != nil {
		c.ctr.rejMalformed.Add(1)
		c.logReject("malformed", "err", err, "bytes", len(buf))
		return
	}
	for i := range m.groups {
		c.apply(&m.groups[i], srcState)
	}
}

// events is Cluster seen as memberlist's EventDelegate and ConflictDelegate.
// memberlist calls these with its node lock held: they only touch our own
// state, never call back into memberlist.
type events Cluster

func (e *events) c() *Cluster { return (*Cluster)(e) }

// NotifyJoin implements memberlist.EventDelegate.
func (e *events) NotifyJoin(n *memberlist.Node) { e.c().memberUp(n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c().memberUp(n) }

// NotifyLeave implements memberlist.EventDelegate.
func (e *events) NotifyLeave(n *memberlist.Node) { e.c().memberDown(n) }

// NotifyConflict implements memberlist.ConflictDelegate.
func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	c := e.c()
	c.ctr.nameConflicts.Add(1)
	c.logReject("name conflict", "member", existing.Name, "addr", nodeAddr(existing), "other_addr", nodeAddr(other))
}
