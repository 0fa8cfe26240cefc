// Command vxmesh is the vxmesh agent and its command-line client.
//
// This file holds only the dispatch: each subcommand lives in a file of its
// own and registers itself in init with register.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes, as CONTRACT.md fixes them.
const (
	exitOK    = 0
	exitError = 1 // an error the user can fix: bad config, unknown container
	exitUsage = 2 // bad usage: unknown command or flag
)

// command is one subcommand.
type command struct {
	name  string // "lab up" for nested commands
	args  string // e.g. "FILE..."
	short string // one line for the command list
	long  string // text for --help, after the usage line
	// flags declares the command's flags on fs; nil means none.
	flags func(fs *flag.FlagSet)
	// run executes the command with the positional arguments left after flag
	// parsing. Return usageError for bad usage, any other error for exit 1.
	run func(env *env, args []string) error
	// rawArgs passes every argument to run unparsed (for "exec -- CMD").
	rawArgs bool
}

// env is what a command may use for I/O, so tests can capture it.
type env struct {
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	fs     *flag.FlagSet
}

// usageError marks bad usage (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitCodeError lets a command choose its exit code with a message (or none).
type exitCodeError struct {
	code int
	msg  string
}

func (e exitCodeError) Error() string { return e.msg }

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("duplicate command " + c.name)
	}
	commands[c.name] = c
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	args = hoistGlobals(args) // globals.go: "vxmesh --socket X run" works too
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run(append(args[1:], "--help"), stdin, stdout, stderr)
		}
		printTopUsage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, rest := lookup(args)
	if cmd == nil {
		fmt.Fprintf(stderr, "vxmesh: unknown command %q (see 'vxmesh --help')\n", strings.Join(args[:min(len(args), 2)], " "))
		return exitUsage
	}
	fs := flag.NewFlagSet("vxmesh "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	e := &env{stdout: stdout, stderr: stderr, stdin: stdin, fs: fs}
	if cmd.rawArgs {
		for _, a := range rest {
			if a == "--" {
				break
			}
			if a == "-h" || a == "--help" {
				printUsage(stdout, cmd, fs)
				return exitOK
			}
		}
	} else {
		if err := fs.Parse(interleave(fs, rest)); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(stdout, cmd, fs)
				return exitOK
			}
			fmt.Fprintf(stderr, "vxmesh %s: %v\n", cmd.name, err)
			fmt.Fprintf(stderr, "usage: vxmesh %s %s (see 'vxmesh %s --help')\n", cmd.name, usageArgs(cmd, fs), cmd.name)
			return exitUsage
		}
		rest = fs.Args()
	}
	err := cmd.run(e, rest)
	var ue usageError
	var ce exitCodeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "vxmesh %s: %s\n", cmd.name, ue.msg)
		fmt.Fprintf(stderr, "usage: vxmesh %s %s (see 'vxmesh %s --help')\n", cmd.name, usageArgs(cmd, fs), cmd.name)
		return exitUsage
	case errors.As(err, &ce):
		if ce.msg != "" {
			fmt.Fprintln(stderr, ce.msg)
		}
		return ce.code
	default:
		fmt.Fprintf(stderr, "vxmesh %s: %v\n", cmd.name, err)
		return exitError
	}
}

// lookup finds the longest registered command name that prefixes args
// ("lab up" before "lab").
func lookup(args []string) (*command, []string) {
	for n := min(len(args), 2); n >= 1; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

// interleave moves flags after positional arguments to the front, so
// "vxmesh port web1 --json" works like "vxmesh port --json web1". A "--"
// ends flag parsing as usual.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil && !isBoolFlag(f) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) > 0 {
		return append(append(flags, "--"), pos...)
	}
	return flags
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func usageArgs(c *command, fs *flag.FlagSet) string {
	s := ""
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		s = "[flags]"
	}
	if c.args != "" {
		if s != "" {
			s += " "
		}
		s += c.args
	}
	return s
}

func printUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: vxmesh %s %s\n\n%s\n", c.name, usageArgs(c, fs), c.short)
	if c.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(c.long, "\n"))
	}
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		l := "  " + dash + f.Name
		if name != "" {
			l += " " + name
		}
		l += "\n      " + usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			l += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		lines = append(lines, l)
	})
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nflags:\n%s\n", strings.Join(lines, "\n"))
	}
}

func printTopUsage(w io.Writer) {
	fmt.Fprintln(w, "vxmesh: container networks across Linux hosts (bridges, VXLAN overlays, gossip, DNS)")
	fmt.Fprintln(w, "\nusage: vxmesh COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].short)
	}
	fmt.Fprintln(w, "\nRun 'vxmesh COMMAND --help' for a command's flags.")
}
