package dns

import (
	"net/netip"
	"slices"
	"strings"
)

// View is what one container sees through its resolver. The agent computes
// it (ComputeView does the usual computation) and hands it over with Attach
// or SetView; the server never changes it. Names may be given in any case,
// with or without the trailing dot.
type View struct {
	// Records maps a name to its addresses: names and aliases of the
	// containers on the networks the asker shares, the asker's own hostname,
	// extra_hosts. IPv4 addresses answer A queries, IPv6 addresses AAAA.
	Records map[string][]netip.Addr
	// PTR maps an address to the names a reverse lookup returns.
	PTR map[netip.Addr][]string
	// Hidden are names that are ours but not for this container (a container
	// on a network it is not on, or one recently removed). They get NXDOMAIN
	// and are never forwarded. A name in Records is never hidden.
	Hidden []string
	// ReverseZones are address ranges we own (the vxmesh subnets). A reverse
	// lookup for an address in them that is not in PTR gets NXDOMAIN instead
	// of being forwarded.
	ReverseZones []netip.Prefix
	// Search lists the container's search domains. They are informational:
	// names are matched exactly (see docs/dns.md), the list only goes into
	// ResolvConf.
	Search []string
	// Upstreams are the container's `dns` servers, tried in order (port 0
	// means 53). Empty means the host's resolvers (Options.ResolvConf).
	Upstreams []netip.AddrPort

	compiled *compiledView // set by Views.View: the rest is not filled in
}

// compiledView is a View normalised for lookups: lower-case FQDN keys,
// de-duplicated sorted addresses split by family.
type compiledView struct {
	names     map[string]*entry // nil entry: hidden
	ptr       map[netip.Addr][]string
	zones     []netip.Prefix
	upstreams []netip.AddrPort
	base      *compiledView // shared with other containers (Views); names here come first
}

type entry struct {
	v4, v6 []netip.Addr
}

// canonName returns name in lower case with exactly one trailing dot, the
// form every lookup key takes. The root name stays ".".
func canonName(name string) string {
	name = strings.ToLower(strings.TrimRight(name, "."))
	return name + "."
}

func compileView(v View) *compiledView {
	if v.compiled != nil {
		return v.compiled
	}
	cv := &compiledView{
		names:     make(map[string]*entry, len(v.Records)+len(v.Hidden)),
		ptr:       make(map[netip.Addr][]string, len(v.PTR)),
		zones:     slices.Clone(v.ReverseZones),
		upstreams: slices.Clone(v.Upstreams),
	}
	for name, addrs := range v.Records {
		if strings.Trim(name, ".") == "" {
			continue // never answer for the root
		}
		k := canonName(name)
		e := cv.names[k]
		if e == nil {
			e = &entry{}
			cv.names[k] = e
		}
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			a = a.Unmap()
			if a.Is4() {
				e.v4 = append(e.v4, a)
			} else {
				e.v6 = append(e.v6, a.WithZone(""))
			}
		}
	}
	for _, e := range cv.names {
		e.v4 = sortUnique(e.v4)
		e.v6 = sortUnique(e.v6)
	}
	for _, name := range v.Hidden {
		if strings.Trim(name, ".") == "" {
			continue
		}
		k := canonName(name)
		if _, ok := cv.names[k]; !ok {
			cv.names[k] = nil
		}
	}
	for a, names := range v.PTR {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		for _, n := range names {
			if strings.Trim(n, ".") == "" {
				continue
			}
			// PTR targets keep their case; only the dot is normalised.
			n = strings.TrimRight(n, ".") + "."
			if !slices.Contains(cv.ptr[a], n) {
				cv.ptr[a] = append(cv.ptr[a], n)
			}
		}
	}
	for i, u := range cv.upstreams {
		if u.Port() == 0 {
			cv.upstreams[i] = netip.AddrPortFrom(u.Addr(), 53)
		}
	}
	for i, p := range cv.zones {
		cv.zones[i] = p.Masked()
	}
	return cv
}

func sortUnique(as []netip.Addr) []netip.Addr {
	slices.SortFunc(as, netip.Addr.Compare)
	return slices.Compact(as)
}

// ownZone reports whether a is in one of the view's reverse zones.
func (cv *compiledView) ownZone(a netip.Addr) bool {
	for _, p := range cv.zones {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Endpoint is one container on one network, as the agent knows it (from
// its own config or from gossip).
type Endpoint struct {
	// Container is the container's name.
	Container string
	// Network is the network's name. For a host-local bridge network, pass
	// only this host's endpoints: a container on another host's bridge of
	// the same name is not reachable.
	Network string
	// Aliases are the container's extra names on its networks.
	Aliases []string
	// Addrs are its addresses on this network, both families (IPv4 answer
	// A queries, IPv6 AAAA; each gets a PTR in in-addr.arpa or ip6.arpa).
	Addrs []netip.Addr
}

// HostEntry is one extra_hosts line.
type HostEntry struct {
	Name string
	Addr netip.Addr
}

// ViewInput is what ComputeView needs to know about the asking container and
// the cluster.
type ViewInput struct {
	// Networks the asking container is attached to.
	Networks []string
	// Hostname is the asker's hostname; it resolves to SelfAddrs, and so does
	// its first label when that is not otherwise taken.
	Hostname string
	// SelfAddrs are the asker's own addresses.
	SelfAddrs []netip.Addr
	// ExtraHosts are the asker's extra_hosts; they take precedence over
	// container names, as /etc/hosts does.
	ExtraHosts []HostEntry
	// Endpoints are all endpoints known cluster-wide, on every network.
	Endpoints []Endpoint
	// Gone are names of containers (and their aliases) removed recently;
	// they answer NXDOMAIN rather than going upstream.
	Gone []string
	// Subnets are the subnets of every vxmesh network, subnet and subnet6
	// (the reverse zones we answer for, in-addr.arpa and ip6.arpa).
	Subnets []netip.Prefix
	// Search and Upstreams are copied into the View.
	Search    []string
	Upstreams []netip.AddrPort
}

// ComputeView is the Docker-like visibility rule as a pure function: a
// container sees, on every network it shares with another container, that
// container's name, its aliases, and both as NAME.NETWORK; reverse lookups of
// their addresses return CONTAINER.NETWORK (as Docker does). Names of
// containers it shares no network with, and Gone names, are Hidden.
func ComputeView(in ViewInput) View {
	v := View{
		Records:      map[string][]netip.Addr{},
		PTR:          map[netip.Addr][]string{},
		ReverseZones: slices.Clone(in.Subnets),
		Search:       slices.Clone(in.Search),
		Upstreams:    slices.Clone(in.Upstreams),
	}
	mine := map[string]bool{}
	for _, n := range in.Networks {
		mine[n] = true
	}
	var hidden []string
	for _, ep := range in.Endpoints {
		names := make([]string, 0, 2+2*len(ep.Aliases))
		for _, n := range append([]string{ep.Container}, ep.Aliases...) {
			if n == "" {
				continue
			}
			names = append(names, n, n+"."+ep.Network)
		}
		if !mine[ep.Network] {
			hidden = append(hidden, names...)
			continue
		}
		for _, n := range names {
			k := canonName(n)
			v.Records[k] = append(v.Records[k], ep.Addrs...)
		}
		for _, a := range ep.Addrs {
			a = a.Unmap()
			ptr := canonName(ep.Container + "." + ep.Network)
			if !slices.Contains(v.PTR[a], ptr) {
				v.PTR[a] = append(v.PTR[a], ptr)
			}
		}
	}
	if in.Hostname != "" && len(in.SelfAddrs) > 0 {
		k := canonName(in.Hostname)
		v.Records[k] = append(v.Records[k], in.SelfAddrs...)
		if short, _, ok := strings.Cut(in.Hostname, "."); ok && short != "" {
			if _, taken := v.Records[canonName(short)]; !taken {
				v.Records[canonName(short)] = slices.Clone(in.SelfAddrs)
			}
		}
	}
	extra := map[string][]netip.Addr{}
	for _, h := range in.ExtraHosts {
		k := canonName(h.Name)
		extra[k] = append(extra[k], h.Addr)
	}
	for k, addrs := range extra {
		v.Records[k] = addrs
		for _, a := range addrs {
			a = a.Unmap()
			if len(v.PTR[a]) == 0 {
				v.PTR[a] = []string{k}
			}
		}
	}
	for _, n := range append(hidden, in.Gone...) {
		if _, ok := v.Records[canonName(n)]; !ok && n != "" {
			v.Hidden = append(v.Hidden, canonName(n))
		}
	}
	slices.Sort(v.Hidden)
	v.Hidden = slices.Compact(v.Hidden)
	return v
}

// ResolvConf renders the resolv.conf of a container that uses the embedded
// server: nameserver 127.0.0.11, its search domains, and "options ndots:0"
// (as Docker writes) unless options already set ndots. With ndots:0 the
// resolver asks for a bare container name first, which we answer exactly,
// instead of first sending NAME.SEARCHDOMAIN upstream.
func ResolvConf(search, options []string) []byte {
	var b strings.Builder
	b.WriteString("# written by vxmesh: the embedded DNS server answers on 127.0.0.11\n")
	b.WriteString("nameserver " + ListenAddr.Addr().String() + "\n")
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	opts := slices.Clone(options)
	if !slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		opts = append([]string{"ndots:0"}, opts...)
	}
	b.WriteString("options " + strings.Join(opts, " ") + "\n")
	return []byte(b.String())
}
