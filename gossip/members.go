package gossip

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberState is a member's state as this node sees it.
type MemberState uint8

// Member states.
const (
	// MemberAlive answers probes.
	MemberAlive MemberState = iota
	// MemberSuspect missed probes and has a moment to refute.
	MemberSuspect
	// MemberDead was declared failed; its records stay until ReapAt.
	MemberDead
	// MemberLeft left on purpose (agent stopped); its records stay until
	// ReapAt, as for a dead member, so a restart drops no traffic.
	MemberLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s MemberState) String() string {
	switch s {
	case MemberAlive:
		return "alive"
	case MemberSuspect:
		return "suspect"
	case MemberDead:
		return "dead"
	case MemberLeft:
		return "left"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}

// MarshalText writes the state's name (JSON).
func (s MemberState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Member is one cluster member as this node sees it.
type Member struct {
	// Name is the host name.
	Name string `json:"name"`
	// Addr is the memberlist address: the host's underlay address (its VTEP).
	Addr netip.AddrPort `json:"address"`
	// State is alive, suspect, dead or left.
	State MemberState `json:"state"`
	// Records counts the host's live records in the table.
	Records int `json:"records"`
	// Since is when the member entered its state.
	Since time.Time `json:"since"`
	// LastSeen is when the member was last known alive (now, if it is).
	LastSeen time.Time `json:"last_seen"`
	// ReapAt is when a dead or departed member's records are removed.
	ReapAt time.Time `json:"reap_at,omitzero"`
	// Self marks this host.
	Self bool `json:"self,omitempty"`
}

// member is the directory entry behind Member, fed by memberlist events.
type member struct {
	node     memberlist.Node // copy, for direct sends
	addr     netip.AddrPort
	state    MemberState // alive, dead or left (suspect comes from memberlist)
	since    time.Time
	lastSeen time.Time
	reaped   bool // records removed; records arriving for it are ignored
	leaving  bool // it announced a Leave: down means left, not dead
}

func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

func copyNode(n *memberlist.Node) memberlist.Node {
	c := *n
	c.Addr = append([]byte(nil), n.Addr...)
	c.Meta = append([]byte(nil), n.Meta...)
	return c
}
