package bridge

import (
	"context"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// watchLinks calls gone with the name of every link of ours (alias
// "vxmesh:...") deleted from the host namespace by someone else (a
// container veth, a bridge), until ctx is done. The links the reconciler
// deletes itself are told apart by Reconciler.deleting.
func (r *Reconciler) watchLinks(ctx context.Context, k *NetlinkKernel, gone func(name string)) {
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		done := make(chan struct{})
		ch := make(chan netlink.LinkUpdate, 64)
		ns := k.hostNS
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &ns})
		if err != nil {
			r.log().Warn("cannot watch links; deleted ones wait for the periodic resync", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
	read:
		for {
			select {
			case <-ctx.Done():
				break read
			case u, ok := <-ch:
				if !ok {
					gone("") // lost notifications: check everything
					break read
				}
				a := u.Attrs()
				if u.Header.Type == unix.RTM_DELLINK && strings.HasPrefix(a.Alias, "vxmesh:") && !r.deletedByUs(a.Name) {
					gone(a.Name)
				}
			}
		}
		close(done)
		go func() {
			for range ch {
			}
		}()
	}
}

// deletedByUs reports (once) whether the reconciler deleted link name
// itself lately.
func (r *Reconciler) deletedByUs(name string) bool {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.deleted[name]
	delete(d.deleted, name)
	return ok && time.Since(t) < time.Minute
}

// deleting records that the reconciler is about to delete a host link.
func (r *Reconciler) deleting(name string) {
	d := r.driftState()
	d.mu.Lock()
	defer d.mu.Unlock()
	for n, t := range d.deleted {
		if time.Since(t) > time.Minute {
			delete(d.deleted, n)
		}
	}
	d.deleted[name] = time.Now()
}
