package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/agent/portstep"
	"github.com/vxmesh/vxmesh/bridge/portmap"
)

// busyPorts is a host namespace where a process listens on tcp/7000.
type busyPorts struct{}

func (busyPorts) Sockets() ([]portmap.Socket, error) {
	return []portmap.Socket{{Proto: "tcp", Addr: netip.IPv4Unspecified(), Port: 7000, Inode: 99}}, nil
}
func (busyPorts) LocalAddrs() ([]netip.Addr, error)              { return nil, nil }
func (busyPorts) PIDOf(uint64) int                               { return 4242 }
func (busyPorts) FlushConntrack([]portmap.Mapping) (uint, error) { return 0, nil }
func (busyPorts) FlushUnmapped([]portmap.Mapping) (uint, error)  { return 0, nil }

// TestStatusShowsRefusedPorts: the read API describes the last pass's
// value with what the ports step made of it: a container whose port is
// taken is in error, saying so.
func TestStatusShowsRefusedPorts(t *testing.T) {
	dir := t.TempDir()
	cfg := mustParse(t, "state_dir: "+dir+"\nnetworks:\n  - name: web\n    subnet: 10.1.0.0/24\ncontainers:\n  - name: a\n    networks: [web]\n  - name: b\n    networks: [web]\n    publish: [\"7000:80\"]\n")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg, Options{Kernel: newStubKernel(), Iptables: &stubIPT{}, Logger: log, EtcNetns: filepath.Join(dir, "etc")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	a.ports = portstep.NewWith(pass.Env{Store: a.store, Trigger: func() {}, Log: log}, busyPorts{}, &stubIPT{})
	d := buildDesired(cfg, nil, a.store.Copy(), nil)
	if err := a.ports.Prepare(d); err != nil {
		t.Fatal(err)
	}
	a.ports.Apply(context.Background(), d) // the stub's chains stay empty: the flush is postponed, the view is set
	a.finish(d, 0, true, map[string]error{}, nil)

	s := a.snapshot()
	if c := s.container(s.d.Container("b")); c.State != api.StateError || !strings.HasPrefix(c.Error, "ports refused: ") {
		t.Errorf("b = %+v, want ports refused", c)
	}
	if c := s.container(s.d.Container("a")); c.State != api.StateOK {
		t.Errorf("a = %+v, want ok", c)
	}
}
