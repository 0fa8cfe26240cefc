package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vxmesh/vxmesh/config"
)

// Reload reads the config file again. A config that fails validation is
// refused whole: each error is logged with its file, line and field, and
// the running state stays. Fields that cannot change while running
// (state_dir, api.socket) keep their old values, with a warning.
func (a *Agent) Reload() error {
	path := a.opts.ConfigPath
	if path == "" {
		return errors.New("reload: the agent has no config file")
	}
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range config.AsErrorList(err) {
			a.log.Error("config rejected; keeping the running state", "error", e.Error())
		}
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg.StateDir != a.cfg.StateDir {
		a.log.Warn("state_dir cannot change while running; restart the agent", "old", a.cfg.StateDir, "new", cfg.StateDir)
		cfg.StateDir = a.cfg.StateDir
	}
	if cfg.API.Socket != a.cfg.API.Socket {
		a.log.Warn("api.socket cannot change while running; restart the agent", "old", a.cfg.API.Socket, "new", cfg.API.Socket)
		cfg.API.Socket = a.cfg.API.Socket
	}
	a.ovl.Reload(a.cfg, cfg)
	a.cfg = cfg
	a.bump()
	a.log.Info("config reloaded", "file", path, "networks", len(cfg.Networks), "containers", len(cfg.Containers))
	return nil
}

// fingerprint identifies a config file's version: mtime, size and content
// hash (the hash catches a rewrite within the mtime granularity).
func fingerprint(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	f, err := os.Open(path)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, io.LimitReader(f, config.MaxFileSize+1))
	return fmt.Sprintf("%d/%d/%x", st.ModTime().UnixNano(), st.Size(), h.Sum(nil))
}

// watchConfig reloads the config when the file changes (polled: no
// fsnotify dependency, and it survives editors that replace the file).
func (a *Agent) watchConfig(ctx context.Context) {
	last := fingerprint(a.opts.ConfigPath)
	t := time.NewTicker(a.opts.ConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := fingerprint(a.opts.ConfigPath)
		if fp == last {
			continue
		}
		last = fp
		a.log.Info("config file changed", "file", a.opts.ConfigPath)
		a.Reload()
	}
}
