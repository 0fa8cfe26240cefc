package fakekernel

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// IPT is in-memory iptables: chains by "table/chain" and the jumps into
// them, as bridge's firewall and port publishing write them.
type IPT struct {
	mu sync.Mutex
	// Chains holds the rules of each chain by "table/chain".
	Chains map[string][]string
	// Jumps are the jumps from built-in chains.
	Jumps  map[ipt.Jump]bool
	writes int64
}

// NewIPT returns empty iptables.
func NewIPT() *IPT {
	return &IPT{Chains: map[string][]string{}, Jumps: map[ipt.Jump]bool{}}
}

// Writes counts the changes so far.
func (f *IPT) Writes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// SyncChains replaces the chains that differ.
func (f *IPT) SyncChains(table string, chains []ipt.Chain) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	for _, c := range chains {
		key := table + "/" + c.Name
		have, ok := f.Chains[key]
		if ok && slices.Equal(have, c.Rules) {
			continue
		}
		f.Chains[key] = slices.Clone(c.Rules)
		if f.Chains[key] == nil {
			f.Chains[key] = []string{}
		}
		changed = true
	}
	if changed {
		f.writes++
	}
	return changed, nil
}

// EnsureJump adds a jump unless it is there.
func (f *IPT) EnsureJump(j ipt.Jump) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Jumps[j] {
		return false, nil
	}
	f.Jumps[j] = true
	f.writes++
	return true, nil
}

// DeleteJump removes a jump if it is there.
func (f *IPT) DeleteJump(j ipt.Jump) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Jumps[j] {
		delete(f.Jumps, j)
		f.writes++
	}
	return nil
}

// DeleteChain removes a chain nothing jumps to.
func (f *IPT) DeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := table + "/" + chain
	if _, ok := f.Chains[key]; !ok {
		return nil
	}
	for j := range f.Jumps {
		if j.Table == table && strings.HasSuffix(j.Rule, "-j "+chain) {
			return fmt.Errorf("chain %s is referenced", chain)
		}
	}
	for k, rules := range f.Chains {
		if strings.HasPrefix(k, table+"/") && k != key && slices.Contains(rules, "-j "+chain) {
			return fmt.Errorf("chain %s is referenced by %s", chain, k)
		}
	}
	delete(f.Chains, key)
	f.writes++
	return nil
}

// ListChains lists a table's chains whose name starts with prefix.
func (f *IPT) ListChains(table, prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.Chains {
		t, c, _ := strings.Cut(k, "/")
		if t == table && strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Rules lists a chain's rules as iptables -S would (jumps first).
func (f *IPT) Rules(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for j := range f.Jumps {
		if j.Table == table && j.From == chain {
			out = append(out, "-A "+chain+" "+j.Rule)
		}
	}
	if rules, ok := f.Chains[table+"/"+chain]; ok {
		for _, r := range rules {
			out = append(out, "-A "+chain+" "+r)
		}
	}
	return out, nil
}
