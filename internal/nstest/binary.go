package nstest

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BuildVxmesh builds cmd/vxmesh into a temporary directory of t and returns
// the binary's path, for tests that run the real agent as a process.
func BuildVxmesh(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go" // where .ci/install-deps puts it
	}
	bin := filepath.Join(t.TempDir(), "vxmesh")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/vxmesh/vxmesh/cmd/vxmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// LogBuf is a bytes.Buffer safe for a child process writing (its stdout
// and stderr) while the test reads.
type LogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
