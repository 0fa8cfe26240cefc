package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestAgentLogFormat(t *testing.T) {
	for _, c := range []struct {
		format string
		level  slog.Level
		check  func(string) bool
	}{
		{"json", slog.LevelInfo, func(s string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(s), &m) == nil && m["msg"] == "added veth" && m["container"] == "web1" && m["level"] == "INFO"
		}},
		{"text", slog.LevelInfo, func(s string) bool {
			return strings.Contains(s, `level=INFO msg="added veth" container=web1`)
		}},
	} {
		var buf bytes.Buffer
		log := slog.New(logHandler(&buf, c.format, c.level))
		log.Debug("hidden")
		log.Info("added veth", "container", "web1")
		if strings.Count(buf.String(), "\n") != 1 || !c.check(strings.TrimSpace(buf.String())) {
			t.Errorf("%s: %q", c.format, buf.String())
		}
	}
	for _, args := range [][]string{
		{"agent", "--config", "x.yaml", "--log-format", "xml"},
		{"agent", "--config", "x.yaml", "--log-level", "loud"},
	} {
		if code, _, errOut := runCLI(t, "", args...); code != 2 || !strings.Contains(errOut, "want") {
			t.Errorf("%v: exit %d %q, want 2", args, code, errOut)
		}
	}
}
