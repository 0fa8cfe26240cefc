package overlay

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchRcvBuf is the receive buffer of each subscription socket. A Sync of
// thousands of entries makes as many notifications; when they still
// overflow it, the subscription is renewed and a resync signalled.
const watchRcvBuf = 4 << 20

// Watcher signals when the kernel state of a set of links changes: the
// link itself (created, deleted, changed), its FDB or neighbour entries, or
// its addresses. Signals coalesce in a channel of size one and never block
// the watcher, so a burst of changes costs one resync. The agent's loop
// selects on C() and re-runs Sync (and EnsureDevice) when it fires.
//
// The watcher also keeps a Mirror of the devices' entries (see Mirror):
// notifications it explains, such as those of the agent's own writes
// through SyncWith, do not fire the channel. Others do, and the resync
// that follows finds what changed.
type Watcher struct {
	// Log receives the watcher's own troubles (subscriptions that failed or
	// broke); nil means slog.Default(). Set it before Run.
	Log *slog.Logger

	ns     netns.NsHandle
	c      chan struct{}
	mirror *Mirror

	rcvBuf   int          // receive buffer of each subscription socket
	sessions atomic.Int64 // subscriptions made so far (for tests)

	mu    sync.Mutex
	names map[string]bool
	index map[int]string // ifindex of watched links seen so far
}

// NewWatcher makes a watcher for links in namespace ns (netns.None() means
// the current one; a handle must stay open while the watcher runs). Start
// it with Run.
func NewWatcher(ns netns.NsHandle, links ...string) *Watcher {
	w := &Watcher{ns: ns, c: make(chan struct{}, 1), index: map[int]string{}, rcvBuf: watchRcvBuf, mirror: newMirror()}
	w.SetLinks(links...)
	return w
}

// Mirror returns the watcher's copy of the devices' entries, for
// SyncWith. It is trusted only while Run is subscribed.
func (w *Watcher) Mirror() *Mirror { return w.mirror }

// C returns the signal channel.
func (w *Watcher) C() <-chan struct{} { return w.c }

// SetLinks replaces the set of watched link names (e.g. when networks come
// and go) and signals, since the new links were not watched before.
func (w *Watcher) SetLinks(links ...string) {
	w.mu.Lock()
	w.names = map[string]bool{}
	for _, l := range links {
		w.names[l] = true
	}
	for i, n := range w.index {
		if !w.names[n] {
			delete(w.index, i)
		}
	}
	w.mu.Unlock()
	w.signal()
}

// Links returns the watched link names, sorted.
func (w *Watcher) Links() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (w *Watcher) signal() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// Run subscribes and forwards signals until ctx is done. When a
// subscription breaks (the netlink library closes its channel on a receive
// error such as an overflow), Run renews all three and signals a resync,
// since notifications were lost; failures to subscribe are retried with
// backoff up to a second.
func (w *Watcher) Run(ctx context.Context) {
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.log().Warn("netlink subscription failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		w.log().Debug("netlink subscription broke; resubscribing", "reason", "lost notifications")
	}
}

// session runs one set of subscriptions until one of them breaks or ctx is
// done. It returns an error only when subscribing failed.
func (w *Watcher) session(ctx context.Context) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 256)
	addrs := make(chan netlink.AddrUpdate, 64)
	var started []func()
	// On return: stop the subscriptions and drain their channels until the
	// library's goroutines close them, so none stays blocked on a send.
	defer func() {
		w.mirror.subscribed(false)
		close(done)
		for _, drain := range started {
			go drain()
		}
	}()
	ns := w.ns
	errCB := func(err error) {
		w.log().Debug("netlink subscription error", "err", err)
	}

	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{
		Namespace: &ns, ErrorCallback: errCB, ListExisting: true,
		ReceiveBufferSize: w.rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return err
	}
	started = append(started, func() {
		for range links {
		}
	})
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{
		Namespace: &ns, ErrorCallback: errCB,
		ReceiveBufferSize: w.rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return err
	}
	started = append(started, func() {
		for range neighs {
		}
	})
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{
		Namespace: &ns, ErrorCallback: errCB,
		ReceiveBufferSize: w.rcvBuf, ReceiveBufferForceSize: true,
	}); err != nil {
		return err
	}
	started = append(started, func() {
		for range addrs {
		}
	})
	// Events between the last resync and this subscription are lost.
	w.sessions.Add(1)
	w.mirror.subscribed(true)
	w.signal()

	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-links:
			if !ok {
				links = nil
				return nil
			}
			w.mirror.linkChanged(u.Link.Attrs().Index)
			if w.linkEvent(u) {
				w.signal()
			}
		case u, ok := <-neighs:
			if !ok {
				neighs = nil
				return nil
			}
			if !w.mirror.neighEvent(u) && w.neighEvent(u) {
				w.signal()
			}
		case u, ok := <-addrs:
			if !ok {
				addrs = nil
				return nil
			}
			if w.watchedIndex(u.LinkIndex) {
				w.signal()
			}
		}
	}
}

// linkEvent records the index of watched links and reports whether u is
// about one.
func (w *Watcher) linkEvent(u netlink.LinkUpdate) bool {
	a := u.Link.Attrs()
	w.mu.Lock()
	defer w.mu.Unlock()
	_, known := w.index[a.Index]
	if w.names[a.Name] {
		if u.Header.Type == unix.RTM_DELLINK {
			delete(w.index, a.Index)
		} else {
			w.index[a.Index] = a.Name
		}
		return true
	}
	if known {
		// Renamed away from a watched name, or deleted.
		delete(w.index, a.Index)
		return true
	}
	return false
}

func (w *Watcher) watchedIndex(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.index[i]
	return ok
}

// neighEvent reports whether a neighbour or FDB notification concerns a
// watched link. The bridge's own FDB entries for our port (those without
// NTF_SELF: the bridge learning MACs behind it) change all the time and are
// not ours, so they are ignored.
func (w *Watcher) neighEvent(u netlink.NeighUpdate) bool {
	if u.Family == unix.AF_BRIDGE && u.Flags&netlink.NTF_SELF == 0 {
		return false
	}
	return w.watchedIndex(u.LinkIndex)
}

func (w *Watcher) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.Default()
}
