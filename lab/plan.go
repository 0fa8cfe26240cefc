package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// Defaults of a lab.
const (
	// DefaultName is the lab name when none is given.
	DefaultName = "lab"
	// DefaultHosts is the number of hosts when none is given.
	DefaultHosts = 3
	// MaxLabHosts bounds --hosts: every host runs an agent process.
	MaxLabHosts = 32
	// DefaultRoot holds one directory per lab.
	DefaultRoot = "/var/lib/vxmesh/lab"
	// NetnsPrefix starts every namespace of every lab: "vxl-<lab>-<host>".
	NetnsPrefix = "vxl-"
	// MaxNameLen bounds a lab name, so socket paths stay short.
	MaxNameLen = 16
)

// The example topology every lab host runs (examples/lab).
const (
	// BridgeNet is the bridge network every host has; web1 is on it.
	BridgeNet    = "web"
	BridgeSubnet = "172.26.0.0/16"
	// OverlayNet is the overlay network that spans every host.
	OverlayNet    = "mesh"
	OverlaySubnet = "10.200.0.0/16"
	// OverlaySubnet6 makes the overlay dual-stack (issue 18).
	OverlaySubnet6 = "fd00:200::/64"
	OverlayVNI     = 4200
	VXLANPort      = 4789
	BindPort       = config.DefaultBindPort
	// ServicePort is where the lab's TCP server listens inside the first
	// container; PublishedPort is where its host publishes it.
	ServicePort   = 80
	PublishedPort = 8080
	// UpstreamZone is the zone the fake upstream DNS server answers for:
	// every name in it resolves to topo.PublicAddr (198.19.0.1).
	UpstreamZone = "example.test"
	// UpstreamName is the name the forwarding check resolves.
	UpstreamName = "www." + UpstreamZone
)

// containerNames are the lab's containers in the order they are placed
// round-robin on the hosts; a lab has max(hosts, 3) of them, so every host
// has at least one. Beyond the listed ones, more are "webN".
var containerNames = []string{"web1", "web2", "db"}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// ValidateName checks a lab name: lower-case letters and digits, starting
// with a letter, at most MaxNameLen bytes. Without '-' in it, the prefixes
// "vxl-<lab>-" and "<lab>-" of its namespaces never match another lab's.
func ValidateName(name string) error {
	if len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: want 1..%d lower-case letters and digits, starting with a letter", name, MaxNameLen)
	}
	return nil
}

// Plan is a lab as a value: every name, address, file and container it
// has, computed from its name, host count and root directory alone, so the
// same inputs always give the same lab (and `lab down` can find a lab's
// parts from its name after a crash).
type Plan struct {
	Name string `json:"name"`
	// Dir is the lab directory: configs, logs, state dirs, lab.json.
	Dir string `json:"dir"`
	// Underlay is the namespace of the underlay bridge.
	Underlay string       `json:"underlay_netns"`
	Prefix   netip.Prefix `json:"underlay_prefix"`
	// Internet is the "internet" namespace: the hosts' default route, and
	// the fake upstream DNS server on topo.PublicAddr.
	Internet   InternetPlan    `json:"internet"`
	Hosts      []HostPlan      `json:"hosts"`
	Containers []ContainerPlan `json:"containers"`
}

// InternetPlan is the lab's internet host.
type InternetPlan struct {
	Netns   string     `json:"netns"`
	Address netip.Addr `json:"address"`
	// DNS is the fake upstream resolver every container forwards to.
	DNS netip.Addr `json:"dns"`
	// Log is the DNS server's log.
	Log string `json:"log"`
}

// HostPlan is one lab host.
type HostPlan struct {
	Name     string     `json:"name"`
	Netns    string     `json:"netns"`
	Address  netip.Addr `json:"address"`
	Config   string     `json:"config"`
	StateDir string     `json:"state_dir"`
	Socket   string     `json:"socket"`
	Log      string     `json:"log"`
}

// ContainerPlan is one lab container.
type ContainerPlan struct {
	Name     string   `json:"name"`
	Host     string   `json:"host"`
	Netns    string   `json:"netns"`
	Networks []string `json:"networks"`
	Aliases  []string `json:"aliases,omitempty"`
	Publish  []string `json:"publish,omitempty"`
	// Serves is the port of the lab's TCP server in it (0 for none).
	Serves int `json:"serves,omitempty"`
	// ServerLog is that server's log.
	ServerLog string `json:"server_log,omitempty"`
}

// NetnsPrefixOf is the prefix of every host, underlay and internet
// namespace of the named lab.
func NetnsPrefixOf(name string) string { return NetnsPrefix + name + "-" }

// ContainerNetnsPrefixOf is the prefix of the named lab's container
// namespaces.
func ContainerNetnsPrefixOf(name string) string { return name + "-" }

// NewPlan computes the lab called name with hosts hosts under root.
func NewPlan(name string, hosts int, root string) (*Plan, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if hosts < 1 || hosts > MaxLabHosts {
		return nil, fmt.Errorf("%d hosts: want 1..%d", hosts, MaxLabHosts)
	}
	if root == "" {
		root = DefaultRoot
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("lab root %q: want an absolute path", root)
	}
	dir := filepath.Join(root, name)
	pfx := NetnsPrefixOf(name)
	p := &Plan{
		Name:     name,
		Dir:      dir,
		Underlay: pfx + topo.DefaultUnderlayRole,
		Prefix:   topo.UnderlayPrefix,
		Internet: InternetPlan{
			Netns:   pfx + topo.DefaultInternetRole,
			Address: topo.InternetAddr,
			DNS:     topo.PublicAddr,
			Log:     filepath.Join(dir, "dns.log"),
		},
	}
	for i := range hosts {
		h := fmt.Sprintf("h%d", i+1)
		p.Hosts = append(p.Hosts, HostPlan{
			Name:     h,
			Netns:    pfx + h,
			Address:  topo.NthAddr(topo.UnderlayPrefix.Addr(), i+1),
			Config:   filepath.Join(dir, h+".yaml"),
			StateDir: filepath.Join(dir, h),
			Socket:   filepath.Join(dir, h, "api.sock"),
			Log:      filepath.Join(dir, h+".log"),
		})
	}
	for i := range max(hosts, len(containerNames)) {
		name := fmt.Sprintf("web%d", i)
		if i < len(containerNames) {
			name = containerNames[i]
		}
		c := ContainerPlan{
			Name:     name,
			Host:     p.Hosts[i%hosts].Name,
			Netns:    ContainerNetnsPrefixOf(p.Name) + name,
			Networks: []string{OverlayNet},
		}
		switch name {
		case "web1":
			c.Networks = []string{BridgeNet, OverlayNet}
			c.Publish = []string{fmt.Sprintf("%d:%d", PublishedPort, ServicePort)}
			c.Serves = ServicePort
			c.ServerLog = filepath.Join(dir, name+"-server.log")
		case "db":
			c.Aliases = []string{"database"}
		}
		p.Containers = append(p.Containers, c)
	}
	if n := len(p.Hosts[0].Socket); n > 107 {
		return nil, fmt.Errorf("lab root %q: socket path %q is %d bytes, more than 107", root, p.Hosts[0].Socket, n)
	}
	return p, nil
}

// Host returns the named host, or nil.
func (p *Plan) Host(name string) *HostPlan {
	for i := range p.Hosts {
		if p.Hosts[i].Name == name {
			return &p.Hosts[i]
		}
	}
	return nil
}

// Container returns the named container, or nil.
func (p *Plan) Container(name string) *ContainerPlan {
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

// Namespaces returns every namespace of the lab: the underlay, the
// internet, the hosts, then the containers.
func (p *Plan) Namespaces() []string {
	out := []string{p.Underlay, p.Internet.Netns}
	for _, h := range p.Hosts {
		out = append(out, h.Netns)
	}
	for _, c := range p.Containers {
		out = append(out, c.Netns)
	}
	return out
}

// RecordFile is the lab's lab.json.
func (p *Plan) RecordFile() string { return filepath.Join(p.Dir, "lab.json") }

// ChecksFile holds the results of the lab's last checks.
func (p *Plan) ChecksFile() string { return filepath.Join(p.Dir, "checks.json") }

// Config returns host h's config file, YAML as a user would write it.
func (p *Plan) Config(h *HostPlan) []byte {
	var b bytes.Buffer
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	fmt.Fprintf(&b, "# Host %s of vxmesh lab %q (%d hosts), written by `vxmesh lab up`.\n", h.Name, p.Name, len(p.Hosts))
	fmt.Fprintf(&b, "# The agent reloads this file when it changes; `vxmesh lab status` lists it.\n")
	fmt.Fprintf(&b, "host:\n  name: %s\n  address: %s\n", h.Name, h.Address)
	fmt.Fprintf(&b, "state_dir: %s\n", q(h.StateDir))
	fmt.Fprintf(&b, "api:\n  socket: %s\n", q(h.Socket))
	var join []string
	for _, o := range p.Hosts {
		if o.Name != h.Name {
			join = append(join, o.Address.String())
		}
	}
	fmt.Fprintf(&b, "cluster:\n  bind_port: %d\n", BindPort)
	if len(join) > 0 {
		fmt.Fprintf(&b, "  join: [%s]\n", strings.Join(join, ", "))
	}
	fmt.Fprintf(&b, "\nnetworks:\n")
	fmt.Fprintf(&b, "  - name: %s                   # a bridge network: local to this host\n    driver: bridge\n    subnet: %s\n", BridgeNet, BridgeSubnet)
	fmt.Fprintf(&b, "  - name: %s                  # the overlay: one subnet across all hosts\n    driver: overlay\n    subnet: %s\n    subnet6: %q           # dual stack\n    vni: %d\n    vxlan_port: %d\n",
		OverlayNet, OverlaySubnet, OverlaySubnet6, OverlayVNI, VXLANPort)
	var mine []ContainerPlan
	for _, c := range p.Containers {
		if c.Host == h.Name {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		return b.Bytes()
	}
	fmt.Fprintf(&b, "\ncontainers:\n")
	for _, c := range mine {
		fmt.Fprintf(&b, "  - name: %s\n    netns: %s\n    networks: [%s]\n", c.Name, c.Netns, strings.Join(c.Networks, ", "))
		if len(c.Aliases) > 0 {
			fmt.Fprintf(&b, "    aliases: [%s]\n", strings.Join(c.Aliases, ", "))
		}
		if len(c.Publish) > 0 {
			var ps []string
			for _, s := range c.Publish {
				ps = append(ps, q(s))
			}
			fmt.Fprintf(&b, "    publish: [%s]\n", strings.Join(ps, ", "))
		}
		fmt.Fprintf(&b, "    dns: [%s]                # the lab's fake upstream in %s\n", p.Internet.DNS, p.Internet.Netns)
	}
	return b.Bytes()
}

// Configs returns every host's config, keyed by file, after checking each
// with config.Parse and all of them together with config.ValidateCluster.
func (p *Plan) Configs() (map[string][]byte, error) {
	out := map[string][]byte{}
	var cfgs []*config.Config
	var errs []error
	for i := range p.Hosts {
		h := &p.Hosts[i]
		data := p.Config(h)
		cfg, err := config.Parse(h.Config, data)
		if err != nil {
			errs = append(errs, fmt.Errorf("generated config of %s is invalid: %w", h.Name, err))
			continue
		}
		cfgs = append(cfgs, cfg)
		out[h.Config] = data
	}
	if len(errs) == 0 {
		if cl := config.ValidateCluster(cfgs); len(cl) > 0 {
			errs = append(errs, fmt.Errorf("generated configs disagree: %w", cl))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
