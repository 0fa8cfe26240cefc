package overlay

import (
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Kernel changes are logged at Info; keep test output to warnings
	// unless VXMESH_TEST_LOG is set.
	level := slog.LevelWarn
	if os.Getenv("VXMESH_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	os.Exit(m.Run())
}
