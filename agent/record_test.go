package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/ipt"
)

// diskKernel is a bridge.Kernel that, when asked to create a namespace,
// reads state.json from disk: what a crash at that instant would leave.
type diskKernel struct {
	bridge.Kernel // unused methods panic
	dir           string
	onDisk        [][]string // CreatedNetns on disk at each CreateNetns
}

func (k *diskKernel) Links(string) ([]bridge.Link, error)          { return nil, nil }
func (k *diskKernel) DefaultRoutes(string) ([]bridge.Route, error) { return nil, nil }
func (k *diskKernel) NetnsExists(string) bool                      { return false }
func (k *diskKernel) Sysctl(string) (string, error)                { return "", os.ErrNotExist }
func (k *diskKernel) Writes() int64                                { return 0 }
func (k *diskKernel) CreateNetns(string) error {
	st, err := pass.LoadState(k.dir)
	if err != nil {
		return err
	}
	k.onDisk = append(k.onDisk, slices.Clone(st.Bridge.CreatedNetns))
	return errors.New("crash here")
}

// noIPT is an ipt.Iptables with no chains.
type noIPT struct{ ipt.Iptables }

func (noIPT) SyncChains(string, []ipt.Chain) (bool, error) { return false, nil }
func (noIPT) EnsureJump(ipt.Jump) (bool, error)            { return false, nil }
func (noIPT) ListChains(string, string) ([]string, error)  { return nil, nil }
func (noIPT) DeleteChain(string, string) error             { return nil }
func (noIPT) Rules(string, string) ([]string, error)       { return nil, nil }
func (noIPT) DeleteJump(ipt.Jump) error                    { return nil }

// TestCreatedNetnsDurableBeforeCreation: the record of a namespace the
// agent creates is on disk before the namespace exists, although the pass
// otherwise writes state.json only at its end.
func TestCreatedNetnsDurableBeforeCreation(t *testing.T) {
	tests := []struct {
		name    string
		already []string // CreatedNetns recorded before the pass
	}{
		{"first namespace", nil},
		{"next to a recorded one", []string{"old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := pass.NewStore(dir)
			store.Update(func(st *pass.State) { st.Bridge.CreatedNetns = tt.already })
			if err := store.Flush(); err != nil {
				t.Fatal(err)
			}
			k := &diskKernel{dir: dir}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			r := &bridge.Reconciler{Kernel: k, IPT: noIPT{}, Log: log, OnRecord: recordKeeper(store, log)}
			var rec bridge.Record
			store.Read(func(st *pass.State) { rec = st.Bridge })
			want := &bridge.State{Containers: []bridge.Container{{Name: "web", Netns: "web"}}}
			_, _ = r.Reconcile(context.Background(), want, rec)
			if len(k.onDisk) != 1 {
				t.Fatalf("CreateNetns called %d times, want 1", len(k.onDisk))
			}
			if !slices.Contains(k.onDisk[0], "web") {
				t.Fatalf("state.json at creation records %v, want web among them", k.onDisk[0])
			}
		})
	}
}

// TestRecordKeeperNoWriteWithoutCreation: other record changes wait for
// the pass's one flush.
func TestRecordKeeperNoWriteWithoutCreation(t *testing.T) {
	dir := t.TempDir()
	store := pass.NewStore(dir)
	recordKeeper(store, slog.New(slog.NewTextHandler(io.Discard, nil)))(bridge.Record{Namespaces: []string{"web"}})
	if _, err := os.Stat(dir + "/" + pass.StateFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state.json written without a created namespace (stat: %v)", err)
	}
	store.Read(func(st *pass.State) {
		if !slices.Equal(st.Bridge.Namespaces, []string{"web"}) {
			t.Fatalf("record in memory = %v", st.Bridge.Namespaces)
		}
	})
}
