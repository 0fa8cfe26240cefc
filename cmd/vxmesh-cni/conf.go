package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxmesh/vxmesh/agent/api"
)

// defaultTimeout bounds one request to the agent when the config does not
// say. An attach waits for the agent's reconcile pass, which takes well
// under a second on an idle host; 30 s leaves room for a loaded one and is
// still far below the runtimes' own limits (kubelet's CNI calls run for
// minutes).
const defaultTimeout = 30 * time.Second

// netConf is the network config the runtime passes on stdin.
type netConf struct {
	types.PluginConf
	// Network names a network of the agent's config.
	Network string `json:"network"`
	// Socket is the agent's API socket (default api.DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// Timeout bounds each request to the agent (a Go duration).
	Timeout string `json:"timeout,omitempty"`
	// DNSSearch are search domains added to the result's dns.
	DNSSearch []string `json:"dns_search,omitempty"`

	RuntimeConfig runtimeConfig `json:"runtimeConfig"`

	timeout time.Duration
}

// runtimeConfig holds the capability arguments vxmesh-cni honours.
type runtimeConfig struct {
	PortMappings []portMapping `json:"portMappings,omitempty"`
	// IPs are static addresses, "10.200.0.5/16" or "10.200.0.5".
	IPs []string `json:"ips,omitempty"`
	MAC string   `json:"mac,omitempty"`
	// Aliases are extra DNS names per CNI network name (podman passes the
	// short container ID).
	Aliases map[string][]string `json:"aliases,omitempty"`
}

// portMapping is one entry of the portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// parseConf decodes and checks the network config. Errors are CNI errors
// with code 6 (undecodable) or 7 (invalid config).
func parseConf(data []byte) (*netConf, error) {
	c := &netConf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
	}
	if c.Network == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, `network config lacks "network": the vxmesh network to attach to`, "")
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	c.timeout = defaultTimeout
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("timeout: %q is not a positive duration", c.Timeout), "")
		}
		c.timeout = d
	}
	return c, nil
}

// cniArgs are the CNI_ARGS keys vxmesh-cni reads.
type cniArgs struct {
	PodName string
	// Hostname is nerdctl's NERDCTL_CNI_DHCP_HOSTNAME (its --hostname).
	Hostname string
	IP       string
	MAC      string
}

// parseArgs reads CNI_ARGS ("K=V;K=V"). Unknown keys are ignored whether
// or not IgnoreUnknown is set: runtimes pass keys meant for other plugins
// of a chain. A pair without "=" is an error.
func parseArgs(s string) (cniArgs, error) {
	var a cniArgs
	if s == "" {
		return a, nil
	}
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return a, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", pair), "")
		}
		switch k {
		case "K8S_POD_NAME":
			a.PodName = v
		case "NERDCTL_CNI_DHCP_HOSTNAME":
			a.Hostname = v
		case "IP":
			a.IP = v
		case "MAC":
			a.MAC = v
		}
	}
	return a, nil
}

// containerName picks the container's DNS name: the pod (or podman
// container) name, else the hostname nerdctl passes, else the container
// ID, cut to 12 characters (a Docker-style short ID) when it is longer
// than a DNS label.
func containerName(a cniArgs, containerID string) string {
	if a.PodName != "" {
		return a.PodName
	}
	if a.Hostname != "" {
		return a.Hostname
	}
	if len(containerID) > 63 {
		return containerID[:12]
	}
	return containerID
}

// attachRequest turns a CNI call into the agent's request.
func attachRequest(c *netConf, containerID, netns, ifname string, a cniArgs) (api.AttachRequest, error) {
	req := api.AttachRequest{
		Runtime:   api.RuntimeCNI,
		ID:        containerID,
		Name:      containerName(a, containerID),
		Network:   c.Network,
		Netns:     netns,
		IfName:    ifname,
		Placement: api.PlacementNetns,
		MAC:       c.RuntimeConfig.MAC,
	}
	if req.MAC == "" {
		req.MAC = a.MAC
	}
	if req.MAC != "" {
		if _, err := net.ParseMAC(req.MAC); err != nil {
			return req, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("mac: %q is not a MAC address", req.MAC), "")
		}
	}
	ip, err := staticIP(c.RuntimeConfig.IPs, a.IP)
	if err != nil {
		return req, err
	}
	req.IP = ip
	for _, al := range c.RuntimeConfig.Aliases[c.Name] {
		if al != req.Name {
			req.Aliases = append(req.Aliases, al)
		}
	}
	for i, pm := range c.RuntimeConfig.PortMappings {
		p, err := portRequest(pm)
		if err != nil {
			return req, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("runtimeConfig.portMappings[%d]: %v", i, err), "")
		}
		req.Ports = append(req.Ports, p)
	}
	if err := req.Validate(); err != nil {
		return req, types.NewError(types.ErrInvalidNetworkConfig, "attach request: "+err.Error(), "")
	}
	return req, nil
}

// staticIP picks the one static IPv4 or IPv6 address asked for through the
// ips capability or CNI_ARGS IP, without its prefix ("" for none).
func staticIP(ips []string, argIP string) (string, error) {
	if len(ips) > 1 {
		return "", types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("runtimeConfig.ips: %d addresses; vxmesh gives one per network", len(ips)), "")
	}
	s := argIP
	if len(ips) == 1 {
		s = ips[0]
	}
	if s == "" {
		return "", nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("ip: %q is not an IP address", s), "")
	}
	return a.String(), nil
}

// portRequest converts one portMappings entry.
func portRequest(pm portMapping) (api.PortRequest, error) {
	proto := strings.ToLower(pm.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
		return api.PortRequest{}, fmt.Errorf("containerPort %d out of range", pm.ContainerPort)
	}
	if pm.HostPort < 0 || pm.HostPort > 65535 {
		return api.PortRequest{}, fmt.Errorf("hostPort %d out of range", pm.HostPort)
	}
	return api.PortRequest{
		Proto:         proto,
		HostIP:        pm.HostIP,
		HostPort:      uint16(pm.HostPort),
		ContainerPort: uint16(pm.ContainerPort),
	}, nil
}
