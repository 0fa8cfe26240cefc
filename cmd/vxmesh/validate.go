package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/vxmesh/vxmesh/config"
)

func init() {
	register(&command{
		name:  "validate",
		args:  "FILE...",
		short: "check host configs without touching the kernel",
		long: `Checks each FILE (YAML host config; "-" reads standard input) on its own:
syntax, unknown fields, types, addresses, subnets, names, ports and keys.
Every problem is printed on stderr as

  FILE:LINE:COL: path.to.field: message

and "FILE: ok" is printed on stdout for each file without problems. With
several files, they are then checked as the hosts of one cluster: unique
host names and addresses, the same subnet, VNI and port for an overlay on
every host, ip_range blocks that do not overlap (--no-cluster skips this,
for files of different clusters).

Exit status: 0 when all files are valid, 1 when any error was found, 2 on
bad usage.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("no-cluster", false, "check each file on its own only, not the files as one cluster")
		},
		run: runValidate,
	})
}

func runValidate(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("no config files given")
	}
	failed := false
	var valid []*config.Config
	for _, file := range args {
		var (
			cfg *config.Config
			err error
		)
		if file == "-" {
			var data []byte
			if data, err = io.ReadAll(io.LimitReader(e.stdin, config.MaxFileSize+1)); err == nil {
				cfg, err = config.Parse("<stdin>", data)
			}
			file = "<stdin>"
		} else {
			cfg, err = config.Load(file)
		}
		if err != nil {
			failed = true
			for _, fe := range config.AsErrorList(err) {
				if fe.File == "" {
					fe.File = file
				}
				fmt.Fprintln(e.stderr, fe.Error())
			}
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", file)
		valid = append(valid, cfg)
	}
	if len(valid) > 1 && !flagBool(e.fs, "no-cluster") {
		for _, fe := range config.ValidateCluster(valid) {
			failed = true
			fmt.Fprintln(e.stderr, fe.Error())
		}
	}
	if failed {
		return exitCodeError{code: exitError}
	}
	return nil
}

// flagBool reads a bool flag declared in command.flags.
func flagBool(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Value.String() == "true"
}
