package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// The probes below are what the lab's checks are made of. Each runs from
// inside a named network namespace (its sockets are made there on a locked
// thread) and needs nothing but root: no ping, dig or nsenter binaries.

// EtcNetns is where containers' name files live (as `ip netns exec`
// expects them).
var EtcNetns = bridge.DefaultEtcNetns

var pingSeq atomic.Uint32

// Ping sends one ICMP echo request from inside netns to to and waits up to
// timeout for the matching reply from to; it returns the round-trip time.
// It refuses to ping one of the namespace's own addresses: the reply would
// come from the namespace itself and prove nothing (two hosts handing out
// the same overlay address look exactly like that).
func Ping(ctx context.Context, netns string, to netip.Addr, timeout time.Duration) (time.Duration, error) {
	fam := pingV4
	if to.Is6() {
		fam = pingV6
	}
	own, err := NetnsAddrs(netns)
	if err != nil {
		return 0, err
	}
	for _, a := range own {
		if a.Addr() == to {
			return 0, fmt.Errorf("%s is an address of netns %q itself (the same address handed out twice?)", to, netns)
		}
	}
	var c *icmp.PacketConn
	err = netnsutil.Do(netns, func() error {
		var err error
		c, err = icmp.ListenPacket(fam.network, fam.listen)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("open ICMP socket in netns %q: %w", netns, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	var idb [2]byte
	rand.Read(idb[:])
	id := int(binary.BigEndian.Uint16(idb[:]))
	seq := int(pingSeq.Add(1) & 0xffff)
	req := icmp.Message{Type: fam.echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("vxmesh lab ping")}}
	b, err := req.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := c.WriteTo(b, &net.IPAddr{IP: to.AsSlice()}); err != nil {
		return 0, fmt.Errorf("send echo to %s from netns %q: %w", to, netns, err)
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, fmt.Errorf("no reply from %s in %s", to, timeout)
			}
			return 0, fmt.Errorf("read ICMP in netns %q: %w", netns, err)
		}
		rtt := time.Since(start)
		m, err := icmp.ParseMessage(fam.proto, buf[:n])
		if err != nil {
			continue
		}
		from, _ := netip.AddrFromSlice(peer.(*net.IPAddr).IP)
		from = from.Unmap()
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == fam.reply && body.ID == id && body.Seq == seq && from == to {
				return rtt, nil
			}
		case *icmp.DstUnreach:
			if echoOf(body.Data, id, seq) {
				return 0, fmt.Errorf("%s unreachable (ICMP code %d from %s)", to, m.Code, from)
			}
		case *icmp.TimeExceeded:
			if echoOf(body.Data, id, seq) {
				return 0, fmt.Errorf("%s: TTL exceeded at %s (routing loop?)", to, from)
			}
		}
	}
}

// echoOf reports whether data (an ICMP error's copy of the original
// datagram: IPv4 header, then 8 bytes of it) is our echo request.
func echoOf(data []byte, id, seq int) bool {
	if len(data) < 20 {
		return false
	}
	ihl := int(data[0]&0x0f) * 4
	if len(data) < ihl+8 || data[9] != 1 {
		return false
	}
	e := data[ihl:]
	return e[0] == 8 && int(binary.BigEndian.Uint16(e[4:])) == id && int(binary.BigEndian.Uint16(e[6:])) == seq
}

// NetnsAddrs lists the addresses of every interface in netns.
func NetnsAddrs(netns string) ([]netip.Prefix, error) {
	h, err := topo.Handle(netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses in %q: %w", netns, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out, nil
}

// InterfaceAddr returns the first IPv4 address of interface ifname in
// netns.
func InterfaceAddr(netns, ifname string) (netip.Addr, error) {
	return interfaceAddr(netns, ifname, netlink.FAMILY_V4)
}

// interfaceAddr is ifname's first global address of family in netns.
func interfaceAddr(netns, ifname string, family int) (netip.Addr, error) {
	h, err := topo.Handle(netns)
	if err != nil {
		return netip.Addr{}, err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find %q in netns %q: %w", ifname, netns, err)
	}
	addrs, err := h.AddrList(l, family)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses of %q in netns %q: %w", ifname, netns, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
			return ip.Unmap(), nil
		}
	}
	if family == netlink.FAMILY_V6 {
		return netip.Addr{}, fmt.Errorf("%q in netns %q has no global IPv6 address", ifname, netns)
	}
	return netip.Addr{}, fmt.Errorf("%q in netns %q has no IPv4 address", ifname, netns)
}

// Resolution is the answer of a name lookup.
type Resolution struct {
	Addrs []netip.Addr
	// Server is the nameserver that answered ("127.0.0.11:53"), or
	// "hosts file" when the container has no nameserver.
	Server string
	RTT    time.Duration
}

// Nameservers returns the nameservers of netns's resolv.conf in
// EtcNetns, and whether that file exists.
func Nameservers(netns string) ([]netip.Addr, bool, error) {
	b, err := os.ReadFile(filepath.Join(EtcNetns, netns, "resolv.conf"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, true, nil
}

// Resolve looks name up (A records) the way a program in the container
// would: through the nameservers of its resolv.conf (EtcNetns/NETNS), in
// order, asked from inside netns; only when it lists none, in its hosts
// file. Each server gets up to timeout.
func Resolve(ctx context.Context, netns, name string, timeout time.Duration) (*Resolution, error) {
	return resolve(ctx, netns, name, dns.TypeA, timeout)
}

// resolve looks name up (qtype A or AAAA) as Resolve does.
func resolve(ctx context.Context, netns, name string, qtype uint16, timeout time.Duration) (*Resolution, error) {
	servers, found, err := Nameservers(netns)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no %s: the agent has not written the name files of netns %q", filepath.Join(EtcNetns, netns, "resolv.conf"), netns)
	}
	if len(servers) == 0 && qtype == dns.TypeA {
		return resolveHostsFile(netns, name)
	}
	var errs []error
	for _, s := range servers {
		r, err := query(ctx, netns, netip.AddrPortFrom(s, 53), name, qtype, timeout)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// query asks server for name's A or AAAA records from inside netns.
func query(ctx context.Context, netns string, server netip.AddrPort, name string, qtype uint16, timeout time.Duration) (*Resolution, error) {
	var conn net.Conn
	err := netnsutil.Do(netns, func() error {
		var err error
		conn, err = net.Dial("udp", server.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ask %s from netns %q: %w", server, netns, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	co := &dns.Conn{Conn: conn}
	start := time.Now()
	if err := co.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("ask %s for %s: %w", server, name, err)
	}
	var m *dns.Msg
	for {
		m, err = co.ReadMsg()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("%s did not answer for %s in %s", server, name, timeout)
			}
			return nil, fmt.Errorf("ask %s for %s: %w", server, name, err)
		}
		if m.Id == q.Id {
			break
		}
	}
	r := &Resolution{Server: server.String(), RTT: time.Since(start)}
	if m.Rcode != dns.RcodeSuccess {
		return r, fmt.Errorf("%s answered %s for %s", server, dns.RcodeToString[m.Rcode], name)
	}
	for _, rr := range m.Answer {
		var raw net.IP
		switch a := rr.(type) {
		case *dns.A:
			raw = a.A
		case *dns.AAAA:
			raw = a.AAAA
		}
		if ip, ok := netip.AddrFromSlice(raw); ok {
			r.Addrs = append(r.Addrs, ip.Unmap())
		}
	}
	if len(r.Addrs) == 0 {
		return r, fmt.Errorf("%s has no %s record for %s", server, dns.TypeToString[qtype], name)
	}
	return r, nil
}

// resolveHostsFile looks name up in netns's hosts file.
func resolveHostsFile(netns, name string) (*Resolution, error) {
	file := filepath.Join(EtcNetns, netns, "hosts")
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("no nameserver for netns %q, and %w", netns, err)
	}
	defer f.Close()
	r := &Resolution{Server: "hosts file"}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fl := strings.Fields(line)
		if len(fl) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(fl[0])
		if err != nil || !ip.Is4() {
			continue
		}
		for _, n := range fl[1:] {
			if strings.EqualFold(n, strings.TrimSuffix(name, ".")) {
				r.Addrs = append(r.Addrs, ip)
			}
		}
	}
	if len(r.Addrs) == 0 {
		return r, fmt.Errorf("no nameserver for netns %q, and %s has no %s", netns, file, name)
	}
	return r, nil
}

// DialBanner connects over TCP from inside netns to to, reads what the
// server sends until it closes (at most 4 KiB) and returns it with the
// time the connection took.
func DialBanner(ctx context.Context, netns string, to netip.AddrPort, timeout time.Duration) (string, time.Duration, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var c net.Conn
	var rtt time.Duration
	err := netnsutil.Do(netns, func() error {
		d := net.Dialer{Deadline: deadline}
		start := time.Now()
		var err error
		c, err = d.DialContext(ctx, "tcp", to.String())
		rtt = time.Since(start)
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("connect to %s from netns %q: %w", to, netns, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil {
		return string(b), rtt, fmt.Errorf("read from %s: %w", to, err)
	}
	return strings.TrimSpace(string(b)), rtt, nil
}
