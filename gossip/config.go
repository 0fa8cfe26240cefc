package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vishvananda/netns"
)

// DefaultPort is the memberlist port when Config.Port is 0.
const DefaultPort = 7946

// Defaults of Config fields left zero.
const (
	DefaultReapAfter = 60 * time.Second
)

// Config configures one cluster member.
type Config struct {
	// Name is this host's unique name: the memberlist node name and the
	// owner of every record it publishes. Required.
	Name string
	// Addr is the underlay address: memberlist binds and advertises it, and
	// it is the VTEP of this host's endpoints. Required.
	Addr netip.Addr
	// Port is the memberlist TCP and UDP port. Default DefaultPort.
	Port int
	// Join lists the peers to join at start and to rejoin whenever they are
	// not alive members (so a healed partition re-merges); a peer that is a
	// member that died is rejoined only by the members picked for it
	// (bound.go).
	Join []netip.AddrPort
	// Keys are gossip keys (16, 24 or 32 bytes each). The first encrypts;
	// all decrypt. Empty means no encryption.
	Keys [][]byte
	// Fingerprint names a key without revealing it (the agent passes
	// config.KeyFingerprint). With it and Keys, the member announces its
	// keys' fingerprints in its node meta (Member.KeyFingerprints).
	Fingerprint func(key []byte) string
	// ReapAfter is how long the records of a dead or departed host stay in
	// the table. Default DefaultReapAfter.
	ReapAfter time.Duration
	// TombstoneTTL is how long a deletion is remembered so that it beats
	// older copies still travelling. Default 10 push/pull intervals, at
	// least a minute.
	TombstoneTTL time.Duration
	// Tuning holds the protocol timings; zero fields take DefaultTuning's.
	Tuning Tuning
	// Netns, when a namespace handle (> 0), makes memberlist bind its
	// sockets and dial its TCP connections inside that network namespace.
	// In-process tests use it to run many agents, each in its own
	// namespace; the agent in production leaves it zero (the current
	// namespace). The handle must stay open until Shutdown.
	Netns netns.NsHandle
}

// Tuning holds the timings and fan-outs of the protocol. DefaultTuning
// explains each choice; docs/gossip.md has the measurements behind them.
type Tuning struct {
	// GossipInterval is how often queued broadcasts go out to GossipNodes
	// random members.
	GossipInterval time.Duration
	// GossipNodes is the number of random members per gossip round.
	GossipNodes int
	// RetransmitMult: each broadcast is sent RetransmitMult*ceil(log10(N+1))
	// times by each node that queues it.
	RetransmitMult int
	// ProbeInterval and ProbeTimeout drive failure detection.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// SuspicionMult and SuspicionMaxTimeoutMult scale how long a suspect
	// member has to refute before it is declared dead.
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	// PushPullInterval is the period of full-state anti-entropy with one
	// random member (memberlist scales it up above 32 members).
	PushPullInterval time.Duration
	// TCPTimeout bounds push/pull and join connections.
	TCPTimeout time.Duration
	// RejoinInterval is how often configured peers that are not alive
	// members, and members that died, are joined again (a dead member by
	// the few members picked for it, bound.go).
	RejoinInterval time.Duration
	// DirectFanout: while the cluster has at most this many members, an
	// owner sends each change straight to every member (one UDP packet
	// each) besides gossiping it. Negative turns direct sends off.
	DirectFanout int
	// LeaveTimeout bounds the wait for the leave broadcast in Run's exit.
	LeaveTimeout time.Duration
}

// DefaultTuning returns the timings for a LAN underlay.
func DefaultTuning() Tuning {
	return Tuning{
		// Gossip only costs traffic while something is queued, so a short
		// interval buys latency for free on an idle cluster.
		GossipInterval: 50 * time.Millisecond,
		GossipNodes:    4,
		RetransmitMult: 4,
		// memberlist's LAN failure detector, with a shorter upper bound on
		// suspicion so small clusters (few confirmers) decide in seconds.
		ProbeInterval:           1 * time.Second,
		ProbeTimeout:            500 * time.Millisecond,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 3,
		// Anti-entropy is a repair path here, never the delivery path.
		PushPullInterval: 15 * time.Second,
		TCPTimeout:       5 * time.Second,
		RejoinInterval:   5 * time.Second,
		DirectFanout:     64,
		LeaveTimeout:     2 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultTuning.
func (t Tuning) withDefaults() Tuning {
	d := DefaultTuning()
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur(&t.GossipInterval, d.GossipInterval)
	setInt(&t.GossipNodes, d.GossipNodes)
	setInt(&t.RetransmitMult, d.RetransmitMult)
	setDur(&t.ProbeInterval, d.ProbeInterval)
	setDur(&t.ProbeTimeout, d.ProbeTimeout)
	setInt(&t.SuspicionMult, d.SuspicionMult)
	setInt(&t.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	setDur(&t.PushPullInterval, d.PushPullInterval)
	setDur(&t.TCPTimeout, d.TCPTimeout)
	setDur(&t.RejoinInterval, d.RejoinInterval)
	setDur(&t.LeaveTimeout, d.LeaveTimeout)
	if t.DirectFanout == 0 {
		t.DirectFanout = d.DirectFanout
	}
	return t
}

// withDefaults validates c and fills its defaults.
func (c Config) withDefaults() (Config, error) {
	if err := checkName("host name", c.Name); err != nil {
		return c, fmt.Errorf("gossip config: %w", err)
	}
	if !c.Addr.IsValid() || c.Addr.IsUnspecified() || c.Addr.Zone() != "" {
		return c, fmt.Errorf("gossip config: host %q: invalid address %v", c.Name, c.Addr)
	}
	c.Addr = c.Addr.Unmap()
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("gossip config: port %d out of range 1..65535", c.Port)
	}
	for i, k := range c.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return c, fmt.Errorf("gossip config: key %d: %w", i+1, err)
		}
	}
	for _, j := range c.Join {
		if !j.IsValid() || j.Port() == 0 {
			return c, fmt.Errorf("gossip config: invalid join address %v", j)
		}
	}
	if c.ReapAfter < 0 {
		return c, errors.New("gossip config: negative reap_after")
	}
	if c.ReapAfter == 0 {
		c.ReapAfter = DefaultReapAfter
	}
	c.Tuning = c.Tuning.withDefaults()
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = max(10*c.Tuning.PushPullInterval, time.Minute)
	}
	return c, nil
}
