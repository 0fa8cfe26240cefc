package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time:
//
//	go build -ldflags "-X main.version=v0.1.0 -X main.commit=$(git rev-parse --short HEAD)" ./cmd/vxmesh
var (
	version = "dev"
	commit  = ""
)

func init() {
	register(&command{
		name:  "version",
		short: "print the version and commit",
		run: func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			fmt.Fprintf(e.stdout, "vxmesh %s (commit %s, %s)\n", version, buildCommit(), runtime.Version())
			return nil
		},
	})
}

// buildCommit is the -X commit, else the VCS revision Go stamped, else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			return rev + dirty
		}
	}
	return "unknown"
}
