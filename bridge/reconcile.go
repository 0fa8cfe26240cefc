package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Reconciler reads, plans and applies the local state of one host.
type Reconciler struct {
	// Kernel does the netlink side; required.
	Kernel Kernel
	// IPT does the iptables side of the host namespace; required.
	IPT ipt.Iptables
	// IPT6 does the ip6tables side; nil leaves ip6tables alone (then IPv6
	// subnets get no masquerade, isolation or published ports).
	IPT6 ipt.Iptables
	// Planner holds the name-file root and the MAC generator.
	Planner
	// Log gets one line per change; default slog.Default().
	Log *slog.Logger
	// OnRecord, when set, is called with the Record whenever Apply changes
	// which namespaces are ours, before going on, so the caller can persist
	// it (a crash then never leaves a namespace we made unrecorded).
	OnRecord func(Record)
	// OnChange, when set, is called after each kernel or file change (the
	// one logged line), with its op: the agent counts writes by kind.
	OnChange func(Op)
	// Fault, when set, is called at named points of an apply
	// (FaultAfterNetnsCreate, FaultAfterVethCreate, FaultMidIptablesSync):
	// crash tests kill the process there. Nil in production.
	Fault func(point string)

	driftOnce sync.Once
	drift     *drift // what Watch needs; see driftState
}

// Result is what one Apply did.
type Result struct {
	// Changes counts the ops that changed the kernel or the files.
	Changes int
	// Containers that failed, by name; the others are as desired.
	Containers map[string]error
	// Networks that failed, by name.
	Networks map[string]error
	// Host holds failures not tied to a container or network (stale
	// namespaces, firewall, sysctls).
	Host []error
	// Record is the updated record to persist.
	Record Record
}

// Err joins every failure, nil when all went well.
func (r *Result) Err() error {
	var errs []error
	for _, name := range sortedKeys(r.Networks) {
		errs = append(errs, fmt.Errorf("network %q: %w", name, r.Networks[name]))
	}
	for _, name := range sortedKeys(r.Containers) {
		errs = append(errs, fmt.Errorf("container %q: %w", name, r.Containers[name]))
	}
	errs = append(errs, r.Host...)
	return errors.Join(errs...)
}

func sortedKeys(m map[string]error) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// Read collects the actual state relevant to want and rec.
func (r *Reconciler) Read(want *State, rec Record) (*Actual, error) {
	host, err := r.Kernel.Links("")
	if err != nil {
		return nil, fmt.Errorf("read host links: %w", err)
	}
	a := &Actual{Host: host, Sysctls: map[string]string{}, Netns: map[string]*NetnsState{}, Files: map[string]map[string][]byte{}}
	keys := []string{}
	for _, s := range append(HostSysctls, HostSysctls6...) {
		keys = append(keys, s.Key)
	}
	for k := range rec.Sysctls {
		keys = append(keys, k)
	}
	for _, k := range keys {
		v, err := r.Kernel.Sysctl(k)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		a.Sysctls[k] = v
	}
	var names []string
	for _, c := range want.Containers {
		names = append(names, c.Netns)
	}
	names = append(names, rec.Namespaces...)
	names = append(names, rec.CreatedNetns...)
	for _, ns := range names {
		if _, done := a.Netns[ns]; done {
			continue
		}
		st, err := r.readNetnsCached(ns)
		if err != nil {
			return nil, err
		}
		a.Netns[ns] = st
		if validName(ns) {
			files, err := r.readFilesCached(ns)
			if err != nil {
				return nil, err
			}
			a.Files[ns] = files
		}
	}
	return a, nil
}

func validName(ns string) bool {
	return ns != "" && ns != "." && ns != ".." && !slices.Contains([]byte(ns), '/')
}

func (r *Reconciler) readNetns(ns string) (*NetnsState, error) {
	st := &NetnsState{}
	if !(validName(ns) || netnsutil.IsPath(ns)) || !r.Kernel.NetnsExists(ns) {
		return st, nil
	}
	links, err := r.Kernel.Links(ns)
	if err == nil {
		st.Routes, err = r.Kernel.DefaultRoutes(ns)
	}
	if err != nil {
		if !r.Kernel.NetnsExists(ns) {
			return &NetnsState{}, nil // deleted while we looked
		}
		return nil, fmt.Errorf("read netns %q: %w", ns, err)
	}
	st.Exists, st.Links = true, links
	return st, nil
}

// Reconcile reads the kernel, plans, and applies: one pass.
func (r *Reconciler) Reconcile(ctx context.Context, want *State, rec Record) (*Result, error) {
	have, err := r.Read(want, rec)
	if err != nil {
		return nil, err
	}
	plan := r.Planner.Plan(want, have, rec)
	res := r.Apply(ctx, plan, rec)
	r.forgetTouched(want, plan, res)
	r.watchDirs(want)
	return res, res.Err()
}

// Cleanup removes everything the record and the kernel say is ours:
// bridges, veths, namespaces we created, files, chains, and the sysctls
// we changed (back to what they were).
func (r *Reconciler) Cleanup(ctx context.Context, rec Record) (*Result, error) {
	return r.Reconcile(ctx, &State{RestoreSysctls: true}, rec)
}

// Apply runs the plan's ops in order. A failed op fails its owner (a
// container or network), whose remaining ops are skipped; the others go on.
func (r *Reconciler) Apply(ctx context.Context, plan *Plan, rec Record) *Result {
	res := &Result{Containers: map[string]error{}, Networks: map[string]error{}, Record: rec.clone()}
	for k, v := range plan.ContainerErrors {
		res.Containers[k] = v
	}
	for k, v := range plan.NetworkErrors {
		res.Networks[k] = v
	}
	for k, v := range plan.MACs {
		res.Record.MACs[k] = v
	}
	staleFailed := map[string]bool{}
	for _, op := range plan.Ops {
		if err := ctx.Err(); err != nil {
			res.Host = append(res.Host, fmt.Errorf("apply interrupted: %w", err))
			break
		}
		if op.Container != "" && res.Containers[op.Container] != nil {
			continue
		}
		if op.Container != "" {
			if net := r.failedNetwork(plan, res, op.Container); net != "" {
				res.Containers[op.Container] = fmt.Errorf("network %q failed: %w", net, res.Networks[net])
				continue
			}
		} else if op.Network != "" && res.Networks[op.Network] != nil {
			continue
		}
		if op.Kind == OpForgetNetns && staleFailed[op.Netns] {
			continue
		}
		changed, err := r.exec(op, &res.Record)
		if err != nil {
			err = fmt.Errorf("%s: %w", op.Describe(), err)
			r.log().Error("apply failed", "op", op.String(), "container", op.Container, "network", op.Network, "err", err)
			switch {
			case op.Container != "" && !r.stale(op, plan):
				res.Containers[op.Container] = err
			case op.Network != "" && op.Container == "" && op.Netns == "" && op.Kind != OpDeleteLink:
				res.Networks[op.Network] = err
			default:
				if op.Netns != "" {
					staleFailed[op.Netns] = true
				}
				res.Host = append(res.Host, err)
			}
			continue
		}
		if changed {
			res.Changes++
		}
	}
	return res
}

// stale reports whether op belongs to a container no longer wanted (its
// failure is a host error, not the container's).
func (r *Reconciler) stale(op Op, plan *Plan) bool {
	_, wanted := plan.ContainerNetworks[op.Container]
	return !wanted
}

func (r *Reconciler) failedNetwork(plan *Plan, res *Result, ctr string) string {
	for _, n := range plan.ContainerNetworks[ctr] {
		if res.Networks[n] != nil {
			return n
		}
	}
	return ""
}

func (r *Reconciler) persist(rec Record) {
	if r.OnRecord != nil {
		r.OnRecord(rec.clone())
	}
}

// logChange writes the one line per kernel change.
func (r *Reconciler) logChange(msg string, op Op, attrs ...any) {
	a := []any{}
	if op.Container != "" {
		a = append(a, "container", op.Container)
	}
	if op.Network != "" {
		a = append(a, "network", op.Network)
	}
	if op.Netns != "" {
		a = append(a, "netns", op.Netns)
	}
	a = append(a, attrs...)
	a = append(a, "reason", op.Reason)
	r.log().Info(msg, a...)
	if r.OnChange != nil {
		r.OnChange(op)
	}
}

// Points of an apply where Reconciler.Fault is called.
const (
	FaultAfterNetnsCreate = "after-netns-create"
	FaultAfterVethCreate  = "after-veth-create"
	FaultMidIptablesSync  = "mid-iptables-sync" // nat synced, filter not yet
)

func (r *Reconciler) fault(point string) {
	if r.Fault != nil {
		r.Fault(point)
	}
}

// syncFirewall syncs the chains of both families (IPv6 when IPT6 is set).
func (r *Reconciler) syncFirewall(op Op) (bool, error) {
	changed, err := r.syncFamily(r.IPT, Jumps, op.NAT, op.Filter, op)
	if err != nil || r.IPT6 == nil {
		return changed, err
	}
	c6, err := r.syncFamily(r.IPT6, Jumps6, op.NAT6, op.Filter6, op)
	if err != nil {
		err = fmt.Errorf("ip6tables: %w", err)
	}
	return changed || c6, err
}

// syncFamily makes one family's tables hold exactly nat and filter of ours.
func (r *Reconciler) syncFamily(tables ipt.Iptables, jumps []ipt.Jump, nat, filter []ipt.Chain, op Op) (bool, error) {
	changed := false
	for _, t := range []struct {
		table  string
		chains []ipt.Chain
	}{{"nat", nat}, {"filter", filter}} {
		c, err := tables.SyncChains(t.table, t.chains)
		if err != nil {
			return changed, err
		}
		if c {
			changed = true
			names := make([]string, len(t.chains))
			for i, ch := range t.chains {
				names[i] = ch.Name
			}
			r.logChange("synced chains", op, "table", t.table, "chains", names)
		}
		if t.table == "nat" {
			r.fault(FaultMidIptablesSync)
		}
	}
	for _, j := range jumps {
		added, err := tables.EnsureJump(j)
		if err != nil {
			return changed, err
		}
		if added {
			changed = true
			r.logChange("added jump", op, "table", j.Table, "chain", j.From, "rule", j.Rule)
		}
	}
	// Chains of ours nothing wants any more (a contributor dropped one).
	for _, t := range []struct {
		table  string
		chains []ipt.Chain
	}{{"nat", nat}, {"filter", filter}} {
		have, err := tables.ListChains(t.table, ChainPrefix)
		if err != nil {
			return changed, err
		}
		for _, name := range have {
			if slices.ContainsFunc(t.chains, func(c ipt.Chain) bool { return c.Name == name }) {
				continue
			}
			if err := tables.DeleteChain(t.table, name); err != nil {
				return changed, err
			}
			changed = true
			r.logChange("deleted chain", op, "table", t.table, "chain", name)
		}
	}
	return changed, nil
}

// removeFirewall removes our chains and jumps of both families.
func (r *Reconciler) removeFirewall(op Op) (bool, error) {
	changed, err := r.removeFamily(r.IPT, Jumps, op)
	if err != nil || r.IPT6 == nil {
		return changed, err
	}
	c6, err := r.removeFamily(r.IPT6, Jumps6, op)
	if err != nil {
		err = fmt.Errorf("ip6tables: %w", err)
	}
	return changed || c6, err
}

// removeFamily removes one family's chains and jumps of ours.
func (r *Reconciler) removeFamily(tables ipt.Iptables, jumps []ipt.Jump, op Op) (bool, error) {
	changed := false
	for _, j := range jumps {
		rules, err := tables.Rules(j.Table, j.From)
		if err != nil {
			return changed, err
		}
		target := j.Rule[strings.LastIndex(j.Rule, "-j "):]
		if !slices.ContainsFunc(rules, func(l string) bool { return strings.HasSuffix(l, target) }) {
			continue
		}
		if err := tables.DeleteJump(j); err != nil {
			return changed, err
		}
		changed = true
		r.logChange("deleted jump", op, "table", j.Table, "chain", j.From, "rule", j.Rule)
	}
	for _, table := range []string{"nat", "filter"} {
		left, err := tables.ListChains(table, ChainPrefix)
		if err != nil {
			return changed, err
		}
		// Chains may jump to each other; delete what can go, then retry.
		for len(left) > 0 {
			var next []string
			var lastErr error
			for _, name := range left {
				if err := tables.DeleteChain(table, name); err != nil {
					next, lastErr = append(next, name), err
					continue
				}
				changed = true
				r.logChange("deleted chain", op, "table", table, "chain", name)
			}
			if len(next) == len(left) {
				return changed, lastErr
			}
			left = next
		}
	}
	return changed, nil
}
