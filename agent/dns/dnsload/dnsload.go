// Package dnsload generates closed-loop DNS query load over UDP and
// measures throughput and latency: the load generator of the DNS
// benchmark (agent/dns), kept out of the server's package.
package dnsload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// dnsHeaderLen is the fixed DNS header: an answer shorter than it is not one.
const dnsHeaderLen = 12

// Options describe a load run: Workers clients, each with its own UDP
// socket, sending one query at a time to Server until Queries have been
// answered in total or Duration has passed.
type Options struct {
	// Netns is the namespace the clients' sockets are opened in; empty is
	// the caller's.
	Netns string
	// Server is where queries go, e.g. dns.ListenAddr.
	Server netip.AddrPort
	// Name and Type are the question (default "web2." A).
	Name string
	Type uint16
	// Workers is the number of concurrent clients (default 4).
	Workers int
	// Queries stops the run after this many answers (0: no limit).
	Queries int
	// Duration stops the run after this long (default 2s when Queries is 0).
	Duration time.Duration
	// Timeout for one answer (default 1s); a timeout counts as an error.
	Timeout time.Duration
}

// Result is what a load run measured.
type Result struct {
	Answered int           // answers received (any rcode)
	Errors   int           // timeouts and unreadable answers
	Elapsed  time.Duration // wall time of the run
	QPS      float64       // Answered / Elapsed
	P50, P99 time.Duration // latency percentiles of answered queries
}

// String is one line: q/s, p50, p99 and counts.
func (r Result) String() string {
	return fmt.Sprintf("%.0f q/s, p50 %v, p99 %v (%d answered, %d errors in %v)",
		r.QPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Answered, r.Errors, r.Elapsed.Round(time.Millisecond))
}

// Run runs a closed-loop query load and reports throughput and latency. It
// is what the DNS benchmark uses; a `vxmesh bench dns` command can run it
// against a lab container.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Name == "" {
		o.Name = "web2."
	}
	if o.Type == 0 {
		o.Type = mdns.TypeA
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Duration <= 0 && o.Queries <= 0 {
		o.Duration = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(o.Name), o.Type)
	query, err := q.Pack()
	if err != nil {
		return Result{}, fmt.Errorf("pack load query: %w", err)
	}

	conns := make([]net.Conn, 0, o.Workers)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() error {
		for range o.Workers {
			c, err := net.Dial("udp", o.Server.String())
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}
	if o.Netns != "" {
		err = netnsutil.Do(o.Netns, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return Result{}, fmt.Errorf("open load sockets: %w", err)
	}

	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		mu       sync.Mutex
		lat      []time.Duration
		errCount int
		left     = o.Queries
	)
	take := func() bool {
		if o.Queries <= 0 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if left == 0 {
			return false
		}
		left--
		return true
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
			defer stop()
			buf := make([]byte, mdns.MaxMsgSize)
			msg := slices.Clone(query)
			var mine []time.Duration
			errs := 0
			id := uint16(w << 12)
			for ctx.Err() == nil && take() {
				id++
				msg[0], msg[1] = byte(id>>8), byte(id)
				t0 := time.Now()
				c.SetReadDeadline(t0.Add(o.Timeout))
				if _, err := c.Write(msg); err != nil {
					errs++
					continue
				}
				for {
					n, err := c.Read(buf)
					if err != nil {
						if ctx.Err() == nil {
							errs++
						}
						break
					}
					if n >= dnsHeaderLen && buf[0] == msg[0] && buf[1] == msg[1] {
						mine = append(mine, time.Since(t0))
						break
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errCount += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := Result{Answered: len(lat), Errors: errCount, Elapsed: time.Since(start)}
	if r.Answered == 0 {
		return r, errors.New("no query was answered")
	}
	slices.Sort(lat)
	r.QPS = float64(r.Answered) / r.Elapsed.Seconds()
	r.P50 = lat[len(lat)*50/100]
	r.P99 = lat[min(len(lat)*99/100, len(lat)-1)]
	return r, nil
}
