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
	"slices"
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

	single string // iptables or ip6tables, for single-rule writes
	save   string // iptables-save or ip6tables-save, for reads

	mu        sync.Mutex
	ipt       *iptables.IPTables
	canonical map[string]string // a wanted rule line -> what iptables -S printed for it
	known     known             // what the kernel holds, as far as we know; see Invalidate

	writes atomic.Int64
	own    ownPIDs // processes that wrote for us, so their commits are not drift
}

// New returns a Runner for IPv4 (ipv6 false) or IPv6 rules. ns is the
// namespace to run in; pass netns.None() for the current one. The Runner
// does not own ns.
func New(ns netns.NsHandle, ipv6 bool) (*Runner, error) {
	r := &Runner{ns: ns, restore: "iptables-restore", single: "iptables", save: "iptables-save", proto: iptables.ProtocolIPv4, canonical: map[string]string{}}
	r.known.reset()
	if ipv6 {
		r.restore, r.single, r.save, r.proto = "ip6tables-restore", "ip6tables", "ip6tables-save", iptables.ProtocolIPv6
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
// A chain whose content is known (written by us since the last
// Invalidate) is answered from memory, in our spelling.
func (r *Runner) Rules(table, chain string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rules, ok := r.known.chains[table+"/"+chain]; ok {
		return ruleLines(chain, rules), nil
	}
	d, err := r.dump(table)
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", table, chain, err)
	}
	return slices.Clone(d.lines[chain]), nil
}

// SyncChains rewrites the chains whose rules differ from the wanted ones,
// all in one iptables-restore transaction. A chain whose content is known
// (we wrote it since the last Invalidate) is compared with that, without
// reading the kernel: an attach then costs one write and no read.
func (r *Runner) SyncChains(table string, chains []Chain) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stale, read []Chain
	for _, c := range chains {
		if rules, ok := r.known.chains[table+"/"+c.Name]; ok {
			if !slices.Equal(rules, c.Rules) {
				stale = append(stale, c)
			}
			continue
		}
		d, err := r.dump(table)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", table, err)
		}
		have := d.lines[c.Name]
		if slices.Contains(d.names, c.Name) && r.same(c, have) {
			r.known.chains[table+"/"+c.Name] = slices.Clone(c.Rules)
			continue
		}
		stale = append(stale, c)
		read = append(read, c)
	}
	if len(stale) == 0 {
		return false, nil
	}
	// Chains known from memory change by their difference only (an attach
	// adds its rules and rewrites nothing else); the others are rewritten
	// whole. One transaction either way. Should the edit fail (someone
	// changed the chain meanwhile), the whole rewrite follows.
	err := r.run(r.restore, r.restoreInput(table, stale, true), "--noflush", "-w", "5")
	if err != nil {
		err = r.run(r.restore, r.restoreInput(table, stale, false), "--noflush", "-w", "5")
	}
	if err != nil {
		names := make([]string, len(stale))
		for i, c := range stale {
			names[i] = c.Name
		}
		return false, fmt.Errorf("sync %s chains %s: %w", table, strings.Join(names, ","), err)
	}
	for _, c := range stale {
		r.known.chains[table+"/"+c.Name] = slices.Clone(c.Rules)
		r.known.wrote(table, c.Name, ruleLines(c.Name, c.Rules))
	}
	// Remember how iptables prints the rules of chains we had to read, so
	// the next full read of the same rules compares equal even where our
	// spelling is not canonical. (Chains rewritten from memory are not read
	// back: a rule spelled otherwise than iptables prints it is rewritten
	// once by the next full pass, which then learns it.)
	if len(read) == 0 {
		return true, nil
	}
	delete(r.known.dumps, table)
	d, err := r.dump(table)
	if err != nil {
		return true, fmt.Errorf("read %s back: %w", table, err)
	}
	for _, c := range read {
		have := d.lines[c.Name]
		if len(have) != len(c.Rules) {
			continue
		}
		for i, l := range ruleLines(c.Name, c.Rules) {
			if have[i] != l {
				r.canonical[l] = have[i]
			}
		}
	}
	return true, nil
}

// ruleLines spells rules as iptables -S lines of chain.
func ruleLines(chain string, rules []string) []string {
	if len(rules) == 0 {
		return nil
	}
	lines := make([]string, len(rules))
	for i, rule := range rules {
		lines[i] = "-A " + chain + " " + rule
	}
	return lines
}

// same reports whether the printed lines have are the rules of c.
func (r *Runner) same(c Chain, have []string) bool {
	if len(have) != len(c.Rules) {
		return false
	}
	for i, l := range ruleLines(c.Name, c.Rules) {
		if have[i] != l && r.canonical[l] != have[i] {
			return false
		}
	}
	return true
}

// run runs one iptables command that writes, in the Runner's namespace,
// recording its process as ours (its commit is no drift). A failed write
// leaves the kernel in a state we do not know: the cache goes.
func (r *Runner) run(bin string, stdin []byte, args ...string) error {
	err := r.do(func() error {
		cmd := exec.Command(bin, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			return err
		}
		r.own.add(cmd.Process.Pid)
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(out.String()))
		}
		return nil
	})
	if err != nil {
		r.known.reset()
		return err
	}
	r.writes.Add(1)
	return nil
}

// EnsureJump inserts j at position 1 of its built-in chain unless present.
func (r *Runner) EnsureJump(j Jump) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known.jumps[j] {
		return false, nil
	}
	spec := strings.Fields(j.Rule)
	d, err := r.dump(j.Table)
	if err != nil {
		return false, fmt.Errorf("add jump %s/%s %q: %w", j.Table, j.From, j.Rule, err)
	}
	// Printed as we spell it: there. Otherwise ask iptables, which
	// compares the rule, not its spelling.
	ok := slices.Contains(d.lines[j.From], "-A "+j.From+" "+j.Rule)
	if !ok {
		err = r.do(func() error {
			var err error
			ok, err = r.ipt.Exists(j.Table, j.From, spec...)
			return err
		})
	}
	if err == nil && !ok {
		err = r.run(r.single, nil, append([]string{"-w", "5", "-t", j.Table, "-I", j.From, "1"}, spec...)...)
	}
	if err != nil {
		return false, fmt.Errorf("add jump %s/%s %q: %w", j.Table, j.From, j.Rule, err)
	}
	r.known.jumps[j] = true
	if !ok {
		r.known.wrote(j.Table, j.From, append([]string{"-A " + j.From + " " + j.Rule}, d.lines[j.From]...))
	}
	return !ok, nil
}

// DeleteJump removes j if present.
func (r *Runner) DeleteJump(j Jump) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.known.jumps, j)
	delete(r.known.dumps, j.Table)
	spec := strings.Fields(j.Rule)
	var ok bool
	err := r.do(func() error {
		var err error
		ok, err = r.ipt.Exists(j.Table, j.From, spec...)
		return err
	})
	if err == nil && ok {
		err = r.run(r.single, nil, append([]string{"-w", "5", "-t", j.Table, "-D", j.From}, spec...)...)
	}
	if err != nil {
		return fmt.Errorf("delete jump %s/%s %q: %w", j.Table, j.From, j.Rule, err)
	}
	return nil
}

// DeleteChain flushes and deletes chain if it exists.
func (r *Runner) DeleteChain(table, chain string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.known.chains, table+"/"+chain)
	d, err := r.dump(table)
	if err == nil && slices.Contains(d.names, chain) {
		in := fmt.Sprintf("*%s\n-F %s\n-X %s\nCOMMIT\n", table, chain, chain)
		err = r.run(r.restore, []byte(in), "--noflush", "-w", "5")
	}
	if err != nil {
		return fmt.Errorf("delete chain %s/%s: %w", table, chain, err)
	}
	r.known.dropChain(table, chain)
	for k := range r.canonical {
		if strings.HasPrefix(k, "-A "+chain+" ") {
			delete(r.canonical, k)
		}
	}
	return nil
}

// ListChains returns the chains in table whose names start with prefix;
// after a first read, from memory until the next Invalidate.
func (r *Runner) ListChains(table, prefix string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.dump(table)
	if err != nil {
		return nil, fmt.Errorf("list %s chains: %w", table, err)
	}
	var out []string
	for _, c := range d.names {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Invalidate forgets what the Runner knows of the kernel: the next sync
// reads every chain again. The agent calls it for a full pass (the
// periodic resync, a retry after an error) and the drift watch calls it
// when something else changed the rules.
func (r *Runner) Invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known.reset()
}

// dump returns what the kernel holds in table: one iptables-save, read
// once and then kept up to date with our own writes until Invalidate.
func (r *Runner) dump(table string) (*tableDump, error) {
	if d, ok := r.known.dumps[table]; ok {
		return d, nil
	}
	var out bytes.Buffer
	err := r.do(func() error {
		cmd := exec.Command(r.save, "-t", table)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s -t %s: %w: %s", r.save, table, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	d := parseSave(out.Bytes())
	r.known.dumps[table] = d
	return d, nil
}

// restoreInput is the iptables-restore input that makes the stale chains
// hold their rules: with edit, a chain whose content is known gets only
// its difference (rules deleted and inserted by position between the
// common head and tail), the others are declared (which flushes them) and
// written whole.
func (r *Runner) restoreInput(table string, stale []Chain, edit bool) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "*%s\n", table)
	var whole []Chain
	for _, c := range stale {
		have, ok := r.known.chains[table+"/"+c.Name]
		if !edit || !ok {
			whole = append(whole, c)
			fmt.Fprintf(&buf, ":%s - [0:0]\n", c.Name)
			continue
		}
		head := 0
		for head < len(have) && head < len(c.Rules) && have[head] == c.Rules[head] {
			head++
		}
		tail := 0
		for tail < len(have)-head && tail < len(c.Rules)-head && have[len(have)-1-tail] == c.Rules[len(c.Rules)-1-tail] {
			tail++
		}
		for range len(have) - head - tail {
			fmt.Fprintf(&buf, "-D %s %d\n", c.Name, head+1)
		}
		for i, rule := range c.Rules[head : len(c.Rules)-tail] {
			if tail == 0 {
				fmt.Fprintf(&buf, "-A %s %s\n", c.Name, rule)
			} else {
				fmt.Fprintf(&buf, "-I %s %d %s\n", c.Name, head+1+i, rule)
			}
		}
	}
	for _, c := range whole {
		for _, rule := range c.Rules {
			fmt.Fprintf(&buf, "-A %s %s\n", c.Name, rule)
		}
	}
	buf.WriteString("COMMIT\n")
	return buf.Bytes()
}
