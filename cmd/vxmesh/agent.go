package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vxmesh/vxmesh/agent"
	"github.com/vxmesh/vxmesh/config"
)

func init() {
	register(&command{
		name:  "agent",
		short: "run the agent (the daemon) in the foreground",
		long: `Runs the agent for this host: reconciles kernel state to the config (and
the run-time containers in its state dir), serves the API socket, reloads
the config on SIGHUP and when the file changes. A config that fails
validation is refused whole, at start (exit 1) and on reload (logged with
file, line and field; the running state stays).

SIGTERM and SIGINT stop the agent WITHOUT tearing anything down, so a
restarted agent adopts its bridges, veths and namespaces and no traffic is
lost. With --cleanup-on-exit it removes everything it created before
exiting: links, namespaces it created, name files, iptables chains, and
the sysctls it changed.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("config", "", "host config `FILE` (required)")
			fs.Bool("cleanup-on-exit", false, "remove everything vxmesh created when stopping")
			fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
			fs.String("log-format", "text", "log `FORMAT`: text (key=value) or json (one object a line)")
		},
		run: runAgent,
	})
}

func runAgent(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments (the config goes in --config)")
	}
	file := cliString(e.fs, "config")
	if file == "" {
		return usagef("--config FILE is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cliString(e.fs, "log-level"))); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", cliString(e.fs, "log-level"))
	}
	format := cliString(e.fs, "log-format")
	if format != "text" && format != "json" {
		return usagef("--log-format %q: want text or json", format)
	}
	cfg, err := config.Load(file)
	if err != nil {
		lines := []string{}
		for _, fe := range config.AsErrorList(err) {
			lines = append(lines, fe.Error())
		}
		return exitCodeError{code: exitError, msg: strings.Join(lines, "\n")}
	}
	log := slog.New(logHandler(e.stderr, format, level))
	slog.SetDefault(log) // libraries that log globally land in the agent's log too
	a, err := agent.New(cfg, agent.Options{Logger: log, ConfigPath: file, CleanupOnExit: cliBool(e.fs, "cleanup-on-exit")})
	if err != nil {
		return err
	}
	defer a.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading config", "file", file)
				a.Reload()
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		return fmt.Errorf("%w", err)
	}
	return nil
}

// logHandler is the agent's slog handler: logfmt-style text (journald and
// humans) or one JSON object per line (log shippers).
func logHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
