// Command vxmesh-cni is vxmesh's CNI plugin: container runtimes (podman,
// containerd, nerdctl, Kubernetes, Nomad) run it to put a container on a
// vxmesh network. It keeps no state of its own: every command becomes one
// request to the agent on its unix socket (see agent/api/attach.go), so the
// agent stays the one owner of addresses, veths, DNS and published ports.
//
// Network config (CONTRACT.md, "The CNI plugin"):
//
//	{"cniVersion": "1.0.0", "name": "vxmesh-mesh", "type": "vxmesh-cni",
//	 "network": "mesh", "socket": "/run/vxmesh/vxmesh.sock"}
//
// plus two optional fields: "timeout" (a Go duration, default 30s) bounds
// each request to the agent, so a hung agent is a CNI error, never a hung
// runtime; "dns_search" adds search domains to the result's dns.
//
// The container's DNS name is K8S_POD_NAME from CNI_ARGS (podman passes its
// container name there), else NERDCTL_CNI_DHCP_HOSTNAME (nerdctl's
// --hostname), else the container ID (its first 12 characters
// when the ID is longer than a DNS label). The runtime capabilities
// portMappings, ips, mac and aliases are honoured.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// version and commit are set at build time:
//
//	go build -ldflags "-X main.buildVersion=v0.1.0 -X main.commit=$(git rev-parse --short HEAD)" ./cmd/vxmesh-cni
var (
	buildVersion = "dev"
	commit       = "unknown"
)

// specVersions are the CNI spec versions the plugin speaks.
var specVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

func main() {
	p := &plugin{stdout: os.Stdout}
	about := fmt.Sprintf("vxmesh-cni %s (commit %s, %s): attaches containers to vxmesh networks through the agent", buildVersion, commit, runtime.Version())
	// PluginMainFuncs prints an error as the spec's error JSON and exits 1.
	skel.PluginMainFuncs(p.funcs(), version.PluginSupports(specVersions...), about)
}
