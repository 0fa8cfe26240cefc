package dns

import (
	"net/netip"
	"slices"
	"strings"
)

// Views computes the views of many containers at once (one pass): every
// container on the same set of networks shares one compiled base — the
// names and reverse entries of those networks' endpoints, and what is
// hidden — and adds only what is its own (its hostname, extra_hosts,
// search and upstreams). A view from Views answers exactly as
// ComputeView's for the same input (TestViewsEqualComputeView), but costs
// O(endpoints) per set of networks instead of per container: with 100
// containers on a host, an attach no longer recomputes 100 full views.
type Views struct {
	eps     []Endpoint
	gone    []string
	subnets []netip.Prefix
	bases   map[string]*compiledView
}

// NewViews prepares the views of containers that see eps, gone and
// subnets (ViewInput's fields of the same names).
func NewViews(eps []Endpoint, gone []string, subnets []netip.Prefix) *Views {
	return &Views{eps: eps, gone: gone, subnets: subnets, bases: map[string]*compiledView{}}
}

// View is ComputeView(in) with in's Endpoints, Gone and Subnets replaced
// by those given to NewViews. Its exported fields are empty but Search
// and Upstreams: it is meant for Attach (Flat expands it).
func (vs *Views) View(in ViewInput) View {
	nets := slices.Clone(in.Networks)
	slices.Sort(nets)
	key := strings.Join(slices.Compact(nets), "\x00")
	base := vs.bases[key]
	if base == nil {
		base = compileView(ComputeView(ViewInput{Networks: in.Networks, Endpoints: vs.eps, Gone: vs.gone, Subnets: vs.subnets}))
		vs.bases[key] = base
	}
	// The container's own names, merged with the base as ComputeView
	// merges them: the hostname adds the container's addresses to whatever
	// the name already has, its first label only when not otherwise taken,
	// extra_hosts replace.
	rec := map[string][]netip.Addr{}
	ptr := map[netip.Addr][]string{}
	if in.Hostname != "" && len(in.SelfAddrs) > 0 {
		k := canonName(in.Hostname)
		rec[k] = append(base.addrs(k), in.SelfAddrs...)
		if short, _, ok := strings.Cut(in.Hostname, "."); ok && short != "" {
			ks := canonName(short)
			if _, taken := rec[ks]; !taken && base.addrs(ks) == nil {
				rec[ks] = slices.Clone(in.SelfAddrs)
			}
		}
	}
	extra := map[string][]netip.Addr{}
	for _, h := range in.ExtraHosts {
		k := canonName(h.Name)
		extra[k] = append(extra[k], h.Addr)
	}
	for k, addrs := range extra {
		rec[k] = addrs
		for _, a := range addrs {
			a = a.Unmap()
			if len(base.ptr[a.WithZone("")]) == 0 && len(ptr[a]) == 0 {
				ptr[a] = []string{k}
			}
		}
	}
	v := View{Records: rec, PTR: ptr, ReverseZones: vs.subnets, Search: slices.Clone(in.Search), Upstreams: slices.Clone(in.Upstreams)}
	cv := compileView(v)
	cv.base = base
	return View{Search: v.Search, Upstreams: v.Upstreams, compiled: cv}
}

// addrs returns the addresses a name has in cv (nil: none, or hidden).
func (cv *compiledView) addrs(name string) []netip.Addr {
	e, _ := cv.lookup(name)
	if e == nil {
		return nil
	}
	return append(slices.Clone(e.v4), e.v6...)
}

// lookup finds a canonical name: the view's own entries first, then its
// base's. A nil entry with known true is a hidden name.
func (cv *compiledView) lookup(name string) (e *entry, known bool) {
	if e, ok := cv.names[name]; ok {
		return e, true
	}
	if cv.base != nil {
		return cv.base.lookup(name)
	}
	return nil, false
}

// ptrOf returns the reverse names of a: the endpoints' (the base's) before
// the view's own extra_hosts, as ComputeView orders them.
func (cv *compiledView) ptrOf(a netip.Addr) []string {
	if cv.base != nil {
		if t := cv.base.ptrOf(a); len(t) > 0 {
			return t
		}
	}
	return cv.ptr[a]
}

// Flat returns v with every field filled in (Records, PTR, Hidden,
// ReverseZones), names in canonical form: what tests and debugging read.
// A View from ComputeView is returned as it is.
func (v View) Flat() View {
	if v.compiled == nil {
		return v
	}
	out := View{Records: map[string][]netip.Addr{}, PTR: map[netip.Addr][]string{}, Search: slices.Clone(v.Search), Upstreams: slices.Clone(v.compiled.upstreams), ReverseZones: slices.Clone(v.compiled.zones)}
	for cv := v.compiled; cv != nil; cv = cv.base {
		for name := range cv.names {
			if _, done := out.Records[name]; done || slices.Contains(out.Hidden, name) {
				continue
			}
			if e, _ := v.compiled.lookup(name); e != nil {
				out.Records[name] = append(slices.Clone(e.v4), e.v6...)
			} else {
				out.Hidden = append(out.Hidden, name)
			}
		}
		for a := range cv.ptr {
			if _, done := out.PTR[a]; !done {
				out.PTR[a] = slices.Clone(v.compiled.ptrOf(a))
			}
		}
	}
	slices.Sort(out.Hidden)
	return out
}
