package agent

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vxmesh/vxmesh/bridge"
)

// TestBridgeSkip: a pass skips the bridge reconcile only when the last one
// succeeded with the same desired state and record and nothing (drift, a
// resync, a retry) marked it stale since.
func TestBridgeSkip(t *testing.T) {
	state := func(ip string) *bridge.State {
		return &bridge.State{Containers: []bridge.Container{{Name: "a", Netns: "ns-a",
			Interfaces: []bridge.Interface{{Network: "web", IfName: "eth0", Addr: netip.MustParsePrefix(ip)}}}}}
	}
	rec := bridge.Record{Namespaces: []string{"ns-a"}}
	ok := &bridge.Result{Record: rec}
	for _, c := range []struct {
		name  string
		setup func(b *bridgeSkip)
		want  *bridge.State
		rec   bridge.Record
		skip  bool
	}{
		{"nothing reconciled yet", func(b *bridgeSkip) {}, state("10.1.0.2/24"), rec, false},
		{"same state and record", func(b *bridgeSkip) { b.done(state("10.1.0.2/24"), ok, nil) }, state("10.1.0.2/24"), rec, true},
		{"desired state changed", func(b *bridgeSkip) { b.done(state("10.1.0.2/24"), ok, nil) }, state("10.1.0.3/24"), rec, false},
		{"record changed", func(b *bridgeSkip) { b.done(state("10.1.0.2/24"), ok, nil) }, state("10.1.0.2/24"), bridge.Record{}, false},
		{"drift, resync or retry since", func(b *bridgeSkip) { b.done(state("10.1.0.2/24"), ok, nil); b.stale.Store(true) }, state("10.1.0.2/24"), rec, false},
		{"last reconcile failed", func(b *bridgeSkip) { b.done(state("10.1.0.2/24"), ok, errors.New("boom")) }, state("10.1.0.2/24"), rec, false},
		{"last reconcile failed for a container", func(b *bridgeSkip) {
			b.done(state("10.1.0.2/24"), &bridge.Result{Record: rec, Containers: map[string]error{"a": errors.New("boom")}}, nil)
		}, state("10.1.0.2/24"), rec, false},
		{"a good reconcile after a failed one", func(b *bridgeSkip) {
			b.done(state("10.1.0.2/24"), ok, errors.New("boom"))
			b.done(state("10.1.0.2/24"), ok, nil)
		}, state("10.1.0.2/24"), rec, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bridgeSkip
			c.setup(&b)
			if got := b.unchanged(c.want, c.rec); got != c.skip {
				t.Errorf("unchanged = %v, want %v", got, c.skip)
			}
		})
	}
}
