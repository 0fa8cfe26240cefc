package overlay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/internal/fakekernel"
)

// loggedNL is the fake with a logger of its own, as *Handle has one.
type loggedNL struct {
	*fakekernel.NS
	log *slog.Logger
}

func (l loggedNL) Logger() *slog.Logger { return l.log }

// TestSyncLogsThroughHandle checks that Sync logs through the handle's
// logger, not the global one: an agent gives each handle a logger tagged
// with its host, and lines logged elsewhere lose that tag.
func TestSyncLogsThroughHandle(t *testing.T) {
	var own, global bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&global, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	f, _ := vxlanFake()
	h := loggedNL{f, slog.New(slog.NewTextHandler(&own, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if _, err := Sync(h, "vx-42", []Entry{ent("10.200.2.5", m1, v2)}); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"overlay entry written", "synced vxlan entries"} {
		if !strings.Contains(own.String(), msg) {
			t.Errorf("handle's log lacks %q:\n%s", msg, own.String())
		}
		// Only Sync's own lines count: a goroutine left by another test
		// may log through the global logger meanwhile.
		if strings.Contains(global.String(), msg) {
			t.Errorf("Sync logged %q through the global logger:\n%s", msg, global.String())
		}
	}
}
