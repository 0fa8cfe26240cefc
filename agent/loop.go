package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// loop is the level-triggered reconcile loop.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTimer(a.opts.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var backoff time.Duration
	var last time.Time
	a.setFaults()
	// Rules and name files changed by others are repaired at once: the
	// watch marks us dirty (and drops the iptables cache).
	watchDone := make(chan struct{})
	defer func() { <-watchDone }()
	go func() {
		defer close(watchDone)
		a.br.Watch(ctx, func(kind, why string) {
			a.log.Info("drift detected; repairing", "kind", kind, "why", why)
			a.bsk.stale.Store(true)
			a.Trigger()
		})
	}()
	a.Trigger()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.dirty:
		case <-resync.C:
			a.br.Invalidate() // a full pass: read every chain again
			a.bsk.stale.Store(true)
		case <-retry.C:
			a.br.Invalidate()
			a.bsk.stale.Store(true)
		}
		if !a.paced(ctx, last) {
			return
		}
		// Whatever marked us dirty until now is covered by this pass.
		select {
		case <-a.dirty:
		default:
		}
		err := a.pass(ctx)
		last = time.Now()
		if ctx.Err() != nil {
			return
		}
		retry.Stop()
		if err != nil {
			backoff = min(max(2*backoff, a.opts.MinInterval*2), a.opts.MaxBackoff)
			a.log.Warn("reconcile failed; retrying", "in", backoff, "err", err)
			retry.Reset(backoff)
		} else {
			backoff = 0
		}
		resync.Reset(a.opts.ResyncInterval)
	}
}

// paced waits until MinInterval has passed since last, or until a caller
// waits for a pass (see awaited); it returns false when ctx is done.
func (a *Agent) paced(ctx context.Context, last time.Time) bool {
	wait := a.opts.MinInterval - time.Since(last)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for !a.awaited() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-a.urgent:
		}
	}
	return true
}

// awaited reports whether a caller waits for a pass that has not run yet
// (an API run or rm, a Sync, a reload): such a pass is not held back by
// MinInterval. MinInterval paces what nobody waits for (gossip changes,
// drift, resync), so that a burst of those coalesces; a waiting caller
// gets the next pass at once, and whatever arrives while it runs is
// coalesced into the one after.
func (a *Agent) awaited() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen > a.applied
}

// runtimeConfigs parses the run-time containers of st.
func (a *Agent) runtimeConfigs(st *pass.State) []config.Container {
	var out []config.Container
	for _, s := range st.Containers {
		c, err := s.ToConfig()
		if err != nil {
			a.log.Error("run-time container in state file is broken; ignored", "container", s.Name, "err", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

// hostNameservers reads the host's nameservers (minus loopback ones).
func (a *Agent) hostNameservers() []netip.Addr {
	b, err := os.ReadFile(a.opts.HostResolvConf)
	if err != nil {
		return nil
	}
	return bridge.HostNameservers(b)
}

// takeSnapshot reads every input once (under a.mu): the config, a copy of
// the state with its run-time containers, the gossip view and the host's
// nameservers. It returns the input generation it saw.
func (a *Agent) takeSnapshot() (*pass.Snapshot, uint64) {
	st := a.store.Copy()
	return &pass.Snapshot{
		Config:  a.cfg,
		Runtime: a.runtimeConfigs(st),
		State:   st,
		Gossip:  a.ovl.Gossip(),
		HostDNS: a.hostNameservers(),
	}, a.gen
}

// sourcesReady reports whether every extra input has been read once.
func (a *Agent) sourcesReady() bool {
	for _, s := range a.opts.Sources {
		if !s.Ready() {
			a.log.Info("waiting for input before applying anything", "source", s.Name())
			return false
		}
	}
	return true
}

// pass is one reconcile pass over one snapshot of every input: build the
// desired value, let the steps prepare it, apply the bridge side and then
// the steps, and write the state once.
func (a *Agent) pass(ctx context.Context) error {
	start := time.Now()
	a.mu.Lock()
	snap, gen := a.takeSnapshot()
	a.mu.Unlock()
	d := pass.Build(snap, a.ovl)
	ph := newPhases(start)
	ph.mark("build")
	if !a.sourcesReady() {
		a.finish(d, gen, false, nil, nil)
		return nil
	}
	for _, c := range d.Conflicts {
		a.log.Warn("conflict", "problem", c)
	}
	var errs []error
	for _, s := range a.steps {
		if err := s.Prepare(d); err != nil {
			errs = append(errs, fmt.Errorf("prepare %s: %w", s.Name(), err))
		}
		ph.mark("prepare " + s.Name())
	}
	a.mu.Lock()
	if a.gen == gen {
		// Only addresses of inputs nobody changed meanwhile: an rm since
		// the snapshot must not have its allocation written back.
		a.store.Update(func(st *pass.State) {
			if !allocEqual(st.Allocations, d.Allocations) {
				st.Allocations = d.Allocations
			}
		})
	}
	a.mu.Unlock()
	results, changes, err := a.applyBridge(ctx, d)
	if err != nil {
		errs = append(errs, err)
	}
	ph.mark("bridge")
	for _, s := range a.steps {
		if err := s.Apply(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
		ph.mark("apply " + s.Name())
	}
	a.crashPoint(FaultBeforeStateFlush)
	if err := a.store.Flush(); err != nil {
		errs = append(errs, err)
	}
	ph.mark("flush")
	if err := a.metrics.Serve(d.Config.Metrics.Listen); err != nil {
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	a.metrics.Observe(len(d.Containers), len(d.Config.Networks), len(d.Remote), time.Since(start), err)
	a.metrics.ObserveDesired(d)
	a.finish(d, gen, true, results, err)
	a.log.Debug("pass done", "duration", time.Since(start), "phases", ph)
	if changes > 0 {
		a.log.Info("reconciled", "changes", changes, "containers", len(d.Bridge.Containers), "networks", len(d.Bridge.Networks))
	}
	return err
}

// applyBridge runs the bridge reconciler on d; it returns the error of
// each container and the number of kernel changes.
func (a *Agent) applyBridge(ctx context.Context, d *pass.Desired) (map[string]error, int, error) {
	var rec bridge.Record
	a.store.Read(func(st *pass.State) { rec = st.Bridge })
	results := map[string]error{}
	if a.bsk.unchanged(&d.Bridge, rec) {
		return results, 0, nil
	}
	a.bsk.stale.Store(false) // drift from now on counts against this reconcile
	res, err := a.br.Reconcile(ctx, &d.Bridge, rec)
	changes := 0
	if res != nil {
		a.saveRecord(res.Record)
		maps.Copy(results, res.Containers)
		changes = res.Changes
	} else if err != nil {
		for _, c := range d.Bridge.Containers {
			results[c.Name] = err
		}
	}
	a.bsk.done(&d.Bridge, res, err)
	return results, changes, err
}

// bridgeSkip lets a pass skip the bridge reconcile when it would change
// nothing: the desired bridge state and its record are those of the last
// reconcile, which succeeded, and neither drift, a resync nor a retry came
// since. Most passes on a cluster are of that kind: every change on
// another host (an attach anywhere) makes each agent program it (the fast
// path) and run a pass after it, whose bridge side is then the same. On a
// 10-host lab that reconcile (reading the host's links and addresses, the
// cached namespaces and chains) was ~3 ms of CPU per agent per change
// elsewhere, the largest part of such a pass.
type bridgeSkip struct {
	// stale is set by drift, the resync and a retry (loop): the next
	// pass reconciles. A reconcile that failed leaves applied nil.
	stale   atomic.Bool
	applied *bridge.State // what the last good reconcile made (nil: none)
	rec     bridge.Record // and the record it left
}

// unchanged reports whether a reconcile of want from rec may be skipped.
func (b *bridgeSkip) unchanged(want *bridge.State, rec bridge.Record) bool {
	return !b.stale.Load() && b.applied != nil && reflect.DeepEqual(b.applied, want) && reflect.DeepEqual(b.rec, rec)
}

// done notes a reconcile of want and what it gave.
func (b *bridgeSkip) done(want *bridge.State, res *bridge.Result, err error) {
	if err != nil || res == nil || res.Err() != nil {
		b.applied = nil
		return
	}
	b.applied, b.rec = want, res.Record
}

// finish records a pass for the read APIs and wakes those waiting for it.
func (a *Agent) finish(d *pass.Desired, gen uint64, applied bool, results map[string]error, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last, a.lastApplied = d, applied
	if !applied {
		return
	}
	a.results, a.lastPass, a.lastErr = results, time.Now(), err
	if gen > a.applied {
		a.applied = gen
	}
	close(a.appliedCh)
	a.appliedCh = make(chan struct{})
}

func allocEqual(a, b map[string]map[string]netip.Addr) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]netip.Addr) bool { return maps.Equal(x, y) })
}

// saveRecord keeps the bridge record (the reconciler calls it mid-apply
// when it creates a namespace); the pass writes it with the rest, except
// when the namespaces that are ours changed: that is written at once, so
// a crash right after a namespace is made never leaves it unrecorded (and
// leaked by the cleanup that follows).
func (a *Agent) saveRecord(rec bridge.Record) {
	var ours bool
	a.store.Update(func(st *pass.State) {
		ours = !slices.Equal(st.Bridge.CreatedNetns, rec.CreatedNetns) || !slices.Equal(st.Bridge.Namespaces, rec.Namespaces)
		st.Bridge = rec
	})
	if ours {
		if err := a.store.Flush(); err != nil {
			a.log.Error("record namespaces", "err", err)
		}
	}
}

// waitApplied waits until a pass that saw input generation gen finished.
func (a *Agent) waitApplied(ctx context.Context, gen uint64) error {
	for {
		a.mu.Lock()
		done, ch := a.applied >= gen, a.appliedCh
		a.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Sync triggers a pass and waits until one that saw every input so far has
// finished; it returns that pass's error.
func (a *Agent) Sync(ctx context.Context) error {
	a.mu.Lock()
	gen := a.bump()
	a.mu.Unlock()
	if err := a.waitApplied(ctx, gen); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

// cleanup removes everything the agent created: the steps' state, then the
// bridge side (links, namespaces it created, files, chains, ip_forward).
func (a *Agent) cleanup(ctx context.Context) error {
	var errs []error
	for _, s := range slices.Backward(a.steps) {
		if err := s.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", s.Name(), err))
		}
	}
	var rec bridge.Record
	a.store.Read(func(st *pass.State) { rec = st.Bridge })
	res, err := a.br.Cleanup(ctx, rec)
	if res != nil {
		a.saveRecord(res.Record)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := a.store.Flush(); err != nil {
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if err != nil {
		a.log.Error("cleanup incomplete", "err", err)
	} else {
		a.log.Info("cleaned up everything vxmesh created")
	}
	return err
}
