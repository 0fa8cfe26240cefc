package config

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// TEMPORARY: a minimal loader so other packages can build against the API
// while the real position-aware decoder and validation are written. Replace
// wholesale; keep the exported signatures.

// Load reads, parses, defaults and validates the config file at path. On
// failure the error is an ErrorList naming every problem.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses, defaults and validates data read from file (used in messages).
func Parse(file string, data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.File = file
	c.SetDefaults()
	return &c, nil
}

// SetDefaults fills every field left empty with its documented default.
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
		if n.Driver == DriverOverlay {
			if n.VNI == 0 {
				n.VNI = DefaultVNI(n.Name)
			}
			if n.VXLANPort == 0 {
				n.VXLANPort = DefaultVXLANPort
			}
		}
		if n.MTU == 0 && n.Driver == DriverBridge {
			n.MTU = DefaultBridgeMTU
		}
	}
}
