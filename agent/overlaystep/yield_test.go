package overlaystep

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
)

// TestPoolYieldsLostAddress: an address this host allocated that another
// live host's endpoint keeps after a partition (overlay.YieldAddrs) is
// refused to its recorded owner, so Build allocates the container anew;
// a static reservation of it, or one by any other owner, is not refused.
func TestPoolYieldsLostAddress(t *testing.T) {
	n := &config.Network{Name: "mesh", Driver: config.DriverOverlay, Subnet: netip.MustParsePrefix("10.0.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.1")}
	addr := netip.MustParseAddr("10.0.9.2")
	members := map[string]gossip.MemberState{"h1": gossip.MemberAlive, "h2": gossip.MemberAlive}
	for _, c := range []struct {
		name   string
		other  gossip.Endpoint
		h2     gossip.MemberState
		yields bool
	}{
		{"a static address of a live host (outside its blocks) wins", gep("h2", "mesh", "moved", "10.0.9.2", 9), gossip.MemberAlive, true},
		{"an older allocated address in a block both claimed wins", gep("h2", "mesh", "b", "10.0.9.2", 1), gossip.MemberAlive, true},
		{"a newer allocated address in a block both claimed loses", gep("h2", "mesh", "b", "10.0.9.2", 9), gossip.MemberAlive, false},
		{"a dead host's record makes nobody yield", gep("h2", "mesh", "moved", "10.0.9.2", 1), gossip.MemberDead, false},
		{"a runtime's container (CNI) is never renumbered", gep("h2", "mesh", "moved", "10.0.9.2", 9), gossip.MemberAlive, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStep()
			s.claims["mesh"] = []pass.OverlayClaim{{Prefix: netip.MustParsePrefix("10.0.9.0/24"), Settled: true}}
			members["h2"] = c.h2
			v := view("h1", members, []gossip.Endpoint{gep("h1", "mesh", "a", "10.0.9.2", 5)}, []gossip.Endpoint{c.other})
			v.ReadyAt = time.Now()
			v.Snapshot.BlockClaims = []gossip.BlockClaim{{Network: "mesh", Prefix: netip.MustParsePrefix("10.0.9.0/24"), Host: "h1"}}
			if c.other.Container == "b" {
				// The block was claimed on both sides of a cut; h2's claim lost.
				v.Snapshot.Conflicts = []gossip.Conflict{{Kind: gossip.KindBlockClaim, Network: "mesh", Key: "10.0.9.0/24", Winner: "h1", Loser: "h2"}}
			}
			st := pass.NewState()
			st.Allocations = map[string]map[string]netip.Addr{"mesh": {"a": addr}}
			if strings.HasPrefix(c.name, "a runtime's") {
				st.Attachments = []api.AttachRequest{{Runtime: "cni", ID: "x", Name: "a", Network: "mesh"}}
			}
			p := s.Pool(n, &pass.Snapshot{Gossip: v, State: st})
			err := p.Reserve(addr, "a")
			if (err != nil) != c.yields {
				t.Fatalf("reserve the recorded address: %v, want refused %v", err, c.yields)
			}
			if !c.yields {
				return
			}
			if ip, err := p.Allocate("a"); err != nil || ip == addr {
				t.Errorf("allocate anew: %v %v", ip, err)
			}
			if err := p.Reserve(addr, "static"); err != nil {
				t.Errorf("a static reservation of the address: %v", err)
			}
			if len(s.yieldLog["mesh"]) != 1 {
				t.Errorf("logged %v, want the yield", s.yieldLog)
			}
			// Once the conflict is gone, nothing is kept.
			st.Allocations["mesh"]["a"] = netip.MustParseAddr("10.0.9.3")
			s.Pool(n, &pass.Snapshot{Gossip: v, State: st})
			if len(s.yieldLog) != 0 {
				t.Errorf("after the conflict: %v kept", s.yieldLog)
			}
		})
	}
}
