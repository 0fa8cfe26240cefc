package config

import (
	"path/filepath"
	"regexp"
	"strings"
)

// Docker configures the Docker plugin: the agent serves Docker's remote
// network driver and remote IPAM driver on one unix socket.
type Docker struct {
	// PluginSocket is the plugin's unix socket; empty (the default) means
	// off. Docker finds plugins as NAME.sock under /run/docker/plugins, so
	// the usual value is /run/docker/plugins/vxmesh.sock, and the driver's
	// name (`docker network create -d NAME --ipam-driver NAME`) is the base
	// name without ".sock". A relative path is relative to the config
	// file's directory; at most 107 bytes.
	PluginSocket string `yaml:"plugin_socket"`
	// EngineSocket is the Docker engine's API socket, which the plugin
	// asks for the names and IDs of the containers it attaches (Docker's
	// plugin protocol never carries them). Default
	// DefaultDockerEngineSocket; relative like PluginSocket. When the
	// engine does not answer, a container's DNS name is "docker-" and its
	// endpoint ID's first 12 hex digits.
	EngineSocket string `yaml:"engine_socket"`
}

// DefaultDockerEngineSocket is where dockerd serves its API by default.
const DefaultDockerEngineSocket = "/run/docker.sock"

// Engine is the engine socket in force: EngineSocket or the default.
func (d Docker) Engine() string {
	if d.EngineSocket == "" {
		return DefaultDockerEngineSocket
	}
	return d.EngineSocket
}

// DockerPluginSuffix ends every plugin socket's name.
const DockerPluginSuffix = ".sock"

// dockerPluginName is what Docker accepts as a driver name (its plugin
// names are lower-case path components; a ':' or '/' would be read as a
// tag or a repository).
var dockerPluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// DriverName is the Docker driver name the socket makes ("vxmesh" for
// /run/docker/plugins/vxmesh.sock), or "" when the plugin is off.
func (d Docker) DriverName() string {
	if d.PluginSocket == "" {
		return ""
	}
	return strings.TrimSuffix(filepath.Base(d.PluginSocket), DockerPluginSuffix)
}

// docker checks the docker section.
func (v *validator) docker(c *Config) {
	if e := c.Docker.EngineSocket; e != "" {
		if strings.ContainsRune(e, 0) {
			v.errorf("docker.engine_socket", "%q contains a NUL byte", e)
		} else if len(e) > maxSocketPath {
			v.errorf("docker.engine_socket", "%q is %d bytes, longer than the %d a unix socket path allows", e, len(e), maxSocketPath)
		}
	}
	s := c.Docker.PluginSocket
	const path = "docker.plugin_socket"
	if s == "" {
		if v.pos.given(path) {
			v.errorf(path, "must not be empty (leave docker out to turn the plugin off)")
		}
		return
	}
	switch {
	case strings.ContainsRune(s, 0):
		v.errorf(path, "%q contains a NUL byte", s)
	case !strings.HasSuffix(s, DockerPluginSuffix):
		v.errorf(path, "%q does not end in %s: Docker finds plugin sockets as NAME%s", s, DockerPluginSuffix, DockerPluginSuffix)
	case !dockerPluginName.MatchString(c.Docker.DriverName()):
		v.errorf(path, "%q: plugin name %q is not a valid Docker driver name (lower-case letters, digits, '.', '_', '-')", s, c.Docker.DriverName())
	case len(s) > maxSocketPath:
		v.errorf(path, "%q is %d bytes, longer than the %d a unix socket path allows", s, len(s), maxSocketPath)
	case s == c.API.Socket:
		v.errorf(path, "%q is also api.socket", s)
	}
}
