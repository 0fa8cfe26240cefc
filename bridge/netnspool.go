package bridge

import (
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Making a network namespace is the slowest step of attaching a container
// whose namespace the agent creates (`vxmesh run`): the kernel sets up
// every per-namespace subsystem and registers its loopback under the rtnl
// lock, which the teardown of a namespace removed just before (an rm, a
// restart of another container) holds for as long as it runs. Measured on
// a 10-host lab on 2 cores: 15 ms on average, up to 52 ms, of an attach
// call of 35–80 ms. So the kernel keeps a spare namespace ready, made
// between attaches: creating a container's namespace then only names the
// spare (a bind mount), and a new spare is made in the background.
//
// A spare is held by an open file only (netnsutil.NewUnnamed): it has no
// name anyone can see or leak, and it is gone with the agent however the
// agent ends.

// KeepSpareNetns makes the kernel keep n spare namespaces ready for
// CreateNetns (0, the default, keeps none). The first are made in the
// background now.
func (k *NetlinkKernel) KeepSpareNetns(n int) {
	k.mu.Lock()
	k.spareWant = n
	k.mu.Unlock()
	k.refill()
}

// takeSpare returns a spare namespace (its loopback up) or nil; the caller
// owns the file.
func (k *NetlinkKernel) takeSpare() *os.File {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.spares) == 0 {
		return nil
	}
	f := k.spares[len(k.spares)-1]
	k.spares = k.spares[:len(k.spares)-1]
	return f
}

// refill makes spare namespaces in the background until there are as
// many as wanted; one filler runs at a time. A failure leaves the pool
// short: CreateNetns then makes namespaces itself, as without a pool.
func (k *NetlinkKernel) refill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.filling || len(k.spares) >= k.spareWant || k.closed {
		return
	}
	k.filling = true
	k.bg.Add(1)
	go func() {
		defer k.bg.Done()
		for {
			k.mu.Lock()
			if k.closed || len(k.spares) >= k.spareWant {
				k.filling = false
				k.mu.Unlock()
				return
			}
			k.mu.Unlock()
			f, err := newSpare()
			k.mu.Lock()
			if err != nil || k.closed {
				k.filling = false
				k.mu.Unlock()
				if f != nil {
					f.Close()
				}
				return
			}
			k.spares = append(k.spares, f)
			k.mu.Unlock()
		}
	}()
}

// newSpare makes an unnamed namespace with its loopback up, as
// CreateNetns leaves a new one.
func newSpare() (*os.File, error) {
	f, err := netnsutil.NewUnnamed()
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(int(f.Fd())))
	if err == nil {
		var lo netlink.Link
		if lo, err = h.LinkByName("lo"); err == nil {
			err = h.LinkSetUp(lo)
		}
		h.Close()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// closeSpares drops the spare namespaces (Close).
func (k *NetlinkKernel) closeSpares() {
	k.mu.Lock()
	k.closed = true
	spares := k.spares
	k.spares = nil
	k.mu.Unlock()
	for _, f := range spares {
		f.Close()
	}
}
