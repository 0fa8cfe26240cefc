package agent

import (
	"log/slog"
	"slices"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
)

// recordKeeper is the bridge reconciler's OnRecord: it keeps the record
// the reconciler hands over mid-apply. The pass writes state.json once at
// its end, except for one case: a namespace the reconciler is about to
// create is written at once (Store.Commit), before the namespace exists,
// so an agent that crashes right after creating it finds it recorded as
// its own on restart (and --cleanup-on-exit removes it) instead of
// adopting it as pre-existing.
func recordKeeper(store *pass.Store, log *slog.Logger) func(bridge.Record) {
	return func(rec bridge.Record) {
		var fresh bool
		store.Read(func(st *pass.State) {
			for _, ns := range rec.CreatedNetns {
				if !slices.Contains(st.Bridge.CreatedNetns, ns) {
					fresh = true
				}
			}
		})
		if !fresh {
			store.Update(func(st *pass.State) { st.Bridge = rec })
			return
		}
		err := store.Commit(func(st *pass.State) error { st.Bridge = rec; return nil })
		if err != nil {
			// The record stays in memory and the pass writes it at its end.
			store.Update(func(st *pass.State) { st.Bridge = rec })
			log.Error("write the record of a namespace about to be created", "err", err)
		}
	}
}
