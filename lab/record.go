package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vxmesh/vxmesh/internal/atomicfile"
)

// Record is a lab's lab.json: its plan and its processes.
type Record struct {
	Plan
	// Created is when `lab up` first built it.
	Created time.Time `json:"created"`
	// Binary is the vxmesh binary its processes run.
	Binary string `json:"binary"`
	// Procs are its background processes (agents, DNS server, TCP
	// server), the latest start of each.
	Procs []Proc `json:"processes"`
}

// ErrNoLab means the lab has no lab.json.
var ErrNoLab = errors.New("no such lab")

// LoadRecord reads the lab.json of the named lab under root.
func LoadRecord(root, name string) (*Record, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if root == "" {
		root = DefaultRoot
	}
	file := filepath.Join(root, name, "lab.json")
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %q: %w (no %s)", name, ErrNoLab, file)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if r.Name != name {
		return nil, fmt.Errorf("read %s: it describes lab %q", file, r.Name)
	}
	return &r, nil
}

// Save writes lab.json atomically.
func (r *Record) Save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(r.RecordFile(), append(b, '\n'))
}

// Proc returns the recorded process of role for of, or nil.
func (r *Record) Proc(role, of string) *Proc {
	for i := range r.Procs {
		if r.Procs[i].Role == role && r.Procs[i].Of == of {
			return &r.Procs[i]
		}
	}
	return nil
}

// setProc records p, replacing an older process of its role and target.
func (r *Record) setProc(p Proc) {
	if old := r.Proc(p.Role, p.Of); old != nil {
		*old = p
		return
	}
	r.Procs = append(r.Procs, p)
}

// CheckResults is checks.json.
type CheckResults struct {
	At     time.Time `json:"at"`
	Checks []Check   `json:"checks"`
}

// SaveChecks writes the results of a round of checks to checks.json.
func (p *Plan) SaveChecks(checks []Check) error {
	b, err := json.MarshalIndent(CheckResults{At: time.Now().UTC(), Checks: checks}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(p.ChecksFile(), append(b, '\n'))
}

// LoadChecks reads checks.json; nil when there is none.
func (p *Plan) LoadChecks() (*CheckResults, error) {
	b, err := os.ReadFile(p.ChecksFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cr CheckResults
	if err := json.Unmarshal(b, &cr); err != nil {
		return nil, fmt.Errorf("read %s: %w", p.ChecksFile(), err)
	}
	return &cr, nil
}

// writeAtomic writes a lab file (config, record, checks) so readers never
// see half of it.
func writeAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o644)
}
