package overlaystep

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/gossip"
)

// TestPeersKeysAndClocks: the members' key fingerprints and measured clock
// offsets reach the API (GET /v1/peers, status) under the names doctor
// reads; an unmeasured clock is absent, not zero.
func TestPeersKeysAndClocks(t *testing.T) {
	v := &pass.GossipView{Members: []gossip.Member{
		{Name: "h1", Self: true, KeyFingerprints: []string{"sha256:aa", "sha256:bb"}, ClockKnown: true},
		{Name: "h2", KeyFingerprints: []string{"sha256:aa"}, ClockOffset: -1500 * time.Millisecond, ClockKnown: true},
		{Name: "h3"},
	}}
	b, err := json.Marshal(Peers(v))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"name":"h1","address":"","state":"alive","records":0,"self":true,"key_fingerprints":["sha256:aa","sha256:bb"],"clock_offset_ms":0}`,
		`"name":"h2","address":"","state":"alive","records":0,"key_fingerprints":["sha256:aa"],"clock_offset_ms":-1500}`,
		`"name":"h3","address":"","state":"alive","records":0}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("peers JSON lacks %s:\n%s", want, b)
		}
	}
	if st := GossipStatus(v); len(st.KeyFingerprints) != 2 || st.KeyFingerprints[0] != "sha256:aa" {
		t.Errorf("status keys: %v", st.KeyFingerprints)
	}
}
