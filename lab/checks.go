package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vxmesh/vxmesh/lab/topo"
)

// Check kinds.
const (
	// KindPingIP: a container pings another one's overlay address, across
	// hosts.
	KindPingIP = "ping-ip"
	// KindPingName: a container resolves another one's name through its
	// own resolver, gets the other's overlay address, and pings it.
	KindPingName = "ping-name"
	// KindPing6IP and KindPing6Name: the same over IPv6 (the overlay's
	// subnet6, AAAA records).
	KindPing6IP   = "ping6-ip"
	KindPing6Name = "ping6-name"
	// KindPublished: a host connects to a published port on another
	// host's address and gets the container's TCP server.
	KindPublished = "published"
	// KindUpstream: a container resolves UpstreamName through its own
	// resolver, which ends at the fake upstream DNS server.
	KindUpstream = "upstream-dns"
)

// Check is one claim the lab makes about the network, and how it fared.
type Check struct {
	Kind string `json:"kind"`
	// From is the container (or host, for KindPublished) it runs from;
	// FromHost its host; FromNetns the namespace the probe runs in.
	From      string `json:"from"`
	FromHost  string `json:"from_host"`
	FromNetns string `json:"from_netns"`
	// To is the target container, the published host:port, or the name
	// looked up; ToHost the target's host.
	To     string `json:"to"`
	ToHost string `json:"to_host,omitempty"`
	// OK is the outcome; Error says why not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Addr is the address pinged, resolved or connected to.
	Addr string `json:"addr,omitempty"`
	// Latency is the ping round trip, the name lookup, or the TCP connect.
	LatencyMS float64 `json:"latency_ms,omitempty"`
	// Detail is more about a success: the resolver that answered, the
	// banner that came back.
	Detail string `json:"detail,omitempty"`
}

// ID names the check, e.g. "ping-ip web1->web2".
func (c *Check) ID() string { return c.Kind + " " + c.From + "->" + c.To }

// Checks lists the lab's checks: for each pair of containers on the
// overlay on different hosts a ping by IP and a ping by name; for each
// published port a connection from every other host (from the internet
// host when there is no other); for each container a lookup of
// UpstreamName.
func (p *Plan) Checks() []Check {
	var out []Check
	var pairs [][2]*ContainerPlan
	for i := range p.Containers {
		for j := i + 1; j < len(p.Containers); j++ {
			a, b := &p.Containers[i], &p.Containers[j]
			if a.Host != b.Host && slices.Contains(a.Networks, OverlayNet) && slices.Contains(b.Networks, OverlayNet) {
				pairs = append(pairs, [2]*ContainerPlan{a, b})
			}
		}
	}
	for _, kind := range []string{KindPingIP, KindPingName, KindPing6IP, KindPing6Name} {
		for _, pr := range pairs {
			out = append(out, Check{Kind: kind, From: pr[0].Name, FromHost: pr[0].Host, FromNetns: pr[0].Netns, To: pr[1].Name, ToHost: pr[1].Host})
		}
	}
	for _, c := range p.Containers {
		if c.Serves == 0 || len(c.Publish) == 0 {
			continue
		}
		h := p.Host(c.Host)
		to := netip.AddrPortFrom(h.Address, PublishedPort).String()
		n := 0
		for _, o := range p.Hosts {
			if o.Name != h.Name {
				out = append(out, Check{Kind: KindPublished, From: o.Name, FromHost: o.Name, FromNetns: o.Netns, To: to, ToHost: h.Name})
				n++
			}
		}
		if n == 0 {
			out = append(out, Check{Kind: KindPublished, From: topo.DefaultInternetRole, FromHost: topo.DefaultInternetRole, FromNetns: p.Internet.Netns, To: to, ToHost: h.Name})
		}
	}
	for _, c := range p.Containers {
		out = append(out, Check{Kind: KindUpstream, From: c.Name, FromHost: c.Host, FromNetns: c.Netns, To: UpstreamName})
	}
	return out
}

// OverlayAddr returns container c's address on the overlay, read from
// the kernel (its interface on OverlayNet inside its namespace).
func (p *Plan) OverlayAddr(c *ContainerPlan) (netip.Addr, error) {
	i := slices.Index(c.Networks, OverlayNet)
	if i < 0 {
		return netip.Addr{}, fmt.Errorf("container %q is not on %q", c.Name, OverlayNet)
	}
	return InterfaceAddr(c.Netns, fmt.Sprintf("eth%d", i))
}

// OverlayAddr6 is OverlayAddr's IPv6 twin.
func (p *Plan) OverlayAddr6(c *ContainerPlan) (netip.Addr, error) {
	i := slices.Index(c.Networks, OverlayNet)
	if i < 0 {
		return netip.Addr{}, fmt.Errorf("container %q is not on %q", c.Name, OverlayNet)
	}
	return InterfaceAddr6(c.Netns, fmt.Sprintf("eth%d", i))
}

// Run runs the check once, each probe waiting up to timeout, and fills in
// its outcome.
func (p *Plan) Run(ctx context.Context, c *Check, timeout time.Duration) {
	c.OK, c.Error, c.Addr, c.LatencyMS, c.Detail = false, "", "", 0, ""
	err := p.run(ctx, c, timeout)
	if err != nil {
		c.Error = err.Error()
		return
	}
	c.OK = true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *Plan) run(ctx context.Context, c *Check, timeout time.Duration) error {
	switch c.Kind {
	case KindPingIP, KindPingName, KindPing6IP, KindPing6Name:
		to := p.Container(c.To)
		if to == nil {
			return fmt.Errorf("no container %q in the lab", c.To)
		}
		v6 := c.Kind == KindPing6IP || c.Kind == KindPing6Name
		addrOf, resolve := p.OverlayAddr, Resolve
		if v6 {
			addrOf, resolve = p.OverlayAddr6, Resolve6
		}
		ip, err := addrOf(to)
		if err != nil {
			return fmt.Errorf("%s has no overlay address yet: %w", c.To, err)
		}
		c.Addr = ip.String()
		if c.Kind == KindPingName || c.Kind == KindPing6Name {
			r, err := resolve(ctx, c.FromNetns, c.To, timeout)
			if err != nil {
				return fmt.Errorf("resolve %s: %w", c.To, err)
			}
			c.Detail = fmt.Sprintf("%s answered %v in %.2fms", r.Server, r.Addrs, ms(r.RTT))
			if !slices.Contains(r.Addrs, ip) {
				return fmt.Errorf("%s resolved to %v via %s, but its %s address is %s", c.To, r.Addrs, r.Server, OverlayNet, ip)
			}
		}
		rtt, err := Ping(ctx, c.FromNetns, ip, timeout)
		if err != nil {
			return fmt.Errorf("ping %s: %w", ip, err)
		}
		c.LatencyMS = ms(rtt)
		return nil
	case KindPublished:
		to, err := netip.ParseAddrPort(c.To)
		if err != nil {
			return err
		}
		c.Addr = c.To
		banner, rtt, err := DialBanner(ctx, c.FromNetns, to, timeout)
		if err != nil {
			return err
		}
		c.LatencyMS = ms(rtt)
		c.Detail = banner
		var srv *ContainerPlan
		for i := range p.Containers {
			if p.Containers[i].Serves != 0 && p.Containers[i].Host == c.ToHost {
				srv = &p.Containers[i]
			}
		}
		if srv != nil && !strings.HasPrefix(banner, Banner(p.Name, srv.Name)) {
			return fmt.Errorf("%s answered %q, not %s's server", c.To, banner, srv.Name)
		}
		return nil
	case KindUpstream:
		r, err := Resolve(ctx, c.FromNetns, c.To, timeout)
		if err != nil {
			return err
		}
		c.LatencyMS = ms(r.RTT)
		c.Detail = "via " + r.Server
		if len(r.Addrs) > 0 {
			c.Addr = r.Addrs[0].String()
		}
		if !slices.Contains(r.Addrs, UpstreamAnswer) {
			return fmt.Errorf("%s resolved to %v via %s, want %s from the fake upstream", c.To, r.Addrs, r.Server, UpstreamAnswer)
		}
		return nil
	}
	return fmt.Errorf("unknown check kind %q", c.Kind)
}

// RunAll runs every check once, several at a time.
func (p *Plan) RunAll(ctx context.Context, checks []Check, timeout time.Duration) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range checks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.Run(ctx, &checks[i], timeout)
		}()
	}
	wg.Wait()
}

// Passed counts the checks that passed.
func Passed(checks []Check) int {
	n := 0
	for _, c := range checks {
		if c.OK {
			n++
		}
	}
	return n
}

// Converge runs rounds of the checks, at most every interval, until all
// pass, wait has passed or ctx ends, calling progress after each round. A
// round is never cut short by the wait: each probe has probeTimeout, so
// the last round shows the state at the deadline, not cancelled probes. It
// returns the last round's results.
func (p *Plan) Converge(ctx context.Context, checks []Check, wait, interval, probeTimeout time.Duration, progress func(round int, checks []Check)) []Check {
	deadline := time.Now().Add(wait)
	for round := 1; ; round++ {
		start := time.Now()
		p.RunAll(ctx, checks, probeTimeout)
		if progress != nil {
			progress(round, checks)
		}
		if Passed(checks) == len(checks) || ctx.Err() != nil || !time.Now().Before(deadline) {
			return checks
		}
		pause := min(max(0, interval-time.Since(start)), time.Until(deadline))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return checks
		case <-t.C:
		}
	}
}

// WriteTable prints the checks as the table `lab up` ends with, one
// section per kind, and the reasons of the failures below it.
func (p *Plan) WriteTable(w io.Writer, checks []Check) {
	byID := map[string]*Check{}
	for i := range checks {
		byID[checks[i].ID()] = &checks[i]
	}
	where := func(name string) string {
		if c := p.Container(name); c != nil {
			return fmt.Sprintf("%s (%s)", name, c.Host)
		}
		return name
	}
	var fails []*Check
	cell := func(c *Check, ok string) string {
		if c.OK {
			return "✓ " + ok
		}
		fails = append(fails, c)
		if (c.Kind == KindPingIP || c.Kind == KindPing6IP) && c.Addr != "" {
			return fmt.Sprintf("✗ %s [%d]", c.Addr, len(fails))
		}
		return fmt.Sprintf("✗ [%d]", len(fails))
	}
	section := func(title string, header []string, rows [][]string) {
		fmt.Fprintln(w, title)
		if len(rows) == 0 {
			return
		}
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		fmt.Fprintf(tw, "  %s\n", strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintf(tw, "  %s\n", strings.Join(r, "\t"))
		}
		tw.Flush()
	}
	of := func(kind string) []*Check {
		var out []*Check
		for i := range checks {
			if checks[i].Kind == kind {
				out = append(out, &checks[i])
			}
		}
		return out
	}

	pings := func(ipKind, nameKind string) [][]string {
		var rows [][]string
		for _, c := range of(ipKind) {
			ip := cell(c, fmt.Sprintf("%s  %.2fms", c.Addr, c.LatencyMS))
			name := "-"
			if n := byID[nameKind+" "+c.From+"->"+c.To]; n != nil {
				name = cell(n, fmt.Sprintf("%s = %s  %.2fms", n.To, n.Addr, n.LatencyMS))
			}
			rows = append(rows, []string{where(c.From), where(c.To), ip, name})
		}
		return rows
	}
	rows := pings(KindPingIP, KindPingName)
	title := fmt.Sprintf("Overlay %s (%s), between containers on different hosts:", OverlayNet, OverlaySubnet)
	if len(rows) == 0 {
		title = fmt.Sprintf("Overlay %s (%s): no two containers on different hosts in a lab of %d host.", OverlayNet, OverlaySubnet, len(p.Hosts))
	}
	section(title, []string{"FROM", "TO", "PING BY IP", "PING BY NAME"}, rows)
	if rows6 := pings(KindPing6IP, KindPing6Name); len(rows6) > 0 {
		fmt.Fprintln(w)
		section(fmt.Sprintf("Overlay %s over IPv6 (%s), AAAA names:", OverlayNet, OverlaySubnet6), []string{"FROM", "TO", "PING6 BY IP", "PING6 BY NAME"}, rows6)
	}

	pub := of(KindPublished)
	if len(pub) > 0 {
		rows = nil
		for _, c := range pub {
			rows = append(rows, []string{c.From, cell(c, fmt.Sprintf("%.2fms  %q", c.LatencyMS, c.Detail))})
		}
		srv := ""
		for _, c := range p.Containers {
			if c.Serves != 0 && c.Host == pub[0].ToHost {
				srv = fmt.Sprintf(" (%s port %d on %s)", c.Name, c.Serves, c.Host)
			}
		}
		fmt.Fprintln(w)
		section(fmt.Sprintf("Published port %s%s, from the other hosts:", pub[0].To, srv), []string{"FROM", "CONNECT AND ANSWER"}, rows)
	}

	up := of(KindUpstream)
	if len(up) > 0 {
		rows = nil
		for _, c := range up {
			rows = append(rows, []string{where(c.From), cell(c, fmt.Sprintf("%s  %.2fms  %s", c.Addr, c.LatencyMS, c.Detail))})
		}
		fmt.Fprintln(w)
		section(fmt.Sprintf("Upstream name %s through each container's resolver (fake upstream %s):", UpstreamName, p.Internet.DNS),
			[]string{"FROM", "LOOKUP"}, rows)
	}
	if len(fails) > 0 {
		fmt.Fprintln(w)
		for i, c := range fails {
			fmt.Fprintf(w, "[%d] %s: %s\n", i+1, c.ID(), c.Error)
		}
	}
}
