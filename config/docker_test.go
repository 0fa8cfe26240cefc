package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDockerPluginSocket(t *testing.T) {
	long := "/run/" + strings.Repeat("d", 100) + "/vxmesh.sock"
	tests := []struct {
		name string
		src  string
		want string // "" for valid
	}{
		{"absent", "", ""},
		{"usual", "docker: {plugin_socket: /run/docker/plugins/vxmesh.sock}\n", ""},
		{"empty", "docker: {plugin_socket: \"\"}\n",
			`t.yaml:2:25: docker.plugin_socket: must not be empty (leave docker out to turn the plugin off)`},
		{"not .sock", "docker: {plugin_socket: /run/docker/plugins/vxmesh}\n",
			`t.yaml:2:25: docker.plugin_socket: "/run/docker/plugins/vxmesh" does not end in .sock: Docker finds plugin sockets as NAME.sock`},
		{"bad name", "docker: {plugin_socket: /run/docker/plugins/VX:mesh.sock}\n",
			`t.yaml:2:25: docker.plugin_socket: "/run/docker/plugins/VX:mesh.sock": plugin name "VX:mesh" is not a valid Docker driver name (lower-case letters, digits, '.', '_', '-')`},
		{"empty name", "docker: {plugin_socket: /run/docker/plugins/.sock}\n",
			`t.yaml:2:25: docker.plugin_socket: "/run/docker/plugins/.sock": plugin name "" is not a valid Docker driver name (lower-case letters, digits, '.', '_', '-')`},
		{"too long", "docker: {plugin_socket: " + long + "}\n",
			`t.yaml:2:25: docker.plugin_socket: "` + long + `" is 117 bytes, longer than the 107 a unix socket path allows`},
		{"api socket", "api: {socket: /run/x.sock}\ndocker: {plugin_socket: /run/x.sock}\n",
			`t.yaml:3:25: docker.plugin_socket: "/run/x.sock" is also api.socket`},
		{"unknown field", "docker: {socket: /run/x.sock}\n",
			`t.yaml:2:10: docker.socket: unknown field "socket" (known fields: engine_socket, plugin_socket)`},
		{"engine socket too long", "docker: {plugin_socket: /run/x.sock, engine_socket: " + long + "}\n",
			`t.yaml:2:53: docker.engine_socket: "` + long + `" is 117 bytes, longer than the 107 a unix socket path allows`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(hostYAML+tt.src))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDockerPluginSocketRelative(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "h1.yaml")
	cfg, err := Parse(file, []byte(hostYAML+"docker: {plugin_socket: plugins/vxmesh.sock}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "plugins/vxmesh.sock"); cfg.Docker.PluginSocket != want {
		t.Errorf("plugin_socket %q, want %q (relative to the config file)", cfg.Docker.PluginSocket, want)
	}
	if got := cfg.Docker.DriverName(); got != "vxmesh" {
		t.Errorf("driver name %q, want vxmesh", got)
	}
	if got := cfg.Docker.Engine(); got != DefaultDockerEngineSocket {
		t.Errorf("engine socket %q, want the default", got)
	}
	if got := (Docker{}).DriverName(); got != "" {
		t.Errorf("driver name of an unset socket %q, want empty", got)
	}
}
