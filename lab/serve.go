package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/lab/topo"
)

// HelperArg0 is argv[0] of the lab's helper processes (the fake upstream
// DNS server, the TCP server in a container): the vxmesh binary
// re-executed under this name runs HelperMain instead of the CLI, so the
// helpers are no commands a user sees.
const HelperArg0 = "vxmesh-lab-helper"

// HelperMain runs a helper until SIGTERM or SIGINT and returns its exit
// code. args:
//
//	dns ADDR LABDIR              fake upstream DNS server (UDP and TCP)
//	server ADDR BANNER LABDIR    TCP server that writes BANNER and the peer
//
// LABDIR is not used; it marks the process as the lab's in its arguments.
func HelperMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch {
	case len(args) == 3 && args[0] == "dns":
		err = ServeUpstreamDNS(ctx, args[1], log)
	case len(args) == 4 && args[0] == "server":
		err = ServeBanner(ctx, args[1], args[2], log)
	default:
		err = fmt.Errorf("bad arguments %q", args)
	}
	if err != nil {
		log.Error("lab helper failed", "err", err)
		return 1
	}
	return 0
}

// UpstreamAnswer is what the fake upstream answers for every A query in
// UpstreamZone.
var UpstreamAnswer = topo.PublicAddr

// UpstreamHandler answers like a tiny authoritative server for
// UpstreamZone: every name in it has the A record UpstreamAnswer; other
// types get an empty answer, names outside the zone REFUSED.
func UpstreamHandler(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	zone := dns.Fqdn(UpstreamZone)
	switch {
	case name != zone && !strings.HasSuffix(name, "."+zone):
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   UpstreamAnswer.AsSlice(),
		})
	default:
		m.Ns = append(m.Ns, &dns.SOA{
			Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		})
	}
	w.WriteMsg(m)
}

// ServeUpstreamDNS serves UpstreamHandler on addr over UDP and TCP until
// ctx ends.
func ServeUpstreamDNS(ctx context.Context, addr string, log *slog.Logger) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if len(r.Question) == 1 {
			log.Info("query", "from", w.RemoteAddr().String(), "name", r.Question[0].Name, "type", dns.TypeToString[r.Question[0].Qtype])
		}
		UpstreamHandler(w, r)
	})
	servers := []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	log.Info("fake upstream DNS serving", "addr", addr, "zone", UpstreamZone, "answer", UpstreamAnswer)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, s := range servers {
		s.Shutdown()
	}
	if err != nil {
		return fmt.Errorf("serve dns on %s: %w", addr, err)
	}
	return nil
}

// ServeBanner accepts TCP connections on addr until ctx ends and answers
// each with banner, " (you are PEER)" and a newline, then closes it.
func ServeBanner(ctx context.Context, addr, banner string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	log.Info("serving", "addr", ln.Addr().String(), "banner", banner)
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			peer := c.RemoteAddr().String()
			if ap, err := netip.ParseAddrPort(peer); err == nil {
				peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
			}
			log.Info("connection", "from", peer)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, fmt.Sprintf("%s (you are %s)\n", banner, peer))
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			// Drain what the client sends, so the close is no reset.
			io.Copy(io.Discard, c)
		}()
	}
}

// Banner is what the lab's TCP server in container ctr of lab lab says.
func Banner(lab, ctr string) string {
	return fmt.Sprintf("hello from %s in vxmesh lab %s", ctr, lab)
}
