package ipt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nftables over netlink (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlGroupNFTables  = 7  // NFNLGRP_NFTABLES
	nfnlSubsysNFTables = 10 // NFNL_SUBSYS_NFTABLES
	nftMsgNewGen       = 15 // NFT_MSG_NEWGEN: sent after every commit
	nftaGenProcPID     = 2  // NFTA_GEN_PROC_PID
	nfgenmsgLen        = 4
)

// LegacyPoll is how often the rules are checked when iptables uses the
// legacy backend, which announces nothing.
const LegacyPoll = time.Second

// Watch calls onDrift (and forgets what the Runner knows, see Invalidate)
// whenever a process that is not one of the Runner's own writers commits
// a change to the rules of the Runner's namespace, until ctx is done.
// iptables-nft writes through nftables, whose every commit the kernel
// announces with the committing process's pid; the legacy backend
// announces nothing, so there Watch compares a checksum of the tables
// every LegacyPoll instead. It returns when ctx is done, or with an error
// when it cannot watch at all.
func (r *Runner) Watch(ctx context.Context, onDrift func(why string)) error {
	out, err := exec.Command(r.single, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w", r.single, err)
	}
	if strings.Contains(string(out), "legacy") {
		return r.poll(ctx, onDrift)
	}
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		err := r.watchNFT(ctx, onDrift)
		if ctx.Err() != nil {
			return nil
		}
		// Lost notifications (overflow) or a broken socket: whatever
		// happened meanwhile is unknown.
		r.Invalidate()
		onDrift("nftables watch restarted")
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
	return nil
}

// watchNFT reads nftables notifications until ctx is done or the socket
// fails (an overflow is ENOBUFS).
func (r *Runner) watchNFT(ctx context.Context, onDrift func(string)) error {
	var fd int
	err := r.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, nfnlGroupNFTables)
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("subscribe to nftables changes: %w", err)
	}
	defer unix.Close(fd)
	// Wake up now and then to notice ctx.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set nftables watch timeout: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	buf := make([]byte, 1<<16)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read nftables changes: %w", err)
		}
		for _, pid := range CommitPIDs(buf[:n]) {
			if pid != 0 && r.own.has(pid) {
				continue
			}
			r.Invalidate()
			onDrift(fmt.Sprintf("rules changed by pid %d", pid))
		}
	}
	return nil
}

// CommitPIDs returns, for each nftables commit announced in b (a read
// from a NETLINK_NETFILTER socket), the pid of the process that made it
// (0 when the kernel did not say). Anything malformed ends the parse.
func CommitPIDs(b []byte) []int {
	var pids []int
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return pids
		}
		if typ == nfnlSubsysNFTables<<8|nftMsgNewGen {
			pids = append(pids, genPID(b[unix.SizeofNlMsghdr:l]))
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return pids
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// genPID finds NFTA_GEN_PROC_PID (big endian) in a NEWGEN payload.
func genPID(p []byte) int {
	if len(p) < nfgenmsgLen {
		return 0
	}
	p = p[nfgenmsgLen:]
	for len(p) >= 4 {
		l := int(binary.NativeEndian.Uint16(p[0:2]))
		typ := binary.NativeEndian.Uint16(p[2:4]) & 0x3fff
		if l < 4 || l > len(p) {
			return 0
		}
		if typ == nftaGenProcPID && l >= 8 {
			return int(binary.BigEndian.Uint32(p[4:8]))
		}
		p = p[min(nlAlign(l), len(p)):]
	}
	return 0
}

// poll is Watch for the legacy backend: a checksum of iptables-save every
// LegacyPoll. A change with no write of ours since the last look is drift;
// one that came with our writes only drops the cache (an outside change
// made at the same moment as ours is then caught by the next full pass).
func (r *Runner) poll(ctx context.Context, onDrift func(string)) error {
	save := strings.TrimSuffix(r.restore, "-restore") + "-save"
	sum := func() ([32]byte, error) {
		var out []byte
		err := r.do(func() error {
			var err error
			out, err = exec.Command(save).Output()
			return err
		})
		// Counters change with traffic; the rules are what matters.
		var rules bytes.Buffer
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ":") {
				rules.WriteString(l + "\n")
			}
		}
		return sha256.Sum256(rules.Bytes()), err
	}
	last, _ := sum()
	writes := r.Writes()
	t := time.NewTicker(LegacyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		w := r.Writes()
		now, err := sum()
		if err != nil || now == last {
			writes = w
			continue
		}
		last = now
		r.Invalidate()
		if w == writes {
			onDrift("rules changed (legacy iptables checksum)")
		}
		writes = w
	}
}
