package overlaybench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
)

// MirrorPasses times what the agent's passes cost between resyncs on a
// device already holding eps: a pass whose input is unchanged, and one
// that adds a single endpoint (the fast path after an attach on another
// host), both against the watcher's mirror (overlay.SyncWith), and the
// same single addition planned against a dump of the kernel (overlay.Sync,
// what every pass did before the mirror).
func MirrorPasses(ns, link string, eps []overlay.Entry) (noop, addMirror, addDump Result, err error) {
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return noop, addMirror, addDump, err
	}
	defer nsh.Close()
	h, err := handle(ns)
	if err != nil {
		return noop, addMirror, addDump, err
	}
	defer h.Close()
	w := overlay.NewWatcher(nsh, link)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	m := w.Mirror()
	for deadline := time.Now().Add(5 * time.Second); !m.Live(); {
		if time.Now().After(deadline) {
			return noop, addMirror, addDump, fmt.Errorf("watcher on %q in %q: no subscription within 5s", link, ns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The first pass reads the kernel and fills the copy.
	if _, err := overlay.SyncWith(h, link, eps, m); err != nil {
		return noop, addMirror, addDump, err
	}
	timed := func(method string, remote []overlay.Entry, m *overlay.Mirror) (Result, error) {
		start := time.Now()
		var st overlay.Stats
		var err error
		if m != nil {
			st, err = overlay.SyncWith(h, link, remote, m)
		} else {
			st, err = overlay.Sync(h, link, remote)
		}
		return Result{Method: method, Endpoints: len(remote), Entries: st.Wanted, Duration: time.Since(start)}, err
	}
	if noop, err = timed("no-op pass, mirror", eps, m); err != nil {
		return noop, addMirror, addDump, err
	}
	more := append(eps[:len(eps):len(eps)], extra(eps, 0))
	if addMirror, err = timed("one endpoint added, mirror", more, m); err != nil {
		return noop, addMirror, addDump, err
	}
	more = append(more[:len(more):len(more)], extra(eps, 1))
	addDump, err = timed("one endpoint added, kernel dump", more, nil)
	return noop, addMirror, addDump, err
}

// extra is an endpoint outside Endpoints' ranges, on eps' first VTEP.
func extra(eps []overlay.Entry, i int) overlay.Entry {
	vtep := netip.MustParseAddr("198.18.128.0")
	if len(eps) > 0 {
		vtep = eps[0].VTEP
	}
	return overlay.Entry{IP: netip.AddrFrom4([4]byte{10, 255, 255, byte(i + 1)}), MAC: net.HardwareAddr{0x02, 0xb1, 0, 0, 0, byte(i + 1)}, VTEP: vtep}
}
