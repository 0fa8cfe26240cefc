package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// GossipSourceName keys the gossip view in Desired.Sources.
const GossipSourceName = "gossip"

// Defaults of the gossip source.
const (
	// DefaultJoinWait bounds how long the overlay waits for the cluster
	// after start before it programs what it has (see GossipView.Ready).
	DefaultJoinWait = 5 * time.Second
	// joinGrace is how long a peer must have been alive before its state
	// counts as heard: memberlist reports the peer alive just before the
	// push/pull that carries its table is merged.
	joinGrace = 300 * time.Millisecond
	// memberPoll is how often membership is compared for changes (member
	// state changes do not fire gossip's Changed).
	memberPoll = 250 * time.Millisecond
)

// GossipView is the gossip source's snapshot, Desired.Sources["gossip"]:
// the table, the members and the counters at the start of a pass.
type GossipView struct {
	// Snapshot is the live table with gossip's own conflict resolution.
	Snapshot gossip.Snapshot
	// Members are the cluster members, this host included.
	Members []gossip.Member
	// Stats are the gossip counters (rejected messages among them).
	Stats gossip.Stats
	// Ready is false until this host has heard the cluster: another member
	// has been alive for a moment (its table came with the join), or the
	// host has no join peers, or JoinWait has passed since start. Until
	// then the overlay step programs and publishes nothing, so a restarted
	// agent never replaces the kernel's entries with a table that is still
	// empty.
	Ready bool
	// ReadyAt is when Ready became true.
	ReadyAt time.Time
}

// alive reports whether the named host is a live member (or this host).
func (v *GossipView) alive(host string) bool {
	if v == nil {
		return false
	}
	if host == v.Snapshot.Self {
		return true
	}
	for _, m := range v.Members {
		if m.Name == host {
			return m.State == gossip.MemberAlive || m.State == gossip.MemberSuspect
		}
	}
	return false
}

// gossipSource runs this host's gossip member and is the loop's Source
// for it: every table change and every membership change triggers a pass.
type gossipSource struct {
	cfg      gossip.Config
	cl       atomic.Pointer[gossip.Cluster] // set by start
	log      *slog.Logger
	trigger  func()
	onChange func() // the overlay's fast path, before the pass is triggered
	joinWait time.Duration
	noPeers  bool
	ns       netns.NsHandle // closed after the cluster shuts down

	mu      sync.Mutex
	start0  time.Time // when the member started
	readyAt time.Time
	seenAt  time.Time // when another member was first seen alive
}

// newGossipSource prepares the gossip member of the host config: bound to
// host.address:cluster.bind_port (inside hostNetns when the agent manages
// a namespace other than its own), joining cluster.join, with the keys and
// reap_after of the config. start binds it.
func newGossipSource(cfg *config.Config, hostNetns string, tun gossip.Tuning, joinWait time.Duration, log *slog.Logger, trigger func()) (*gossipSource, error) {
	gc := gossip.ConfigFrom(cfg)
	gc.Tuning = tun
	s := &gossipSource{cfg: gc, log: log, trigger: trigger, joinWait: joinWait, noPeers: len(gc.Join) == 0, ns: netns.None()}
	if s.joinWait <= 0 {
		s.joinWait = DefaultJoinWait
	}
	if hostNetns != "" {
		h, err := netnsutil.Open(hostNetns)
		if err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
		s.ns, s.cfg.Netns = h, h
	}
	return s, nil
}

// start binds the member's sockets (after the agent took its API socket,
// so a second agent on the host fails on that, not here).
func (s *gossipSource) start() error {
	c, err := gossip.New(s.cfg, s.log.With("component", "gossip"))
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	s.mu.Lock()
	s.start0 = time.Now()
	s.mu.Unlock()
	s.cl.Store(c)
	return nil
}

// c is the member; nil before start.
func (s *gossipSource) c() *gossip.Cluster { return s.cl.Load() }

// shutdown stops the member at once (no leave) if it runs.
func (s *gossipSource) shutdown() {
	if c := s.c(); c != nil {
		c.Shutdown()
	}
	s.closeNS()
}

// closeNS closes the namespace handle once the member no longer uses it.
func (s *gossipSource) closeNS() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns.IsOpen() {
		s.ns.Close()
		s.ns = netns.None()
	}
}

// Name implements Source.
func (s *gossipSource) Name() string { return GossipSourceName }

// Snapshot implements Source. It is always ready: readiness for the
// overlay is GossipView.Ready, so bridge networks never wait for gossip.
func (s *gossipSource) Snapshot() (any, bool) {
	return s.view(), true
}

// view reads the cluster.
func (s *gossipSource) view() *GossipView {
	c := s.c()
	if c == nil {
		return &GossipView{}
	}
	v := &GossipView{Snapshot: c.Snapshot(), Members: c.Members(), Stats: c.Stats()}
	v.Ready, v.ReadyAt = s.ready(v.Members)
	return v
}

// ready decides GossipView.Ready.
func (s *gossipSource) ready(members []gossip.Member) (bool, time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.readyAt.IsZero() {
		return true, s.readyAt
	}
	if s.seenAt.IsZero() && slices.ContainsFunc(members, func(m gossip.Member) bool { return !m.Self && m.State == gossip.MemberAlive }) {
		s.seenAt = now
	}
	var why string
	switch {
	case s.noPeers:
		why = "no join peers configured"
	case !s.seenAt.IsZero() && now.Sub(s.seenAt) >= joinGrace:
		why = "joined the cluster"
	case now.Sub(s.start0) >= s.joinWait:
		why = "no peer answered within the join wait; programming what is known"
	default:
		return false, time.Time{}
	}
	s.readyAt = now
	s.log.Info("gossip ready", "reason", why, "after", now.Sub(s.start0).Round(time.Millisecond))
	return true, now
}

// run runs the member until ctx is done, then leaves the cluster (see
// docs/overlay.md, "Agent restarts": the others keep this host's records
// for reap_after, so a restart drops no traffic). It triggers a pass on
// every table change, membership change, and when readiness may flip.
func (s *gossipSource) run(ctx context.Context) {
	c := s.c()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			s.log.Error("gossip stopped", "err", err)
		}
	}()
	t := time.NewTicker(memberPoll)
	defer t.Stop()
	var last string
	ready := false
	for {
		select {
		case <-ctx.Done():
			<-done
			s.closeNS()
			return
		case <-done:
			s.closeNS()
			return
		case <-c.Changed():
			if s.onChange != nil {
				s.onChange()
			}
			s.trigger()
		case <-t.C:
			ms := c.Members()
			fp := memberPrint(ms)
			r, _ := s.ready(ms)
			if fp != last || r != ready {
				last, ready = fp, r
				s.trigger()
			}
		}
	}
}

// memberPrint is a fingerprint of the members' names and states.
func memberPrint(ms []gossip.Member) string {
	b := make([]byte, 0, 16*len(ms))
	for _, m := range ms {
		b = append(b, m.Name...)
		b = append(b, '=')
		b = append(b, m.State.String()...)
		b = append(b, ' ')
	}
	return string(b)
}

// reload applies what of a new config gossip can take at run time: the
// join peers. The others need a restart, which is logged.
func (s *gossipSource) reload(old, cfg *config.Config) {
	if old.Host.Name != cfg.Host.Name || old.Host.Address != cfg.Host.Address || old.Cluster.BindPort != cfg.Cluster.BindPort {
		s.log.Warn("host.name, host.address and cluster.bind_port cannot change while running; restart the agent")
	}
	if time.Duration(old.Cluster.ReapAfter) != time.Duration(cfg.Cluster.ReapAfter) {
		s.log.Warn("cluster.reap_after cannot change while running; restart the agent")
	}
	c := s.c()
	if c == nil {
		return
	}
	if err := c.SetJoin(gossip.ConfigFrom(cfg).Join); err != nil {
		s.log.Error("reload gossip peers", "err", err)
	}
	if len(cfg.Cluster.Keys) > 0 {
		if err := c.SetKeys(cfg.Cluster.Keys); err != nil {
			s.log.Error("reload gossip keys", "err", err)
		}
	}
}
