package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// HostnameFile is the content of /etc/netns/NAME/hostname.
func HostnameFile(hostname string) []byte { return []byte(hostname + "\n") }

// HostsInput is what goes into a container's hosts file.
type HostsInput struct {
	// Hostname is the container's hostname (its name by default).
	Hostname string
	// Name is the container's name; written after the hostname when it
	// differs from it.
	Name string
	// Aliases are the container's extra DNS names.
	Aliases []string
	// Addrs are the container's own addresses, in interface order.
	Addrs []netip.Addr
	// Extra are the --add-host entries.
	Extra []HostEntry
	// Links are the legacy --link entries with the linked containers'
	// current addresses (both families); the agent rewrites the file when
	// they change.
	Links []HostLink
}

// HostLink is one legacy link: the linked container's name, the alias
// the linking container knows it by (may be empty) and its addresses.
type HostLink struct {
	Name  string
	Alias string
	Addrs []netip.Addr
}

// HostEntry is one extra hosts line (config's extra_hosts, --add-host).
type HostEntry struct {
	Name string
	IP   netip.Addr
}

// HostsFile is the content of /etc/netns/NAME/hosts, laid out like
// Docker's: the localhost lines, the extra hosts, then one line per own
// address naming the hostname, its first label, the container name and the
// aliases. Links come after the extra hosts, one "IP NAME ALIAS" line per
// address of the linked container, as `docker run --link` writes them.
func HostsFile(in HostsInput) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	for _, e := range in.Extra {
		fmt.Fprintf(&b, "%s\t%s\n", e.IP, e.Name)
	}
	for _, l := range in.Links {
		names := l.Name
		if l.Alias != "" && l.Alias != l.Name {
			names += " " + l.Alias
		}
		for _, a := range l.Addrs {
			if a.IsValid() {
				fmt.Fprintf(&b, "%s\t%s\n", a.Unmap(), names)
			}
		}
	}
	var names []string
	add := func(n string) {
		if n != "" && !contains(names, n) {
			names = append(names, n)
		}
	}
	add(in.Hostname)
	if short, _, ok := strings.Cut(in.Hostname, "."); ok {
		add(short)
	}
	add(in.Name)
	for _, a := range in.Aliases {
		add(a)
	}
	for _, a := range in.Addrs {
		if len(names) == 0 {
			break
		}
		fmt.Fprintf(&b, "%s\t%s\n", a, strings.Join(names, " "))
	}
	return b.Bytes()
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// ResolvConf is the content of /etc/netns/NAME/resolv.conf. The caller
// chooses the nameservers (the container's dns, the host's, or later the
// embedded DNS server).
func ResolvConf(nameservers []netip.Addr, search, options []string) []byte {
	var b bytes.Buffer
	b.WriteString("# written by vxmesh\n")
	for _, ns := range nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes()
}

// HostNameservers returns the nameservers of a host resolv.conf, leaving
// out loopback ones (they would point into the container itself) and
// anything that does not parse.
func HostNameservers(resolvConf []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.IsLoopback() {
			continue
		}
		out = append(out, a.Unmap())
	}
	return out
}

// readFilesCached returns the name files of namespace ns, from the cache
// kept with its namespace state (watch.go) when nothing dropped it: the
// watch drops it when someone else changes a file, a pass when it writes
// one, Invalidate on every resync.
func (r *Reconciler) readFilesCached(ns string) (map[string][]byte, error) {
	if files, ok := r.cachedFiles(ns); ok {
		return files, nil
	}
	dir := filepath.Join(r.etc(), ns)
	files, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, name := range NameFiles {
		r.saw(filepath.Join(dir, name), files[name])
	}
	r.cacheFiles(ns, files)
	return files, nil
}

// readFiles returns the name files present in dir.
func readFiles(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, name := range NameFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
		out[name] = b
	}
	return out, nil
}
