package pass

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/internal/atomicfile"
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
	// mappings last put in force (agent/portstep).
	Ports PortState `json:"ports,omitzero"`
	// Overlay holds this host's overlay block claims (agent/overlaystep).
	Overlay *OverlayState `json:"overlay,omitempty"`
	// Attachments are the runtime attachments (CNI, Docker) the agent
	// accepted, in the order they were made (see attach.go).
	Attachments []api.AttachRequest `json:"attachments,omitempty"`
	// Reserved are addresses a runtime's IPAM holds (Docker's
	// RequestAddress) by network, before or besides an attachment.
	Reserved map[string][]netip.Addr `json:"reserved,omitempty"`
}

// PortState is what state.json keeps about published ports.
type PortState struct {
	// Assignments are the host ports of the bindings (portmap.Binding.Key
	// → port), replayed as Allocator.Previous so random ports stay the same
	// across restarts and reloads.
	Assignments map[string]uint16 `json:"assignments,omitempty"`
	// Applied are the mappings whose rules the last pass put in force, so
	// the next pass, in this agent or a restarted one, knows which mappings
	// went away (their conntrack entries are flushed) and which are new.
	Applied []portmap.Mapping `json:"applied,omitempty"`
}

// OverlayState is the overlay step's part of the state file.
type OverlayState struct {
	// Claims are this host's block claims by overlay network.
	Claims map[string][]OverlayClaim `json:"claims,omitempty"`
	// Last is the last address handed out per overlay network, so
	// allocation goes round robin across restarts.
	Last map[string]netip.Addr `json:"last,omitempty"`
}

// OverlayClaim is one block this host claimed.
type OverlayClaim struct {
	Prefix netip.Prefix `json:"prefix"`
	// Fixed marks the configured ip_range.
	Fixed bool `json:"fixed,omitempty"`
	// Since is when the claim was made; Published when this host first
	// announced it (the settle period counts from then).
	Since     time.Time `json:"since"`
	Published time.Time `json:"published,omitzero"`
	// Settled is set once addresses may be handed out from the block.
	Settled bool `json:"settled,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Version: stateVersion, Allocations: map[string]map[string]netip.Addr{}}
}

// LoadState reads dir/state.json; a missing file is an empty state.
func LoadState(dir string) (*State, error) {
	p := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return NewState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s := NewState()
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

// encode is the state file's content.
func (s *State) encode() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return append(b, '\n'), nil
}

// Save writes the state to dir atomically (internal/atomicfile).
func (s *State) Save(dir string) error {
	b, err := s.encode()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, StateFile), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// Clone deep-copies the state.
func (s *State) Clone() *State {
	b, _ := json.Marshal(s)
	c := NewState()
	json.Unmarshal(b, c)
	if c.Allocations == nil {
		c.Allocations = map[string]map[string]netip.Addr{}
	}
	return c
}

// Store owns the state of a running agent. Everybody changes it through
// Update; the loop writes it once per pass (Flush), and only when its
// content changed, so an idle pass touches no disk. The API's run and rm
// flush at once: their answer promises the container is recorded.
type Store struct {
	dir string

	mu      sync.Mutex
	st      *State
	flushed []byte // the content last written or read
}

// NewStore returns a store of dir/state.json holding an empty state;
// Load reads the file.
func NewStore(dir string) *Store {
	st := NewState()
	b, _ := st.encode()
	return &Store{dir: dir, st: st, flushed: b}
}

// Load reads dir/state.json into the store (a missing file: empty).
func (s *Store) Load() error {
	st, err := LoadState(s.dir)
	if err != nil {
		return err
	}
	b, _ := st.encode()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st, s.flushed = st, b
	return nil
}

// Read calls fn with the state; fn must not keep or change it.
func (s *Store) Read(fn func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.st)
}

// Copy returns a deep copy of the state.
func (s *Store) Copy() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Clone()
}

// Update changes the state in memory; the next Flush writes it.
func (s *Store) Update(fn func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.st)
}

// Commit changes the state and writes it at once, for changes whose
// caller promises durability (the API's run and rm). When fn or the write
// fails, the state is rolled back and the error returned.
func (s *Store) Commit(fn func(*State) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	backup := s.st.Clone()
	err := fn(s.st)
	if err == nil {
		err = s.flushLocked(true)
	}
	if err != nil {
		s.st = backup
	}
	return err
}

// Flush writes the state if it changed since the last write. The write is
// atomic (a reader, or the agent restarted after a crash, sees the old or
// the new file: a rename survives the process) but not fsynced: what a
// pass records describes kernel state — namespaces, links, addresses —
// that a power loss takes with it, and the next pass records it again.
// Only Commit, whose caller promised the API's client a recorded
// container, waits for the disk (two fsyncs, tens of ms on a busy disk,
// on every attach otherwise).
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked(false)
}

func (s *Store) flushLocked(durable bool) error {
	b, err := s.st.encode()
	if err != nil {
		return err
	}
	if bytes.Equal(b, s.flushed) {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	write := atomicfile.Replace
	if durable {
		write = atomicfile.Write
	}
	if err := write(filepath.Join(s.dir, StateFile), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	s.flushed = b
	return nil
}
