package overlay

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Mirror keeps, per VXLAN device, the entries the kernel holds as the last
// Sync left them (what it read, then what it wrote), so that a pass does
// not dump the device's FDB and neighbour tables again while nothing else
// touched them: at 10,000 endpoints those dumps are most of a resync
// pass's time and allocations.
//
// The watcher that owns the mirror (Watcher.Mirror) checks every FDB and
// neighbour notification against it. A notification the mirror explains
// (the kernel now holds what the mirror says, as after our own writes)
// changes nothing; any other one, a link change, a failed write, a broken
// or not yet made subscription makes the mirror forget the device, and
// the next Sync reads the kernel again and repairs the drift. A device's
// copy is also re-read once it is older than maxMirrorAge, as a backstop.
//
// The zero value is not usable; get one from a Watcher.
type Mirror struct {
	mu    sync.Mutex
	seed  maphash.Seed
	live  bool   // a subscription is up: changes from now on are seen
	gen   uint64 // subscriptions made: a read spanning a new one is not kept
	links map[int]*linkMirror
	now   func() time.Time
}

// fdbDst is where a unicast FDB entry sends frames.
type fdbDst struct {
	vtep netip.Addr
	vni  uint32
}

// linkMirror is one device's copy.
type linkMirror struct {
	known  bool // the maps hold what the kernel has
	events uint64
	readAt time.Time // when the kernel was last read

	uni   map[macKey]fdbDst     // unicast FDB entries
	flood map[netip.Addr]bool   // flood-list destinations (VNI 0)
	neigh map[netip.Addr]macKey // neighbour entries: IP -> MAC

	sum               uint64 // hash of the input of the last Sync that wrote everything
	wanted, conflicts int    // its Stats
}

func newMirror() *Mirror {
	return &Mirror{seed: maphash.MakeSeed(), links: map[int]*linkMirror{}, now: time.Now}
}

// Live reports whether the watcher's subscription is up: only then does a
// Sync keep what it read and wrote as the device's copy.
func (m *Mirror) Live() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

// maxMirrorAge is how long a device's copy is trusted without reading the
// kernel: the 30 s resync for small tables, stretched with the table size
// (a read of 10,000 entries costs ~100 ms of CPU), at most 10 minutes.
// Notifications, not this age, are what repair drift within a second.
func maxMirrorAge(entries int) time.Duration {
	return min(10*time.Minute, 30*time.Second*time.Duration(1+entries/1000))
}

// sumOf hashes a Sync's input: the same input against a known kernel
// state means nothing to do.
func (m *Mirror) sumOf(remote []Entry) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	for _, e := range remote {
		a := e.IP.As16()
		h.Write(a[:])
		h.Write(e.MAC)
		v := e.VTEP.As16()
		h.Write(v[:])
	}
	return h.Sum64()
}

// readToken is what a Sync noted before reading the kernel: a read is kept
// only if no notification came for the device while it ran.
type readToken struct {
	gen, events uint64
	live        bool
}

// lookup reports what Sync may skip for device idx and input sum: done
// (the kernel holds exactly that input), or the kernel state without a
// read (ok), or neither (read the kernel; tok is for expect).
func (m *Mirror) lookup(idx int, sum uint64) (done bool, st Stats, actual State, ok bool, tok readToken) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.links[idx]
	if l == nil {
		l = &linkMirror{}
		m.links[idx] = l
	}
	if l.known && m.now().Sub(l.readAt) < maxMirrorAge(len(l.uni)+len(l.neigh)) {
		if l.sum == sum {
			return true, Stats{Wanted: l.wanted, Unchanged: l.wanted, Conflicts: l.conflicts}, State{}, true, tok
		}
		return false, st, l.state(), true, tok
	}
	return false, st, State{}, false, readToken{gen: m.gen, events: l.events, live: m.live}
}

// state renders the copy as a State.
func (l *linkMirror) state() State {
	s := State{FDB: make([]FDBEntry, 0, len(l.uni)+len(l.flood)), Neigh: make([]NeighEntry, 0, len(l.neigh))}
	macs := make([]byte, 0, 6*(len(l.uni)+len(l.neigh)))
	for k, d := range l.uni {
		macs = append(macs, k[:]...)
		s.FDB = append(s.FDB, FDBEntry{MAC: macs[len(macs)-6 : len(macs) : len(macs)], VTEP: d.vtep, VNI: d.vni})
	}
	for v := range l.flood {
		s.FDB = append(s.FDB, FDBEntry{MAC: zeroMAC, VTEP: v})
	}
	for ip, k := range l.neigh {
		macs = append(macs, k[:]...)
		s.Neigh = append(s.Neigh, NeighEntry{IP: ip, MAC: macs[len(macs)-6 : len(macs) : len(macs)]})
	}
	return s
}

// expect records that the kernel is about to hold want (the writes of a
// Sync that planned against a read made with tok, or against the copy
// when read is false). The copy is known afterwards only if it was
// before, or if nothing was notified for the device since the read.
func (m *Mirror) expect(idx int, want State, sum uint64, st Stats, read bool, tok readToken) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.links[idx]
	if l == nil {
		return // forgotten meanwhile (the link changed)
	}
	if read {
		l.known = tok.live && m.live && tok.gen == m.gen && tok.events == l.events
		l.readAt = m.now()
	}
	l.uni = make(map[macKey]fdbDst, len(want.FDB))
	l.flood = map[netip.Addr]bool{}
	for _, f := range want.FDB {
		if f.Flood() {
			l.flood[f.VTEP] = true
		} else {
			l.uni[keyOf(f.MAC)] = fdbDst{vtep: f.VTEP}
		}
	}
	l.neigh = make(map[netip.Addr]macKey, len(want.Neigh))
	for _, n := range want.Neigh {
		l.neigh[n.IP] = keyOf(n.MAC)
	}
	l.sum, l.wanted, l.conflicts = sum, st.Wanted, st.Conflicts
}

// spoil forgets what device idx holds (a write failed: its outcome is
// not known).
func (m *Mirror) spoil(idx int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.links[idx]; l != nil {
		l.known = false
	}
}

// subscribed is called by the watcher when a subscription is up (live)
// or broke: either way, what happened in between was not seen.
func (m *Mirror) subscribed(live bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live = live
	m.gen++
	clear(m.links)
}

// linkChanged forgets device idx: it changed, was deleted or recreated.
func (m *Mirror) linkChanged(idx int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.links, idx)
}

// neighEvent checks a notification against the copy of its device and
// reports whether the copy explains it (then it needs no pass). Anything
// it does not explain makes the copy unknown.
func (m *Mirror) neighEvent(u netlink.NeighUpdate) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.links[u.LinkIndex]
	if l == nil {
		return false
	}
	l.events++
	if !l.known {
		return false
	}
	if !l.explains(u) {
		l.known = false
		return false
	}
	return true
}

// explains reports whether the kernel, after notification u, still holds
// what the copy says. It follows readState's filter: entries Sync does not
// manage concern the copy only when they replace one it holds.
func (l *linkMirror) explains(u netlink.NeighUpdate) bool {
	n := u.Neigh
	del := u.Type == unix.RTM_DELNEIGH
	perm := n.State&netlink.NUD_PERMANENT != 0
	switch n.Family {
	case unix.AF_BRIDGE:
		if n.Flags&netlink.NTF_SELF == 0 || n.Flags&netlink.NTF_MASTER != 0 {
			return true // the bridge's entries for the port: not the device's
		}
		vtep, ok := netip.AddrFromSlice(n.IP)
		if !ok || len(n.HardwareAddr) != 6 {
			return false
		}
		vtep = vtep.Unmap()
		if isZeroMAC(n.HardwareAddr) {
			switch {
			case del:
				return !l.flood[vtep] || n.VNI != 0
			case !perm:
				// The kernel keeps one state per MAC: the whole flood
				// list is not permanent any more.
				return len(l.flood) == 0
			}
			return n.VNI == 0 && l.flood[vtep]
		}
		d, have := l.uni[keyOf(n.HardwareAddr)]
		switch {
		case del:
			return !have || d != fdbDst{vtep: vtep, vni: uint32(n.VNI)}
		case !perm:
			return !have // learned or static: a concern only if it replaced ours
		}
		return have && d == fdbDst{vtep: vtep, vni: uint32(n.VNI)}
	case unix.AF_INET, unix.AF_INET6:
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			return false
		}
		mac, have := l.neigh[ip.Unmap()]
		switch {
		case n.Flags&netlink.NTF_PROXY != 0:
			return true // proxy entries are a table of their own
		case del, !perm:
			return !have
		}
		return have && len(n.HardwareAddr) == 6 && mac == keyOf(n.HardwareAddr)
	}
	return true
}
