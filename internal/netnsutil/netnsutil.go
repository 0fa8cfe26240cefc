// Package netnsutil manages named network namespaces the way `ip netns`
// does (a bind mount of the namespace under /run/netns/NAME), without
// running `ip`, and runs code inside a namespace on a locked OS thread.
//
// Go schedules goroutines on arbitrary threads, and a network namespace is a
// property of a thread. Every function here that changes a thread's
// namespace runs on a fresh goroutine with its thread locked, switches back
// before unlocking, and leaves the thread locked (so the runtime discards it)
// when it cannot switch back. Callers never see their own thread move.
package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are mounted, as iproute2 expects.
var Dir = "/run/netns"

// ErrNotExist is returned when a named namespace does not exist.
var ErrNotExist = errors.New("network namespace does not exist")

// Path is the bind-mount path of the named namespace. A namespace given
// by path (IsPath: a container runtime's, such as CNI_NETNS) is its own
// path: Exists, Open and Do take either form, Create and Delete only
// names.
func Path(name string) string {
	if IsPath(name) {
		return name
	}
	return filepath.Join(Dir, name)
}

// IsPath reports whether ns names a namespace by an absolute, clean file
// path rather than by a name under Dir.
func IsPath(ns string) bool { return filepath.IsAbs(ns) && filepath.Clean(ns) == ns }

// nsfsMagic is NSFS_MAGIC, the file system type of namespace files.
const nsfsMagic = 0x6e736673

// ValidName reports whether name can be a namespace file name.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") && len(name) <= 255
}

// Exists reports whether a named namespace is mounted at Path(name), or,
// for a path, whether the file is a network namespace file.
func Exists(name string) bool {
	if IsPath(name) {
		var fs unix.Statfs_t
		return unix.Statfs(name, &fs) == nil && int64(fs.Type) == nsfsMagic
	}
	if !ValidName(name) {
		return false
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(Path(name), &st); err != nil {
		return false
	}
	if err := unix.Stat(Dir, &parent); err != nil {
		return false
	}
	// A mounted nsfs file lives on another device than the directory.
	return st.Dev != parent.Dev
}

// Ensure creates the named namespace unless it exists. It reports whether it
// created it.
func Ensure(name string) (created bool, err error) {
	if Exists(name) {
		return false, nil
	}
	if err := Create(name); err != nil {
		return false, err
	}
	return true, nil
}

// Create makes a new network namespace and mounts it at Path(name). It
// fails if the name is taken.
func Create(name string) error {
	f, err := NewUnnamed()
	if err != nil {
		return fmt.Errorf("create netns %q: %w", name, err)
	}
	defer f.Close()
	return Name(f, name)
}

// NewUnnamed makes a new network namespace that nothing names: the
// returned file is all that holds it, so it vanishes when the file is
// closed or the process dies, whatever way it dies. Name gives it a name.
func NewUnnamed() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		f, openErr := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err := netns.Set(orig); err != nil {
			// Stay locked: this thread is in the wrong namespace and must die.
			if f != nil {
				f.Close()
			}
			res <- result{err: errors.Join(openErr, fmt.Errorf("return to original netns: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		if openErr != nil {
			openErr = fmt.Errorf("open new netns: %w", openErr)
		}
		res <- result{f, openErr}
	}()
	r := <-res
	return r.f, r.err
}

// Name mounts the namespace f refers to at Path(name), as `ip netns`
// names a namespace; it fails if the name is taken. f stays the caller's
// to close: the mount keeps the namespace alive on its own.
func Name(f *os.File, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("create netns %q: invalid name", name)
	}
	if err := ensureDir(); err != nil {
		return fmt.Errorf("create netns %q: %w", name, err)
	}
	p := Path(name)
	nf, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrNotExist) {
		// Dir went away since ensureDir made it: make it again.
		dirMu.Lock()
		dirSharedPath = ""
		dirMu.Unlock()
		if err := ensureDir(); err != nil {
			return fmt.Errorf("create netns %q: %w", name, err)
		}
		nf, err = os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	}
	if err != nil {
		return fmt.Errorf("create netns %q: %w", name, err)
	}
	nf.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(p)
		return fmt.Errorf("create netns %q: bind mount: %w", name, err)
	}
	return nil
}

// dirShared is set once ensureDir succeeded for dirSharedPath: a mount
// call takes the kernel's global mount lock, which every namespace being
// created or deleted on the machine contends for, so it is made once per
// process, not once per namespace.
var (
	dirMu         sync.Mutex
	dirSharedPath string
)

// ensureDir makes Dir exist and be a shared mount point, as `ip netns add`
// does, so namespaces mounted later are seen by every mount namespace.
func ensureDir() error {
	dirMu.Lock()
	defer dirMu.Unlock()
	if dirSharedPath == Dir {
		return nil
	}
	if err := makeDirShared(); err != nil {
		return err
	}
	dirSharedPath = Dir
	return nil
}

func makeDirShared() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	// Not a mount point yet: bind it onto itself, then make it shared.
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	return nil
}

// Delete unmounts and removes the named namespace. A missing namespace is
// not an error, so deletes can run twice. Processes still inside keep the
// namespace alive; the name is gone either way.
func Delete(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("delete netns %q: invalid name", name)
	}
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %q: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %q: %w", name, err)
	}
	return nil
}

// List returns the names of the mounted namespaces in Dir.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	var out []string
	for _, e := range ents {
		if Exists(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Open returns a handle on the named namespace; the caller closes it.
func Open(name string) (netns.NsHandle, error) {
	if !Exists(name) {
		return netns.None(), fmt.Errorf("open netns %q: %w", name, ErrNotExist)
	}
	h, err := netns.GetFromPath(Path(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %q: %w", name, err)
	}
	return h, nil
}

// Do runs fn inside the named namespace on a locked thread and returns its
// error. Goroutines fn starts do not inherit the namespace; sockets fn opens
// stay in it.
func Do(name string, fn func() error) error {
	h, err := Open(name)
	if err != nil {
		return err
	}
	defer h.Close()
	return DoHandle(h, fn)
}

// DoHandle is Do with an open namespace handle.
func DoHandle(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked so the runtime retires this thread.
			errc <- errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
