package overlaystep

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
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

// recorder is a Recorder that keeps what it gets.
type recorder struct {
	writes, repairs map[string]int
	lags            []time.Duration
}

func (r *recorder) KernelWrites(kind string, n int)          { r.writes[kind] += n }
func (r *recorder) DriftRepaired(kind string)                { r.repairs[kind]++ }
func (r *recorder) Converged(kind string, lag time.Duration) { r.lags = append(r.lags, lag) }

// TestLagTracker: only other hosts' records written since the start, that
// became live with a known origin, are timed, once each, when programmed.
func TestLagTracker(t *testing.T) {
	start := time.Unix(1700000000, 0)
	var lt lagTracker
	obs := lt.observe("h1", start)
	for _, ch := range []gossip.Change{
		{Owner: "h2", Live: true, Origin: start.Add(time.Second)},     // timed
		{Owner: "h1", Live: true, Origin: start.Add(time.Second)},     // our own
		{Owner: "h2", Live: false},                                    // a removal
		{Owner: "h2", Live: true},                                     // origin unknown
		{Owner: "h3", Live: true, Origin: start.Add(-time.Hour)},      // old news at join
		{Owner: "h3", Live: true, Origin: start.Add(2 * time.Second)}, // timed
	} {
		obs(ch)
	}
	r := &recorder{writes: map[string]int{}, repairs: map[string]int{}}
	lt.programmed(r, start.Add(3*time.Second))
	lt.programmed(r, start.Add(9*time.Second)) // nothing new
	if len(r.lags) != 2 || r.lags[0] != 2*time.Second || r.lags[1] != time.Second {
		t.Fatalf("lags %v", r.lags)
	}
	s := &Step{Metrics: r}
	s.recordSync(overlay.Stats{FDBWrites: 2, NeighWrites: 1}, true)
	s.recordSync(overlay.Stats{FDBWrites: 1}, false)
	s.recordDevice("device", true, false)
	if r.writes["fdb"] != 3 || r.writes["neigh"] != 1 || r.writes["device"] != 1 || r.repairs["fdb"] != 1 || r.repairs["neigh"] != 1 || r.repairs["device"] != 0 {
		t.Fatalf("writes %v repairs %v", r.writes, r.repairs)
	}
}
