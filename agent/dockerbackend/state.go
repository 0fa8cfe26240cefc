package dockerbackend

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/atomicfile"
)

// StateFile is the backend's file in the agent's state directory.
const StateFile = "docker.json"

// state is what docker.json holds.
type state struct {
	// Networks maps a Docker network ID to its vxmesh network.
	Networks map[string]string `json:"networks"`
	// Endpoints maps a Docker endpoint ID to what CreateEndpoint, Join and
	// ProgramExternalConnectivity said.
	Endpoints map[string]endpoint `json:"endpoints"`
}

// endpoint is one Docker endpoint.
type endpoint struct {
	DockerNetwork string       `json:"docker_network"`
	Network       string       `json:"network"`
	Addr          netip.Prefix `json:"addr,omitzero"`
	Addr6         netip.Prefix `json:"addr6,omitzero"`
	MAC           string       `json:"mac,omitempty"`
	// Name and Aliases are the DNS names the attachment got (Join).
	Name    string   `json:"name,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	// ContainerID is the engine's container ID (Join) and IfName the
	// interface part of the attachment key, eth0, eth1… per network of
	// the container: with both, the attachment is keyed by the container
	// (see key). Both are empty when the engine did not name the
	// container, and in records written before they were kept.
	ContainerID string `json:"container_id,omitempty"`
	IfName      string `json:"ifname,omitempty"`
	// SandboxKey is set between Join and Leave.
	SandboxKey string            `json:"sandbox_key,omitempty"`
	Ports      []api.PortRequest `json:"ports,omitempty"`
}

func newState() state {
	return state{Networks: map[string]string{}, Endpoints: map[string]endpoint{}}
}

// loadState reads path; a missing file is an empty state.
func loadState(path string) (state, error) {
	st := newState()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read docker plugin state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return newState(), fmt.Errorf("decode docker plugin state %s: %w", path, err)
	}
	if st.Networks == nil {
		st.Networks = map[string]string{}
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]endpoint{}
	}
	return st, nil
}

// save writes st to path atomically.
func (st state) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode docker plugin state: %w", err)
	}
	// The agent makes state_dir at its first flush, which may come after
	// Docker's first call.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("make state dir: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write docker plugin state: %w", err)
	}
	return nil
}
