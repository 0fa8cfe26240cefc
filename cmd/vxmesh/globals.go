package main

import "strings"

// Global flags (CONTRACT.md): --socket, --json and --help are accepted
// before the subcommand as well as after it. The std flag package parses
// per command, so hoistGlobals moves the leading ones behind the command's
// name, where that command's own FlagSet parses them:
//
//	vxmesh --socket X run web1   ==   vxmesh run --socket X web1
//
// A command that does not take one of them reports it like any unknown
// flag (exit 2).

// globalFlag is a flag accepted before the subcommand.
type globalFlag struct {
	name  string
	value bool // takes a value (--socket PATH)
}

var globalFlags = []globalFlag{{name: "socket", value: true}, {name: "json"}, {name: "help"}, {name: "h"}}

// splitGlobal reports whether a is a global flag and whether the next
// argument is its value.
func splitGlobal(a string) (ok, takesNext bool) {
	if len(a) < 2 || a[0] != '-' {
		return false, false
	}
	name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	name, _, hasValue := strings.Cut(name, "=")
	for _, g := range globalFlags {
		if g.name == name {
			return true, g.value && !hasValue
		}
	}
	return false, false
}

// hoistGlobals rewrites args so the global flags given before the command
// name follow it. With no command after them the top-level usage follows
// (exit 0 with --help, else 2). "--help COMMAND" becomes
// "COMMAND --help".
func hoistGlobals(args []string) []string {
	var globals []string
	i := 0
	for i < len(args) {
		ok, next := splitGlobal(args[i])
		if !ok {
			break
		}
		globals = append(globals, args[i])
		if next && i+1 < len(args) {
			i++
			globals = append(globals, args[i])
		}
		i++
	}
	if len(globals) == 0 {
		return args
	}
	if i == len(args) { // flags but no command: the top-level usage
		for _, g := range globals {
			if g == "--help" || g == "-help" || g == "-h" || g == "--h" {
				return []string{"--help"}
			}
		}
		return nil
	}
	rest := args[i:]
	if rest[0] == "help" {
		rest = rest[1:]
		globals = append(globals, "--help")
		if len(rest) == 0 {
			return []string{"--help"}
		}
	}
	cmd, tail := lookup(rest)
	if cmd == nil {
		return rest
	}
	nameLen := len(rest) - len(tail)
	out := append([]string{}, rest[:nameLen]...)
	out = append(out, globals...)
	return append(out, tail...)
}
