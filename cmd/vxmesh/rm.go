package main

import "fmt"

func init() {
	register(&command{
		name:  "rm",
		args:  "NAME",
		short: "detach a container attached with 'vxmesh run'",
		long: `Detaches run-time container NAME: its interfaces, addresses, name files,
and its namespace if vxmesh created it. Containers of the config file are
removed by editing the file.`,
		flags: cliSocketFlag,
		run: func(e *env, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one container NAME")
			}
			ctx, cancel := cliCtx()
			defer cancel()
			if err := cliClient(e.fs).Remove(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, args[0])
			return nil
		},
	})
}
