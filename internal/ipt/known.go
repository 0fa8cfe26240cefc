package ipt

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// known is what a Runner knows the kernel holds: chain contents it wrote
// or read equal to what it wanted, jumps it saw or added, and each table
// as last read (kept up to date with our writes). It is trusted only
// because the drift watch (Watch) invalidates it when anything else
// writes rules.
type known struct {
	chains map[string][]string   // "table/chain" -> rules as we spell them
	jumps  map[Jump]bool         // jumps present
	dumps  map[string]*tableDump // table -> its chains
}

func (k *known) reset() {
	k.chains, k.jumps, k.dumps = map[string][]string{}, map[Jump]bool{}, map[string]*tableDump{}
}

// wrote records that chain of table now holds lines.
func (k *known) wrote(table, chain string, lines []string) {
	d, ok := k.dumps[table]
	if !ok {
		return
	}
	if !slices.Contains(d.names, chain) {
		d.names = append(d.names, chain)
	}
	d.lines[chain] = lines
}

// dropChain records that chain of table is gone.
func (k *known) dropChain(table, chain string) {
	if d, ok := k.dumps[table]; ok {
		d.names = slices.DeleteFunc(d.names, func(n string) bool { return n == chain })
		delete(d.lines, chain)
	}
}

// tableDump is one table as iptables-save prints it.
type tableDump struct {
	names []string            // every chain, built-in ones included
	lines map[string][]string // chain -> its "-A CHAIN ..." lines
}

// parseSave reads the output of iptables-save for one table.
func parseSave(b []byte) *tableDump {
	d := &tableDump{lines: map[string][]string{}}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			if f := strings.Fields(l[1:]); len(f) > 0 {
				d.names = append(d.names, f[0])
			}
		case strings.HasPrefix(l, "-A "):
			if f := strings.Fields(l); len(f) > 1 {
				d.lines[f[1]] = append(d.lines[f[1]], l)
			}
		}
	}
	return d
}

// ownPIDs are the processes a Runner started to write rules, kept for a
// while: the kernel names the process behind each nftables commit, and a
// commit of one of ours is not drift.
type ownPIDs struct {
	mu   sync.Mutex
	pids map[int]time.Time
}

// ownPIDKeep is how long a writer's pid stays ours; long enough for its
// commit's notification to be read, short enough that pid reuse does not
// matter.
const ownPIDKeep = 30 * time.Second

func (o *ownPIDs) add(pid int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if o.pids == nil {
		o.pids = map[int]time.Time{}
	}
	for p, t := range o.pids {
		if now.Sub(t) > ownPIDKeep {
			delete(o.pids, p)
		}
	}
	o.pids[pid] = now
}

func (o *ownPIDs) has(pid int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.pids[pid]
	return ok
}
