package bridge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Drift kinds passed to the callback of Watch.
const (
	DriftRules = "rules"      // iptables rules changed by someone else
	DriftFiles = "name files" // a name file changed by someone else
	DriftLinks = "links"      // a link of ours deleted by someone else
)

// ruleWatcher is an ipt.Iptables that can watch for rule changes made by
// others (*ipt.Runner).
type ruleWatcher interface {
	Watch(ctx context.Context, onDrift func(why string)) error
}

// invalidator is an ipt.Iptables that keeps what it wrote in memory.
type invalidator interface{ Invalidate() }

// drift is the Reconciler's view of what it last saw or wrote in the name
// files, so a change it made itself is not mistaken for drift, and the
// name-file directories to watch.
type drift struct {
	mu    sync.Mutex
	seen  map[string][]byte // path -> content last read or written; nil: absent
	dirs  map[string]bool   // directories to watch
	dirsC chan struct{}     // signalled when dirs change

	deleted map[string]time.Time // host links we deleted lately

	// netns holds what the last passes read of each container namespace,
	// until a pass changes it or Invalidate: an attach then reads only
	// the namespace it adds, not every container's.
	netns map[string]*NetnsState
	// files holds the name files read with a cached namespace, dropped
	// with it, and when the watch sees someone else change one.
	files map[string]map[string][]byte
}

// forgetAll drops every cached namespace and its files (caller holds mu).
func (d *drift) forgetAll() {
	d.netns = map[string]*NetnsState{}
	d.files = map[string]map[string][]byte{}
}

// forget drops one cached namespace and its files (caller holds mu).
func (d *drift) forget(ns string) {
	delete(d.netns, ns)
	delete(d.files, ns)
}

// unwatchDir takes dir off the watched name-file directories before we
// remove it, so that the watch does not take its removal for drift.
func (r *Reconciler) unwatchDir(dir string) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.dirs, dir)
}

// watched reports whether dir is a name-file directory being watched.
func (r *Reconciler) watched(dir string) bool {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dirs[dir]
}

// cachedFiles returns the name files last read of namespace ns, if it is
// still cached.
func (r *Reconciler) cachedFiles(ns string) (map[string][]byte, bool) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.netns[ns]; !ok {
		return nil, false
	}
	f, ok := d.files[ns]
	return f, ok
}

// cacheFiles keeps the name files read of namespace ns with its cached
// state (not when that state is not cached: a pass changed it meanwhile).
func (r *Reconciler) cacheFiles(ns string, files map[string][]byte) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.netns[ns]; ok {
		d.files[ns] = files
	}
}

// forgetFiles drops the cache of the namespace whose name-file directory
// is dir (the watch saw someone else change it).
func (r *Reconciler) forgetFiles(dir string) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forget(filepath.Base(dir))
}

func (r *Reconciler) driftState() *drift {
	r.driftOnce.Do(func() {
		r.drift = &drift{seen: map[string][]byte{}, dirs: map[string]bool{}, dirsC: make(chan struct{}, 1), deleted: map[string]time.Time{}, netns: map[string]*NetnsState{}, files: map[string]map[string][]byte{}}
	})
	return r.drift
}

// saw records a name file's content as read or written by us.
func (r *Reconciler) saw(path string, content []byte) {
	d := r.driftState()
	d.mu.Lock()
	d.seen[path] = slices.Clone(content)
	d.mu.Unlock()
}

// watchDirs sets the name-file directories to watch: those of want's
// containers that exist.
func (r *Reconciler) watchDirs(want *State) {
	d := r.driftState()
	next := map[string]bool{}
	for _, c := range want.Containers {
		if !validName(c.Netns) {
			continue
		}
		dir := filepath.Join(r.etc(), c.Netns)
		d.mu.Lock()
		known := d.dirs[dir]
		d.mu.Unlock()
		if known {
			next[dir] = true
		} else if _, err := os.Stat(dir); err == nil {
			next[dir] = true
		}
	}
	d.mu.Lock()
	same := len(next) == len(d.dirs)
	for dir := range next {
		same = same && d.dirs[dir]
	}
	d.dirs = next
	d.mu.Unlock()
	if !same {
		select {
		case d.dirsC <- struct{}{}:
		default:
		}
	}
}

// Invalidate makes the next pass read everything again (every container
// namespace, every iptables chain) instead of trusting what the passes
// before read and wrote: for the periodic resync, a retry after an error,
// and drift.
func (r *Reconciler) Invalidate() {
	if i, ok := r.IPT.(invalidator); ok {
		i.Invalidate()
	}
	d := r.driftState()
	d.mu.Lock()
	d.forgetAll()
	d.mu.Unlock()
}

// readNetnsCached is readNetns, answered from what an earlier pass read
// when nothing changed that namespace since.
func (r *Reconciler) readNetnsCached(ns string) (*NetnsState, error) {
	d := r.driftState()
	d.mu.Lock()
	st, ok := d.netns[ns]
	d.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := r.readNetns(ns)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.netns[ns] = st
	d.mu.Unlock()
	return st, nil
}

// forgetTouched drops the cached namespaces a plan changed (all of them
// when anything failed: what a failed op left is unknown).
func (r *Reconciler) forgetTouched(want *State, plan *Plan, res *Result) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	if res.Err() != nil {
		d.forgetAll()
		return
	}
	netnsOf := map[string]string{}
	wanted := map[string]bool{}
	for _, c := range want.Containers {
		netnsOf[c.Name] = c.Netns
		wanted[c.Netns] = true
	}
	for _, op := range plan.Ops {
		if op.Netns != "" {
			d.forget(op.Netns)
		}
		if op.Container == "" {
			continue
		}
		// A host-side op of a container (its veth's host end) changes
		// what its namespace holds too.
		ns, ok := netnsOf[op.Container]
		if !ok {
			// A container going away: which namespace is not told, but it
			// is none a wanted container has (each has its own), so only
			// those are dropped; an attach after a removal still finds
			// every other container's namespace read.
			for cached := range d.netns {
				if !wanted[cached] {
					d.forget(cached)
				}
			}
			continue
		}
		d.forget(ns)
	}
}

// Watch calls onDrift with a kind (DriftRules, DriftFiles, DriftLinks)
// and a reason whenever someone else changes what the reconciler made and
// a pass must repair it: rules (through the IPT's own watch, when it has
// one), the name files of the containers of the last pass (inotify) and
// links of ours deleted from the host namespace (netlink). Changes made by
// the reconciler itself are recognised and ignored, so a repair does not
// trigger another. It returns when ctx is done.
func (r *Reconciler) Watch(ctx context.Context, onDrift func(kind, why string)) {
	// Whatever drifted, the pass that repairs it reads everything.
	drifted := onDrift
	onDrift = func(kind, why string) {
		r.Invalidate()
		drifted(kind, why)
	}
	var wg sync.WaitGroup
	if w, ok := r.IPT.(ruleWatcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Watch(ctx, func(why string) { onDrift(DriftRules, why) }); err != nil {
				r.log().Warn("cannot watch iptables rules; outside changes wait for the periodic resync", "err", err)
			}
		}()
	}
	if k, ok := r.Kernel.(*NetlinkKernel); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watchLinks(ctx, k, func(name string) { onDrift(DriftLinks, "deleted "+name) })
		}()
	}
	if err := r.watchFiles(ctx, onDrift); err != nil {
		r.log().Warn("cannot watch name files; outside changes wait for the periodic resync", "err", err)
	}
	wg.Wait()
}

const fileEvents = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// watchFiles watches the name-file directories with inotify.
func (r *Reconciler) watchFiles(ctx context.Context, onDrift func(kind, why string)) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return err
	}
	// Reads go through Go's poller (the fd is non-blocking): an idle
	// agent sleeps until an event, a new directory or the end, instead
	// of waking a thread every 200 ms.
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	d := r.driftState()
	wds := map[string]int{} // dir -> watch descriptor
	dirOf := map[int]string{}
	resync := func() {
		d.mu.Lock()
		var want []string
		for dir := range d.dirs {
			want = append(want, dir)
		}
		d.mu.Unlock()
		for dir, wd := range wds {
			if !slices.Contains(want, dir) {
				unix.InotifyRmWatch(fd, uint32(wd))
				delete(wds, dir)
				delete(dirOf, wd)
			}
		}
		for _, dir := range want {
			if _, ok := wds[dir]; ok {
				continue
			}
			wd, err := unix.InotifyAddWatch(fd, dir, fileEvents)
			if err != nil {
				continue // gone meanwhile; the next pass makes it again
			}
			wds[dir], dirOf[wd] = wd, dir
		}
	}
	resync()
	type batch struct {
		evs []inotifyEvent
		err error
	}
	reads := make(chan batch)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			b := batch{err: err}
			if err == nil {
				b.evs = parseInotify(buf[:n])
			}
			select {
			case reads <- b:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var b batch
		select {
		case <-ctx.Done():
			return nil
		case <-d.dirsC:
			resync()
			continue
		case b = <-reads:
		}
		if b.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return b.err
		}
		for _, ev := range b.evs {
			dir, ok := dirOf[ev.wd]
			switch {
			case ev.mask&unix.IN_Q_OVERFLOW != 0:
				r.Invalidate()
				onDrift(DriftFiles, "inotify queue overflowed")
			case !ok:
			case ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
				delete(wds, dir)
				delete(dirOf, ev.wd)
				r.forgetFiles(dir)
				if r.watched(dir) { // not one a pass removed
					onDrift(DriftFiles, dir+" removed")
				}
			case slices.Contains(NameFiles, ev.name) && r.changedByOthers(filepath.Join(dir, ev.name)):
				r.forgetFiles(dir)
				onDrift(DriftFiles, filepath.Join(dir, ev.name)+" changed")
			}
		}
	}
}

// changedByOthers reports whether path differs from what we last read or
// wrote there.
func (r *Reconciler) changedByOthers(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return true
	}
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	seen, ok := d.seen[path]
	if !ok {
		return true
	}
	if err != nil {
		return seen != nil
	}
	return seen == nil || !bytes.Equal(seen, b)
}

type inotifyEvent struct {
	wd   int
	mask uint32
	name string
}

// parseInotify splits a read from an inotify descriptor into events.
func parseInotify(b []byte) []inotifyEvent {
	var out []inotifyEvent
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:4]))
		mask := binary.NativeEndian.Uint32(b[4:8])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if end > len(b) || end < unix.SizeofInotifyEvent {
			break
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		out = append(out, inotifyEvent{wd: int(wd), mask: mask, name: name})
		b = b[end:]
	}
	return out
}
