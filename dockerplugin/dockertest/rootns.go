package dockertest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// rootCommands show the root namespace's network state.
var rootCommands = [][]string{
	{"ip", "-o", "link"},
	{"ip", "-o", "addr"},
	{"ip", "route", "show", "table", "all"},
	{"ip", "-6", "route", "show", "table", "all"},
	{"iptables-save"},
	{"ip6tables-save"},
}

// rootSysctls are the sysctls a container runtime likes to flip.
var rootSysctls = []string{
	"/proc/sys/net/ipv4/ip_forward",
	"/proc/sys/net/ipv4/conf/all/forwarding",
	"/proc/sys/net/ipv6/conf/all/forwarding",
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables",
}

// rootPaths are what a dockerd outside our roots would create.
var rootPaths = []string{"/run/docker", "/run/containerd", "/var/run/docker.sock", "/var/lib/docker", "/etc/docker/key.json"}

// counters matches iptables-save's packet counters.
var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// RootSnapshot describes the root namespace's links, addresses, routes,
// iptables, sysctls and Docker's default paths, for comparing before and
// after a test. Counters and comments are left out; link statistics are
// not printed by `ip -o link`.
func RootSnapshot() (string, error) {
	var b strings.Builder
	for _, c := range rootCommands {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(c, " "), err)
		}
		fmt.Fprintf(&b, "## %s\n", strings.Join(c, " "))
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			b.WriteString(counters.ReplaceAllString(line, "[]") + "\n")
		}
	}
	for _, p := range rootSysctls {
		v, err := os.ReadFile(p)
		if err != nil {
			v = []byte("absent")
		}
		fmt.Fprintf(&b, "%s = %s\n", p, strings.TrimSpace(string(v)))
	}
	for _, p := range rootPaths {
		_, err := os.Lstat(p)
		fmt.Fprintf(&b, "%s exists: %v\n", p, err == nil)
	}
	return b.String(), nil
}

// DiffLines lists the lines only in a and only in b.
func DiffLines(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
