package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Shell completion: the std flag package has none, so `vxmesh completion
// bash|zsh` prints a small script generated from the registered commands
// and their FlagSets: command names, lab's subcommands, each command's
// flags, and files for the rest. The scripts share one tiny word walk:
// skip flags (and the value of a flag that takes one), the first word is
// the command, the second its subcommand when it has any.

func init() {
	register(&command{
		name:  "completion",
		args:  "bash|zsh",
		short: "print a shell completion script for bash or zsh",
		long: `Prints a completion script for the shell: commands, subcommands and each
command's flags.

  source <(vxmesh completion bash)          # bash, this shell
  vxmesh completion bash > /etc/bash_completion.d/vxmesh
  vxmesh completion zsh > "${fpath[1]}/_vxmesh"   # zsh, then compinit`,
		run: runCompletion,
	})
}

func runCompletion(e *env, args []string) error {
	if len(args) != 1 {
		return usagef("want bash or zsh")
	}
	m := completionModel()
	switch args[0] {
	case "bash":
		writeBashCompletion(e.stdout, m)
	case "zsh":
		writeZshCompletion(e.stdout, m)
	default:
		return usagef("unknown shell %q: want bash or zsh", args[0])
	}
	return nil
}

// compModel is what the scripts complete.
type compModel struct {
	top     []string            // first words: commands
	subs    map[string][]string // command -> its subcommands (lab -> up down…)
	flags   map[string][]string // "lab up" or "status" -> its flags (--x)
	valued  []string            // flags that take a value (the next word)
	globals []string            // flags accepted before the command
}

func completionModel() compModel {
	m := compModel{subs: map[string][]string{}, flags: map[string][]string{}, globals: []string{"--socket", "--json", "--help"}}
	seenTop, seenVal := map[string]bool{}, map[string]bool{"--socket": true}
	m.valued = []string{"--socket"}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		first, sub, nested := strings.Cut(n, " ")
		if !seenTop[first] {
			seenTop[first] = true
			m.top = append(m.top, first)
		}
		if nested {
			m.subs[first] = append(m.subs[first], sub)
		}
		fs := flag.NewFlagSet(n, flag.ContinueOnError)
		if c.flags != nil {
			c.flags(fs)
		}
		fl := []string{"--help"}
		fs.VisitAll(func(f *flag.Flag) {
			name := "--" + f.Name
			if len(f.Name) == 1 {
				name = "-" + f.Name // -p, -P as run's help shows them
			}
			fl = append(fl, name)
			if !isBoolFlag(f) && !seenVal[name] {
				seenVal[name] = true
				m.valued = append(m.valued, name)
			}
		})
		m.flags[n] = fl
	}
	sort.Strings(m.valued)
	return m
}

func writeBashCompletion(w io.Writer, m compModel) {
	fmt.Fprintln(w, "# bash completion for vxmesh: source <(vxmesh completion bash)")
	fmt.Fprintln(w, "_vxmesh() {")
	fmt.Fprintln(w, `	local cur=${COMP_WORDS[COMP_CWORD]} cmd= sub= i w skip=`)
	fmt.Fprintf(w, "	local valued=' %s '\n", strings.Join(m.valued, " "))
	fmt.Fprintln(w, `	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ -n $skip ]]; then skip=; continue; fi
		[[ $w == -- ]] && { COMPREPLY=($(compgen -c -- "$cur")); return; }
		if [[ $w == -* ]]; then [[ $w != *=* && $valued == *" $w "* ]] && skip=1; continue; fi
		if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
	done
	[[ -n $skip ]] && { COMPREPLY=($(compgen -f -- "$cur")); return; }
	local words=
	case "$cmd" in`)
	fmt.Fprintf(w, "	'') words='%s %s' ;;\n", strings.Join(m.top, " "), strings.Join(m.globals, " "))
	for _, top := range m.top {
		subs := m.subs[top]
		if len(subs) == 0 {
			fmt.Fprintf(w, "	%s) words='%s' ;;\n", top, strings.Join(m.flags[top], " "))
			continue
		}
		fmt.Fprintf(w, "	%s)\n		case \"$sub\" in\n", top)
		fmt.Fprintf(w, "		'') words='%s %s' ;;\n", strings.Join(subs, " "), strings.Join(m.flags[top], " "))
		for _, s := range subs {
			fmt.Fprintf(w, "		%s) words='%s' ;;\n", s, strings.Join(m.flags[top+" "+s], " "))
		}
		fmt.Fprintln(w, "		esac ;;")
	}
	fmt.Fprintln(w, `	esac
	if [[ $cur == -* || -z $cmd || ( -z $sub && $words != --* ) ]]; then
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -o default -F _vxmesh vxmesh`)
}

func writeZshCompletion(w io.Writer, m compModel) {
	fmt.Fprintln(w, "#compdef vxmesh")
	fmt.Fprintln(w, "# zsh completion for vxmesh: vxmesh completion zsh > \"${fpath[1]}/_vxmesh\"")
	fmt.Fprintln(w, "_vxmesh() {")
	fmt.Fprintln(w, `	local cmd= sub= i w skip= cur=${words[CURRENT]}`)
	fmt.Fprintf(w, "	local valued=' %s '\n", strings.Join(m.valued, " "))
	fmt.Fprintln(w, `	for ((i = 2; i < CURRENT; i++)); do
		w=${words[i]}
		if [[ -n $skip ]]; then skip=; continue; fi
		[[ $w == -- ]] && { _command_names; return; }
		if [[ $w == -* ]]; then [[ $w != *=* && $valued == *" $w "* ]] && skip=1; continue; fi
		if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
	done
	[[ -n $skip ]] && { _files; return; }
	local -a cands
	case "$cmd" in`)
	fmt.Fprintf(w, "	'') cands=(%s %s) ;;\n", strings.Join(m.top, " "), strings.Join(m.globals, " "))
	for _, top := range m.top {
		subs := m.subs[top]
		if len(subs) == 0 {
			fmt.Fprintf(w, "	%s) cands=(%s) ;;\n", top, strings.Join(m.flags[top], " "))
			continue
		}
		fmt.Fprintf(w, "	%s)\n		case \"$sub\" in\n", top)
		fmt.Fprintf(w, "		'') cands=(%s %s) ;;\n", strings.Join(subs, " "), strings.Join(m.flags[top], " "))
		for _, s := range subs {
			fmt.Fprintf(w, "		%s) cands=(%s) ;;\n", s, strings.Join(m.flags[top+" "+s], " "))
		}
		fmt.Fprintln(w, "		esac ;;")
	}
	fmt.Fprintln(w, `	esac
	if [[ $cur == -* || -z $cmd || ( -z $sub && ${cands[1]} != --* ) ]]; then
		compadd -- $cands
	else
		_files
	fi
}
_vxmesh "$@"`)
}
