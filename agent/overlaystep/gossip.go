package overlaystep

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Defaults of the gossip source.
const (
	// DefaultJoinWait bounds how long the overlay waits for the cluster
	// after start before it programs what it has (see pass.GossipView.Ready).
	DefaultJoinWait = 5 * time.Second
	// joinGrace is how long a peer must have been alive before its state
	// counts as heard: memberlist reports the peer alive just before the
	// push/pull that carries its table is merged.
	joinGrace = 300 * time.Millisecond
	// memberPoll is how often membership is compared for changes (member
	// state changes do not fire gossip's Changed) while it changes or
	// gossip is not ready; memberPollIdle once it stood still for
	// memberPollSettle. Member states matter to a pass only for address
	// conflicts with dead hosts (table changes trigger at once anyway), so
	// an idle agent wakes once a second for this instead of four times.
	memberPoll       = 250 * time.Millisecond
	memberPollIdle   = time.Second
	memberPollSettle = 2 * time.Second
	// checkDelay is how long after a table change the fast path already
	// programmed the pass that checks it runs: a burst of changes (churn on
	// other hosts, a large join) costs one pass, not one per change. With
	// 10 hosts every attach anywhere made nine full passes otherwise.
	checkDelay = 500 * time.Millisecond
)

// gossipSource runs this host's gossip member: every table change and
// every membership change triggers a pass, and view reads it once at the
// top of each pass (pass.Snapshot.Gossip).
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
	gc := ConfigFrom(cfg)
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

// view reads the cluster.
func (s *gossipSource) view() *pass.GossipView {
	c := s.c()
	if c == nil {
		return &pass.GossipView{At: time.Now()}
	}
	v := &pass.GossipView{At: time.Now(), Snapshot: c.Snapshot(), Members: c.Members(), Stats: c.Stats()}
	v.Ready, v.ReadyAt = s.ready(v.Members)
	return v
}

// ready decides pass.GossipView.Ready.
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
	t := time.NewTimer(memberPoll)
	defer t.Stop()
	var last string
	ready := false
	stable := time.Now()       // membership and readiness unchanged since
	var check <-chan time.Time // the delayed pass after fast-path changes
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
			if s.onChange == nil {
				s.trigger()
				continue
			}
			s.onChange()
			if check == nil {
				check = time.After(checkDelay)
			}
		case <-check:
			check = nil
			s.trigger()
		case now := <-t.C:
			ms := c.Members()
			fp := memberPrint(ms)
			r, _ := s.ready(ms)
			if fp != last || r != ready {
				last, ready = fp, r
				stable = now
				s.trigger()
			}
			next := memberPoll
			if ready && now.Sub(stable) >= memberPollSettle {
				next = memberPollIdle
			}
			t.Reset(next)
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
	if err := c.SetJoin(ConfigFrom(cfg).Join); err != nil {
		s.log.Error("reload gossip peers", "err", err)
	}
	if len(cfg.Cluster.Keys) > 0 {
		if err := c.SetKeys(cfg.Cluster.Keys); err != nil {
			s.log.Error("reload gossip keys", "err", err)
		}
	}
}

// ConfigFrom takes the cluster settings of a host config: name, address,
// bind port, join peers (a peer without a port gets the bind port), keys and
// reap_after. Tuning stays at its defaults and Netns unset.
func ConfigFrom(cfg *config.Config) gossip.Config {
	c := gossip.Config{
		Name:      cfg.Host.Name,
		Addr:      cfg.Host.Address,
		Port:      cfg.Cluster.BindPort,
		Keys:      cfg.Cluster.Keys,
		ReapAfter: time.Duration(cfg.Cluster.ReapAfter),
		// Members announce their keys' fingerprints (doctor compares them).
		Fingerprint: config.KeyFingerprint,
	}
	port := cfg.Cluster.BindPort
	if port == 0 {
		port = gossip.DefaultPort
	}
	for _, j := range cfg.Cluster.Join {
		c.Join = append(c.Join, j.AddrPort(port))
	}
	return c
}
