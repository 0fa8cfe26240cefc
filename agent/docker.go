package agent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vxmesh/vxmesh/agent/dockerbackend"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/dockerplugin"
)

// serveDocker serves the Docker plugin when docker.plugin_socket is set;
// the returned stop ends it and removes the socket. The plugin is an
// adapter over the agent's attach path (pass.Attacher), so it keeps no
// state of the agent's; changing the socket takes an agent restart.
func (a *Agent) serveDocker(ctx context.Context) (stop func(), err error) {
	path := a.cfg.Docker.PluginSocket
	if path == "" {
		return func() {}, nil
	}
	att, ok := any(a).(pass.Attacher)
	if !ok {
		return nil, errors.New("serve docker plugin: this agent has no attach path")
	}
	b, err := dockerbackend.New(att, a.cfg.StateDir, dockerbackend.NewEngineClient(a.cfg.Docker.Engine()), a.log)
	if err != nil {
		return nil, fmt.Errorf("serve docker plugin: %w", err)
	}
	l, err := dockerplugin.Listen(path)
	if err != nil {
		return nil, err
	}
	// Served until stop, not until ctx ends: the loop's last pass may
	// still run after a stop signal.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := dockerplugin.Serve(sctx, l, dockerplugin.New(b, a.log)); err != nil {
			a.log.Error("docker plugin stopped", "err", err)
		}
	}()
	a.log.Info("docker plugin serving", "socket", path, "driver", a.cfg.Docker.DriverName(), "engine", a.cfg.Docker.Engine())
	return func() {
		cancel()
		<-done
		os.Remove(path)
	}, nil
}
