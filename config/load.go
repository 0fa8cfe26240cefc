package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Load reads, parses, defaults and validates the config file at path. On
// failure the error is an ErrorList naming every problem; a file that cannot
// be read gives a list of one that wraps the fs error (errors.Is works).
func Load(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, ErrorList{{File: path, Msg: "cannot read: " + msg, err: err}}
	}
	return Parse(path, data)
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("is a directory")}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}

// Parse parses, defaults and validates data read from file. file names the
// config in messages, and relative paths in it (state_dir, api.socket,
// cluster.secret_file) are taken relative to file's directory. On failure
// the Config is nil and the error an ErrorList with every problem, sorted
// by position.
func Parse(file string, data []byte) (*Config, error) {
	c, errs := parse(file, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// parse is Parse that also returns the config when it has errors.
func parse(file string, data []byte) (*Config, ErrorList) {
	c := &Config{}
	pos, errs := decodeYAML(file, data, c)
	c.File = file
	c.pos = pos
	if pos.broken("") {
		errs.Sort()
		return c, errs
	}
	c.resolvePaths(filepath.Dir(file))
	v := &validator{file: file, pos: pos}
	v.explicitZeros(c)
	c.SetDefaults()
	v.config(c)
	errs = dedup(append(errs, v.errs...))
	errs.Sort()
	return c, errs
}

// resolvePaths makes relative paths relative to dir (the config file's
// directory), as a compose file does.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{&c.StateDir, &c.API.Socket, &c.Cluster.SecretFile, &c.Docker.PluginSocket, &c.Docker.EngineSocket} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// dedup drops repeated errors (an anchor merged twice reports its problems
// once).
func dedup(l ErrorList) ErrorList {
	seen := map[Error]bool{}
	out := l[:0]
	for _, e := range l {
		k := Error{File: e.File, Line: e.Line, Col: e.Col, Path: e.Path, Msg: e.Msg}
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// SetDefaults fills every field left empty with its documented default:
//
//   - state_dir DefaultStateDir, api.socket DefaultSocket
//   - cluster.bind_port DefaultBindPort, cluster.reap_after DefaultReapAfter
//   - a network's driver DefaultDriver (bridge); its gateway the first
//     address of its subnet; its bridge BridgeName() (bridge and overlay
//     networks); mtu DefaultBridgeMTU for bridge networks (overlays derive
//     theirs from the underlay, macvlan/ipvlan from the parent, so it stays
//     0 there); for overlays vni DefaultVNI(name) and vxlan_port
//     DefaultVXLANPort
//   - a container without networks and mode gets mode "none"; netns and
//     hostname default to its name (not for mode container:X, which shares
//     the other container's, nor netns for mode host)
//
// It is idempotent and never overwrites a value that is set.
func (c *Config) SetDefaults() {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.API.Socket == "" {
		c.API.Socket = DefaultSocket
	}
	if c.Cluster.BindPort == 0 {
		c.Cluster.BindPort = DefaultBindPort
	}
	if c.Cluster.ReapAfter == 0 {
		c.Cluster.ReapAfter = Duration(DefaultReapAfter)
	}
	for i := range c.Networks {
		n := &c.Networks[i]
		if n.Driver == "" {
			n.Driver = DefaultDriver
		}
		if !n.Gateway.IsValid() && n.Subnet.IsValid() {
			n.Gateway = n.Subnet.Masked().Addr().Next()
		}
		if !n.Gateway6.IsValid() && n.Subnet6.IsValid() {
			n.Gateway6 = n.Subnet6.Masked().Addr().Next()
		}
		switch n.Driver {
		case DriverOverlay:
			if n.VNI == 0 {
				n.VNI = DefaultVNI(n.Name)
			}
			if n.VXLANPort == 0 {
				n.VXLANPort = DefaultVXLANPort
			}
		case DriverBridge:
			if n.MTU == 0 {
				n.MTU = DefaultBridgeMTU
			}
		}
		if (n.Driver == DriverBridge || n.Driver == DriverOverlay) && n.Bridge == "" && n.Name != "" {
			n.Bridge = n.BridgeName()
		}
	}
	for i := range c.Containers {
		ct := &c.Containers[i]
		if ct.Mode == "" && len(ct.Networks) == 0 {
			ct.Mode = ModeNone
		}
		if _, joins := ct.JoinsContainer(); joins || ct.Name == "" {
			continue
		}
		if ct.Netns == "" && ct.Mode != ModeHost {
			ct.Netns = ct.Name
		}
		if ct.Hostname == "" {
			ct.Hostname = ct.Name
		}
	}
}

// Validate checks c as Load does, for a config built or changed in code;
// apply SetDefaults first. It reads SecretFile and fills Cluster.Keys. The
// error is an ErrorList (with positions when c came from Load), or nil.
func (c *Config) Validate() error {
	v := &validator{file: c.File, pos: c.pos}
	v.config(c)
	v.errs.Sort()
	return v.errs.Err()
}

// ValidateContainer checks a container to be added at run time (API "run")
// to cfg, an already valid config: the container by itself, that its
// networks and mode:container:X target exist, its static IPs lie in their
// subnets and are free, its name and netns are not taken and its host ports
// clash with no other container's nor with the agent's own. The error is an
// ErrorList whose paths are relative to the container ("publish[0]") and
// carry no file position, or nil.
func ValidateContainer(cfg *Config, c *Container) error {
	v := &validator{}
	env := newNetEnv(cfg, nil)
	v.container(env, c, "")
	v.mode(cfg, c, "", true)
	reg := newRegistry(cfg, true)
	for i := range cfg.Containers {
		(*validator)(nil).claim(reg, &cfg.Containers[i], "")
	}
	v.claim(reg, c, "")
	return v.errs.Err()
}
