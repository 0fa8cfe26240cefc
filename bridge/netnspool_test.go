package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// spareInode is the namespace inode of the kernel's spare, or 0 when it
// has none.
func (k *NetlinkKernel) spareInode() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.spares) == 0 {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(k.spares[0].Fd()), &st); err != nil {
		return 0
	}
	return st.Ino
}

// waitSpare polls until the kernel holds a spare other than not.
func waitSpare(t *testing.T, k *NetlinkKernel, not uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ino := k.spareInode(); ino != 0 && ino != not {
			return ino
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no spare namespace made within 10s")
	return 0
}

// heldNetns reports whether this process holds the namespace inode open.
func heldNetns(t *testing.T, ino uint64) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == fmt.Sprintf("net:[%d]", ino) {
			return true
		}
	}
	return false
}

// TestKernelSpareNetns: with a spare kept, CreateNetns names the spare (a
// fresh namespace: only lo, up), a new spare follows, a taken name fails
// as without a pool, and Close lets the spare go.
func TestKernelSpareNetns(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	k, err := NewKernel(tp.Hosts[0].NS)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			k.Close()
		}
	})
	names := containerNetns(t, 2)
	k.KeepSpareNetns(1)
	spare := waitSpare(t, k, 0)

	if err := k.CreateNetns(names[0]); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(netnsutil.Path(names[0]), &st); err != nil || st.Ino != spare {
		t.Fatalf("netns %s is inode %d (%v), want the spare %d", names[0], st.Ino, err, spare)
	}
	h := netnsHandle(t, names[0])
	links, err := h.LinkList()
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&unix.IFF_UP == 0 {
		t.Fatalf("links in the named spare: %+v, want lo alone, up", links)
	}
	next := waitSpare(t, k, spare)

	// A taken name fails, as netnsutil.Create does, and leaves the name's
	// namespace alone.
	if err := k.CreateNetns(names[0]); err == nil {
		t.Fatal("CreateNetns of a taken name succeeded")
	}
	if err := unix.Stat(netnsutil.Path(names[0]), &st); err != nil || st.Ino != spare {
		t.Fatalf("netns %s changed to inode %d (%v)", names[0], st.Ino, err)
	}
	last := waitSpare(t, k, next)

	k.Close()
	closed = true
	for _, ino := range []uint64{next, last} {
		if heldNetns(t, ino) {
			t.Errorf("spare namespace %d still held after Close", ino)
		}
	}
	// Without spares, CreateNetns makes the namespace itself.
	k2, err := NewKernel(tp.Hosts[0].NS)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if err := k2.CreateNetns(names[1]); err != nil || !netnsutil.Exists(names[1]) {
		t.Fatalf("create %s without a spare: %v", names[1], err)
	}
}
