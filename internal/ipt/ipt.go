// Package ipt keeps vxmesh's iptables rules in chains of its own.
//
// vxmesh never edits rules it did not create: every rule lives in a
// VXMESH-* chain, and the only rules it adds to built-in chains are single
// jumps into those chains. A chain is synced as a whole: its wanted rules are
// compared with `iptables -S` and, only when they differ, rewritten in one
// atomic `iptables-restore --noflush` transaction, so traffic never sees a
// half-written chain and a second sync with the same rules changes nothing.
//
// The package runs the iptables binaries (go-iptables for single rules,
// iptables-restore for whole chains). With a namespace handle set, the
// commands run inside that network namespace.
package ipt

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Chain is one chain's wanted rules, each written as the arguments that
// follow "-A NAME" (e.g. "-s 10.0.0.0/24 -j MASQUERADE").
type Chain struct {
	Name  string
	Rules []string
}

// Jump is a rule in a built-in chain that jumps to one of ours, e.g.
// {Table: "nat", From: "PREROUTING", Rule: "-m addrtype --dst-type LOCAL -j VXMESH-DNAT"}.
type Jump struct {
	Table string
	From  string
	Rule  string
}

// Iptables is what the rest of vxmesh needs from iptables. The real one is
// *Runner; tests of reconcile logic use a fake.
type Iptables interface {
	// SyncChains makes each chain in table hold exactly its rules, creating
	// chains as needed; it reports whether anything was written.
	SyncChains(table string, chains []Chain) (changed bool, err error)
	// EnsureJump inserts the jump at the top of its built-in chain unless it
	// is already there; it reports whether it was added.
	EnsureJump(j Jump) (added bool, err error)
	// DeleteJump removes the jump if present.
	DeleteJump(j Jump) error
	// DeleteChain flushes and removes a chain of ours if it exists.
	DeleteChain(table, chain string) error
	// ListChains returns the names of the chains in table that start with prefix.
	ListChains(table, prefix string) ([]string, error)
	// Rules returns a chain's rules as "-A NAME ..." lines, nil if it does not exist.
	Rules(table, chain string) ([]string, error)
}

// Runner is the real Iptables, for IPv4 or IPv6, in the current or a given
// network namespace.
type Runner struct {
	ns      netns.NsHandle // None: the current namespace
	restore string         // iptables-restore or ip6tables-restore
	proto   iptables.Protocol

	mu        sync.Mutex
	ipt       *iptables.IPTables
	canonical map[string]string // wanted rules -> what iptables -S printed for them

	writes atomic.Int64
}

// New returns a Runner for IPv4 (ipv6 false) or IPv6 rules. ns is the
// namespace to run in; pass netns.None() for the current one. The Runner
// does not own ns.
func New(ns netns.NsHandle, ipv6 bool) (*Runner, error) {
	r := &Runner{ns: ns, restore: "iptables-restore", proto: iptables.ProtocolIPv4, canonical: map[string]string{}}
	if ipv6 {
		r.restore, r.proto = "ip6tables-restore", iptables.ProtocolIPv6
	}
	if _, err := exec.LookPath(r.restore); err != nil {
		return nil, fmt.Errorf("find %s: %w (install the iptables package)", r.restore, err)
	}
	err := r.do(func() error {
		ipt, err := iptables.NewWithProtocol(r.proto)
		r.ipt = ipt
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open iptables: %w", err)
	}
	return r, nil
}

// Writes counts the writes made so far (chain rewrites, jumps added or
// deleted, chains deleted), so tests can assert that a sync changed nothing.
func (r *Runner) Writes() int64 { return r.writes.Load() }

func (r *Runner) do(fn func() error) error {
	if !r.ns.IsOpen() {
		return fn()
	}
	return netnsutil.DoHandle(r.ns, fn)
}

// Rules returns "-A NAME ..." lines of a chain, or nil if it does not exist.
func (r *Runner) Rules(table, chain string) ([]string, error) {
	var out []string
	err := r.do(func() error {
		ok, err := r.ipt.ChainExists(table, chain)
		if err != nil || !ok {
			return err
		}
		lines, err := r.ipt.List(table, chain)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "-A ") {
				out = append(out, l)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", table, chain, err)
	}
	return out, nil
}

// SyncChains rewrites the chains whose rules differ from the wanted ones,
// all in one iptables-restore transaction.
func (r *Runner) SyncChains(table string, chains []Chain) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stale []Chain
	for _, c := range chains {
		have, err := r.Rules(table, c.Name)
		if err != nil {
			return false, err
		}
		exists := have != nil
		if !exists {
			ok, err := r.chainExists(table, c.Name)
			if err != nil {
				return false, err
			}
			exists = ok
		}
		if exists && r.same(c, have) {
			continue
		}
		stale = append(stale, c)
	}
	if len(stale) == 0 {
		return false, nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "*%s\n", table)
	for _, c := range stale {
		fmt.Fprintf(&buf, ":%s - [0:0]\n", c.Name)
	}
	for _, c := range stale {
		for _, rule := range c.Rules {
			fmt.Fprintf(&buf, "-A %s %s\n", c.Name, rule)
		}
	}
	buf.WriteString("COMMIT\n")
	err := r.do(func() error {
		cmd := exec.Command(r.restore, "--noflush", "-w", "5")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", r.restore, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		names := make([]string, len(stale))
		for i, c := range stale {
			names[i] = c.Name
		}
		return false, fmt.Errorf("sync %s chains %s: %w", table, strings.Join(names, ","), err)
	}
	r.writes.Add(1)
	// Remember how iptables prints these rules, so the next sync of the same
	// rules compares equal even where our spelling is not canonical.
	for _, c := range stale {
		have, err := r.Rules(table, c.Name)
		if err != nil {
			return true, err
		}
		r.canonical[wantKey(c)] = strings.Join(have, "\n")
	}
	return true, nil
}

func wantKey(c Chain) string {
	lines := make([]string, len(c.Rules))
	for i, rule := range c.Rules {
		lines[i] = "-A " + c.Name + " " + rule
	}
	return strings.Join(lines, "\n")
}

func (r *Runner) same(c Chain, have []string) bool {
	if len(have) != len(c.Rules) {
		return false
	}
	want := wantKey(c)
	got := strings.Join(have, "\n")
	if got == want {
		return true
	}
	canon, ok := r.canonical[want]
	return ok && canon == got
}

func (r *Runner) chainExists(table, chain string) (bool, error) {
	var ok bool
	err := r.do(func() error {
		var err error
		ok, err = r.ipt.ChainExists(table, chain)
		return err
	})
	return ok, err
}

// EnsureJump inserts j at position 1 of its built-in chain unless present.
func (r *Runner) EnsureJump(j Jump) (bool, error) {
	spec := strings.Fields(j.Rule)
	var added bool
	err := r.do(func() error {
		ok, err := r.ipt.Exists(j.Table, j.From, spec...)
		if err != nil || ok {
			return err
		}
		added = true
		return r.ipt.Insert(j.Table, j.From, 1, spec...)
	})
	if err != nil {
		return false, fmt.Errorf("add jump %s/%s %q: %w", j.Table, j.From, j.Rule, err)
	}
	if added {
		r.writes.Add(1)
	}
	return added, nil
}

// DeleteJump removes j if present.
func (r *Runner) DeleteJump(j Jump) error {
	spec := strings.Fields(j.Rule)
	err := r.do(func() error {
		ok, err := r.ipt.Exists(j.Table, j.From, spec...)
		if err != nil || !ok {
			return err
		}
		r.writes.Add(1)
		return r.ipt.Delete(j.Table, j.From, spec...)
	})
	if err != nil {
		return fmt.Errorf("delete jump %s/%s %q: %w", j.Table, j.From, j.Rule, err)
	}
	return nil
}

// DeleteChain flushes and deletes chain if it exists.
func (r *Runner) DeleteChain(table, chain string) error {
	err := r.do(func() error {
		ok, err := r.ipt.ChainExists(table, chain)
		if err != nil || !ok {
			return err
		}
		r.writes.Add(1)
		return r.ipt.ClearAndDeleteChain(table, chain)
	})
	if err != nil {
		return fmt.Errorf("delete chain %s/%s: %w", table, chain, err)
	}
	r.mu.Lock()
	for k := range r.canonical {
		if strings.HasPrefix(k, "-A "+chain+" ") {
			delete(r.canonical, k)
		}
	}
	r.mu.Unlock()
	return nil
}

// ListChains returns the chains in table whose names start with prefix.
func (r *Runner) ListChains(table, prefix string) ([]string, error) {
	var out []string
	err := r.do(func() error {
		all, err := r.ipt.ListChains(table)
		if err != nil {
			return err
		}
		for _, c := range all {
			if strings.HasPrefix(c, prefix) {
				out = append(out, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s chains: %w", table, err)
	}
	return out, nil
}
