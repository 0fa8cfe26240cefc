package overlaystep

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/overlay"
)

// Who holds each overlay address is decided by overlay.ResolveRemote
// (pure, over the pass's gossip view); this file turns a gossip view into
// its input and the answer into kernel entries.

// localEndpoint is one of this host's endpoints on an overlay network.
type localEndpoint = overlay.LocalEndpoint

// epKey identifies an endpoint record (for the notes).
type epKey = overlay.EndpointKey

// resolveRemote is overlay.ResolveRemote over the gossip view v (nil: no
// gossip).
func resolveRemote(self string, nets map[string]bool, v *pass.GossipView, local []localEndpoint) overlay.Resolution {
	var recs []overlay.EndpointRecord
	if v != nil {
		// One allocation: growing by append copied 10,000 records a pass
		// several times over.
		recs = make([]overlay.EndpointRecord, 0, len(v.Snapshot.Endpoints)+len(v.Snapshot.Shadowed))
		for _, list := range [][]gossip.Endpoint{v.Snapshot.Endpoints, v.Snapshot.Shadowed} {
			for _, e := range list {
				recs = append(recs, overlay.EndpointRecord{
					Network: e.Network, Container: e.Container, Host: e.Host, IP: e.IP,
					MAC: e.MAC, VTEP: e.VTEP, Names: e.Names, Version: e.Version,
				})
			}
		}
	}
	return overlay.ResolveRemote(self, nets, recs, v.Alive, local)
}

// entriesFor turns the remote endpoints of one network into the entries
// overlay.Sync programs, oldest first, leaving out (and reporting) entries
// the device cannot take: a VTEP of the other address family, this host's
// own address, a MAC that is not Ethernet.
func entriesFor(network string, remote []pass.RemoteEndpoint, local netip.Addr) (entries []overlay.Entry, bad []error) {
	n := 0
	for _, r := range remote {
		if r.Network == network {
			n++
		}
	}
	entries = make([]overlay.Entry, 0, n)
	for _, r := range remote {
		if r.Network != network {
			continue
		}
		e := overlay.Entry{IP: r.IP, MAC: r.MAC, VTEP: r.VTEP}
		if err := e.Validate(local); err != nil {
			bad = append(bad, fmt.Errorf("endpoint %q of host %q: %w", r.Container, r.Host, err))
			continue
		}
		entries = append(entries, e)
	}
	return entries, bad
}

// resolveCache keeps the last resolution and a key of what it was made
// from. A resync pass re-resolves a table that has not changed: at 10,000
// endpoints that was a tenth of an idle agent's CPU (docs/benchmarks.md,
// Cost). The result is shared between the callers that hit it; they only
// read it.
type resolveCache struct {
	mu  sync.Mutex
	key string
	res overlay.Resolution
}

// resolve is resolveRemote, or the last result when its inputs are the
// same: the table's generation (gossip bumps it on every change to the
// live view), which members count as alive, the overlay networks, this
// host's name and its endpoints.
func (c *resolveCache) resolve(self string, nets map[string]bool, v *pass.GossipView, local []localEndpoint) overlay.Resolution {
	if v == nil {
		return resolveRemote(self, nets, v, local)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%d|%d|", self, v.Snapshot.Self, v.Snapshot.Generation, len(v.Snapshot.Endpoints))
	for _, n := range slices.Sorted(maps.Keys(nets)) {
		fmt.Fprintf(&b, "%s,", n)
	}
	b.WriteByte('|')
	for _, m := range v.Members {
		alive := m.Name == v.Snapshot.Self || m.State == gossip.MemberAlive || m.State == gossip.MemberSuspect
		fmt.Fprintf(&b, "%s=%v,", m.Name, alive)
	}
	fmt.Fprintf(&b, "|%v", local)
	key := b.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == key {
		return c.res
	}
	c.res = resolveRemote(self, nets, v, local)
	c.key = key
	return c.res
}
