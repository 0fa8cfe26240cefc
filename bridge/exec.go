package bridge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vxmesh/vxmesh/internal/atomicfile"
)

// exec runs one op and updates rec; it reports whether anything changed.
func (r *Reconciler) exec(op Op, rec *Record) (bool, error) {
	switch op.Kind {
	case opRecordNamespace, OpCreateNetns, OpDeleteNetns, OpForgetNetns:
		return r.execNetns(op, rec)
	case OpAddBridge, OpAddVeth, OpAddMacvlan, OpAddIPvlan, OpDeleteLink:
		return r.execLink(op, rec)
	case OpSetAlias, OpSetUp, OpSetMTU, OpSetMaster, OpSetMAC, OpSetHairpin:
		return r.execLinkAttr(op)
	case OpAddAddr, OpDelAddr, OpReplaceRoute:
		return r.execAddr(op)
	case OpAnnounce:
		return r.execAnnounce(op)
	case OpSetSysctl:
		return r.execSysctl(op, rec)
	case OpWriteFile, OpRemoveFile, OpRemoveDir:
		return r.execFile(op)
	case OpSyncFirewall:
		return r.syncFirewall(op)
	case OpRemoveFirewall:
		return r.removeFirewall(op)
	}
	return false, fmt.Errorf("unknown op kind %q", op.Kind)
}

// did finishes a kernel write: on success it logs the change.
func (r *Reconciler) did(err error, op Op, msg string, attrs ...any) (bool, error) {
	if err != nil {
		return false, err
	}
	r.logChange(msg, op, attrs...)
	return true, nil
}

// execNetns creates, deletes, records and forgets namespaces.
func (r *Reconciler) execNetns(op Op, rec *Record) (bool, error) {
	switch op.Kind {
	case opRecordNamespace:
		rec.Namespaces = addName(rec.Namespaces, op.Netns)
		r.persist(*rec)
		return false, nil
	case OpCreateNetns:
		// Recorded as ours before it exists: a crash in between leaves a
		// record of a namespace that is not there, which is harmless.
		rec.CreatedNetns = addName(rec.CreatedNetns, op.Netns)
		rec.Namespaces = addName(rec.Namespaces, op.Netns)
		r.persist(*rec)
		changed, err := r.did(r.Kernel.CreateNetns(op.Netns), op, "created netns")
		r.fault(FaultAfterNetnsCreate)
		return changed, err
	case OpDeleteNetns:
		return r.did(r.Kernel.DeleteNetns(op.Netns), op, "deleted netns")
	}
	// OpForgetNetns
	rec.CreatedNetns = removeName(rec.CreatedNetns, op.Netns)
	rec.Namespaces = removeName(rec.Namespaces, op.Netns)
	for key := range rec.MACs {
		if filepath.Dir(key) == op.Netns {
			delete(rec.MACs, key)
		}
	}
	r.persist(*rec)
	return false, nil
}

// execLink adds and deletes links; new container interfaces have their
// MAC recorded.
func (r *Reconciler) execLink(op Op, rec *Record) (bool, error) {
	k := r.Kernel
	switch op.Kind {
	case OpAddBridge:
		return r.did(k.AddBridge(op.Link, op.Alias, op.MTU, op.MAC), op, "added bridge", "bridge", op.Link, "mtu", op.MTU)
	case OpAddVeth:
		if err := k.AddVeth(op.Link, op.Master, op.Netns, op.Peer, op.Alias, op.MTU, op.MAC); err != nil {
			return false, err
		}
		if op.Netns != "" { // a host-placed one's MAC is in the plan's MACs
			rec.MACs[MACKey(op.Netns, op.Network)] = op.MAC.String()
		}
		r.fault(FaultAfterVethCreate)
		return r.did(nil, op, "added veth", "host_if", op.Link, "bridge", op.Master, "if", op.Peer, "mac", op.MAC.String())
	case OpAddMacvlan:
		if err := k.AddMacvlan(op.Netns, op.Link, op.Peer, op.Alias, op.MTU, op.MAC); err != nil {
			return false, err
		}
		rec.MACs[MACKey(op.Netns, op.Network)] = op.MAC.String()
		return r.did(nil, op, "added macvlan", "if", op.Link, "parent", op.Peer, "mac", op.MAC.String())
	case OpAddIPvlan:
		return r.did(k.AddIPvlan(op.Netns, op.Link, op.Peer, op.Alias, op.MTU), op, "added ipvlan", "if", op.Link, "parent", op.Peer)
	}
	// OpDeleteLink
	if op.Netns == "" {
		r.deleting(op.Link)
	}
	return r.did(k.DeleteLink(op.Netns, op.Link), op, "deleted link", "link", op.Link)
}

// execLinkAttr changes one attribute of a link.
func (r *Reconciler) execLinkAttr(op Op) (bool, error) {
	k := r.Kernel
	switch op.Kind {
	case OpSetAlias:
		return r.did(k.SetAlias(op.Netns, op.Link, op.Alias), op, "set alias", "link", op.Link, "alias", op.Alias)
	case OpSetUp:
		return r.did(k.SetUp(op.Netns, op.Link), op, "set link up", "link", op.Link)
	case OpSetMTU:
		return r.did(k.SetMTU(op.Netns, op.Link, op.MTU), op, "set mtu", "link", op.Link, "mtu", op.MTU)
	case OpSetMaster:
		return r.did(k.SetMaster(op.Link, op.Master), op, "set master", "link", op.Link, "bridge", op.Master)
	case OpSetMAC:
		return r.did(k.SetMAC(op.Netns, op.Link, op.MAC), op, "set mac", "link", op.Link, "mac", op.MAC.String())
	}
	// OpSetHairpin
	return r.did(k.SetHairpin(op.Link, op.On), op, "set hairpin", "link", op.Link, "on", op.On)
}

// execAddr adds and deletes addresses and sets default routes.
func (r *Reconciler) execAddr(op Op) (bool, error) {
	k := r.Kernel
	switch op.Kind {
	case OpAddAddr:
		return r.did(k.AddAddr(op.Netns, op.Link, op.Addr), op, "added address", "link", op.Link, "addr", op.Addr.String())
	case OpDelAddr:
		return r.did(k.DelAddr(op.Netns, op.Link, op.Addr), op, "deleted address", "link", op.Link, "addr", op.Addr.String())
	}
	// OpReplaceRoute
	return r.did(k.ReplaceDefaultRoute(op.Netns, op.Link, op.Gateway), op, "set default route", "link", op.Link, "gateway", op.Gateway.String())
}

// execAnnounce sends an interface's gratuitous ARP. It changes nothing,
// and a lost announcement only delays peers that cached another MAC until
// their entry expires: worth a warning, not a failed container.
func (r *Reconciler) execAnnounce(op Op) (bool, error) {
	a, ok := r.Kernel.(Announcer)
	if !ok {
		return false, nil
	}
	if err := a.Announce(op.Netns, op.Link, op.Addr.Addr()); err != nil {
		r.log().Warn("announce address", "container", op.Container, "network", op.Network, "netns", op.Netns, "link", op.Link, "addr", op.Addr.Addr().String(), "err", err)
	}
	return false, nil
}

// execSysctl sets a host sysctl, recording the value it had first, or
// forgets one put back already.
func (r *Reconciler) execSysctl(op Op, rec *Record) (bool, error) {
	k := r.Kernel
	if op.Value == "" { // restored already: forget it
		delete(rec.Sysctls, op.Sysctl)
		return false, nil
	}
	old, err := k.Sysctl(op.Sysctl)
	if err != nil {
		return false, err
	}
	if err := k.SetSysctl(op.Sysctl, op.Value); err != nil {
		return false, err
	}
	if orig, ok := rec.Sysctls[op.Sysctl]; !ok {
		rec.Sysctls[op.Sysctl] = old
	} else if orig == op.Value {
		delete(rec.Sysctls, op.Sysctl) // put back
	}
	r.persist(*rec)
	return r.did(nil, op, "set sysctl", "sysctl", op.Sysctl, "value", op.Value, "was", old)
}

// execFile writes and removes name files and their directories.
func (r *Reconciler) execFile(op Op) (bool, error) {
	switch op.Kind {
	case OpWriteFile:
		if err := os.MkdirAll(filepath.Dir(op.File), 0o755); err != nil {
			return false, err
		}
		// Known before it lands, so the watch never takes our own write
		// for drift.
		r.saw(op.File, op.Content)
		return r.did(atomicfile.Replace(op.File, op.Content, 0o644), op, "wrote file", "file", op.File)
	case OpRemoveFile:
		r.saw(op.File, nil)
		if err := os.Remove(op.File); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
		return r.did(nil, op, "removed file", "file", op.File)
	}
	// OpRemoveDir, only when empty: anything else in there is not ours.
	// Unwatched first: its removal is ours, not drift.
	r.unwatchDir(op.File)
	err := os.Remove(op.File)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		return false, err
	}
	if err != nil {
		return false, nil
	}
	return r.did(nil, op, "removed dir", "dir", op.File)
}
