package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/vxmesh/vxmesh/internal/ipt"
)

// Reconciler reads, plans and applies the local state of one host.
type Reconciler struct {
	// Kernel does the netlink side; required.
	Kernel Kernel
	// IPT does the iptables side of the host namespace; required.
	IPT ipt.Iptables
	// Planner holds the name-file root and the MAC generator.
	Planner
	// Log gets one line per change; default slog.Default().
	Log *slog.Logger
	// OnRecord, when set, is called with the Record whenever Apply changes
	// which namespaces are ours, before going on, so the caller can persist
	// it (a crash then never leaves a namespace we made unrecorded).
	OnRecord func(Record)
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
	for _, s := range HostSysctls {
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
		st, err := r.readNetns(ns)
		if err != nil {
			return nil, err
		}
		a.Netns[ns] = st
		if validName(ns) {
			files, err := readFiles(filepath.Join(r.etc(), ns))
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
	if !validName(ns) || !r.Kernel.NetnsExists(ns) {
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
}

// exec runs one op and updates rec; it reports whether anything changed.
func (r *Reconciler) exec(op Op, rec *Record) (bool, error) {
	k := r.Kernel
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
		if err := k.CreateNetns(op.Netns); err != nil {
			return false, err
		}
		r.logChange("created netns", op)
	case OpDeleteNetns:
		if err := k.DeleteNetns(op.Netns); err != nil {
			return false, err
		}
		r.logChange("deleted netns", op)
	case OpForgetNetns:
		rec.CreatedNetns = removeName(rec.CreatedNetns, op.Netns)
		rec.Namespaces = removeName(rec.Namespaces, op.Netns)
		for key := range rec.MACs {
			if filepath.Dir(key) == op.Netns {
				delete(rec.MACs, key)
			}
		}
		r.persist(*rec)
		return false, nil
	case OpAddBridge:
		if err := k.AddBridge(op.Link, op.Alias, op.MTU, op.MAC); err != nil {
			return false, err
		}
		r.logChange("added bridge", op, "bridge", op.Link, "mtu", op.MTU)
	case OpAddVeth:
		if err := k.AddVeth(op.Link, op.Master, op.Netns, op.Peer, op.Alias, op.MTU, op.MAC); err != nil {
			return false, err
		}
		rec.MACs[MACKey(op.Netns, op.Network)] = op.MAC.String()
		r.logChange("added veth", op, "host_if", op.Link, "bridge", op.Master, "if", op.Peer, "mac", op.MAC.String())
	case OpAddMacvlan:
		if err := k.AddMacvlan(op.Netns, op.Link, op.Peer, op.Alias, op.MTU, op.MAC); err != nil {
			return false, err
		}
		rec.MACs[MACKey(op.Netns, op.Network)] = op.MAC.String()
		r.logChange("added macvlan", op, "if", op.Link, "parent", op.Peer, "mac", op.MAC.String())
	case OpAddIPvlan:
		if err := k.AddIPvlan(op.Netns, op.Link, op.Peer, op.Alias, op.MTU); err != nil {
			return false, err
		}
		r.logChange("added ipvlan", op, "if", op.Link, "parent", op.Peer)
	case OpDeleteLink:
		if err := k.DeleteLink(op.Netns, op.Link); err != nil {
			return false, err
		}
		r.logChange("deleted link", op, "link", op.Link)
	case OpSetAlias:
		if err := k.SetAlias(op.Netns, op.Link, op.Alias); err != nil {
			return false, err
		}
		r.logChange("set alias", op, "link", op.Link, "alias", op.Alias)
	case OpSetUp:
		if err := k.SetUp(op.Netns, op.Link); err != nil {
			return false, err
		}
		r.logChange("set link up", op, "link", op.Link)
	case OpSetMTU:
		if err := k.SetMTU(op.Netns, op.Link, op.MTU); err != nil {
			return false, err
		}
		r.logChange("set mtu", op, "link", op.Link, "mtu", op.MTU)
	case OpSetMaster:
		if err := k.SetMaster(op.Link, op.Master); err != nil {
			return false, err
		}
		r.logChange("set master", op, "link", op.Link, "bridge", op.Master)
	case OpSetMAC:
		if err := k.SetMAC(op.Netns, op.Link, op.MAC); err != nil {
			return false, err
		}
		r.logChange("set mac", op, "link", op.Link, "mac", op.MAC.String())
	case OpAddAddr:
		if err := k.AddAddr(op.Netns, op.Link, op.Addr); err != nil {
			return false, err
		}
		r.logChange("added address", op, "link", op.Link, "addr", op.Addr.String())
	case OpDelAddr:
		if err := k.DelAddr(op.Netns, op.Link, op.Addr); err != nil {
			return false, err
		}
		r.logChange("deleted address", op, "link", op.Link, "addr", op.Addr.String())
	case OpReplaceRoute:
		if err := k.ReplaceDefaultRoute(op.Netns, op.Link, op.Gateway); err != nil {
			return false, err
		}
		r.logChange("set default route", op, "link", op.Link, "gateway", op.Gateway.String())
	case OpSetSysctl:
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
		r.logChange("set sysctl", op, "sysctl", op.Sysctl, "value", op.Value, "was", old)
	case OpSetHairpin:
		if err := k.SetHairpin(op.Link, op.On); err != nil {
			return false, err
		}
		r.logChange("set hairpin", op, "link", op.Link, "on", op.On)
	case OpWriteFile:
		if err := os.MkdirAll(filepath.Dir(op.File), 0o755); err != nil {
			return false, err
		}
		if err := writeFileAtomic(op.File, op.Content, 0o644); err != nil {
			return false, err
		}
		r.logChange("wrote file", op, "file", op.File)
	case OpRemoveFile:
		if err := os.Remove(op.File); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
		r.logChange("removed file", op, "file", op.File)
	case OpRemoveDir:
		// Only when empty: anything else in there is not ours.
		err := os.Remove(op.File)
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			return false, err
		}
		if err != nil {
			return false, nil
		}
		r.logChange("removed dir", op, "dir", op.File)
	case OpAnnounce:
		// A lost announcement only delays peers that cached another MAC
		// until their entry expires: worth a warning, not a failed container.
		a, ok := k.(Announcer)
		if !ok {
			return false, nil
		}
		if err := a.Announce(op.Netns, op.Link, op.Addr.Addr()); err != nil {
			r.log().Warn("announce address", "container", op.Container, "network", op.Network, "netns", op.Netns, "link", op.Link, "addr", op.Addr.Addr().String(), "err", err)
		}
		return false, nil
	case OpSyncFirewall:
		return r.syncFirewall(op)
	case OpRemoveFirewall:
		return r.removeFirewall(op)
	default:
		return false, fmt.Errorf("unknown op kind %q", op.Kind)
	}
	return true, nil
}

func (r *Reconciler) syncFirewall(op Op) (bool, error) {
	changed := false
	for _, t := range []struct {
		table  string
		chains []ipt.Chain
	}{{"nat", op.NAT}, {"filter", op.Filter}} {
		c, err := r.IPT.SyncChains(t.table, t.chains)
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
	}
	for _, j := range Jumps {
		added, err := r.IPT.EnsureJump(j)
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
	}{{"nat", op.NAT}, {"filter", op.Filter}} {
		have, err := r.IPT.ListChains(t.table, ChainPrefix)
		if err != nil {
			return changed, err
		}
		for _, name := range have {
			if slices.ContainsFunc(t.chains, func(c ipt.Chain) bool { return c.Name == name }) {
				continue
			}
			if err := r.IPT.DeleteChain(t.table, name); err != nil {
				return changed, err
			}
			changed = true
			r.logChange("deleted chain", op, "table", t.table, "chain", name)
		}
	}
	return changed, nil
}

func (r *Reconciler) removeFirewall(op Op) (bool, error) {
	changed := false
	for _, j := range Jumps {
		rules, err := r.IPT.Rules(j.Table, j.From)
		if err != nil {
			return changed, err
		}
		target := j.Rule[strings.LastIndex(j.Rule, "-j "):]
		if !slices.ContainsFunc(rules, func(l string) bool { return strings.HasSuffix(l, target) }) {
			continue
		}
		if err := r.IPT.DeleteJump(j); err != nil {
			return changed, err
		}
		changed = true
		r.logChange("deleted jump", op, "table", j.Table, "chain", j.From, "rule", j.Rule)
	}
	for _, table := range []string{"nat", "filter"} {
		left, err := r.IPT.ListChains(table, ChainPrefix)
		if err != nil {
			return changed, err
		}
		// Chains may jump to each other; delete what can go, then retry.
		for len(left) > 0 {
			var next []string
			var lastErr error
			for _, name := range left {
				if err := r.IPT.DeleteChain(table, name); err != nil {
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
