package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
)

// StateFile is the name of the state file inside state_dir.
const StateFile = "state.json"

const stateVersion = 1

// State is what the agent keeps in state_dir/state.json: what must survive
// a restart and cannot be read back from the kernel.
type State struct {
	Version int `json:"version"`
	// Allocations are the dynamically allocated addresses, network ->
	// container -> address, replayed so addresses are stable.
	Allocations map[string]map[string]netip.Addr `json:"allocations,omitempty"`
	// Containers are the run-time containers (API run), in the order they
	// were added.
	Containers []api.ContainerSpec `json:"containers,omitempty"`
	// Bridge is the bridge reconciler's record: namespaces we created or
	// configured, MACs, ip_forward.
	Bridge bridge.Record `json:"bridge"`
	// Ports are the published ports' host port assignments and the
	// mappings last put in force (see ports.go).
	Ports PortState `json:"ports,omitzero"`
	// Overlay holds this host's overlay block claims (overlay_ipam.go).
	Overlay *OverlayState `json:"overlay,omitempty"`
}

func newState() *State {
	return &State{Version: stateVersion, Allocations: map[string]map[string]netip.Addr{}}
}

// loadState reads dir/state.json; a missing file is an empty state.
func loadState(dir string) (*State, error) {
	p := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s := newState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", p, err)
	}
	if s.Version > stateVersion {
		return nil, fmt.Errorf("state %s has version %d, newer than this agent's %d", p, s.Version, stateVersion)
	}
	if s.Allocations == nil {
		s.Allocations = map[string]map[string]netip.Addr{}
	}
	s.Version = stateVersion
	return s, nil
}

// save writes the state atomically: a temporary file, fsync, rename, and
// fsync of the directory.
func (s *State) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+StateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, StateFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// clone deep-copies the state.
func (s *State) clone() *State {
	b, _ := json.Marshal(s)
	c := newState()
	json.Unmarshal(b, c)
	if c.Allocations == nil {
		c.Allocations = map[string]map[string]netip.Addr{}
	}
	return c
}
