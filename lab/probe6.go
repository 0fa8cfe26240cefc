package lab

import (
	"context"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pingFamily is what Ping needs of one address family.
type pingFamily struct {
	network, listen string
	proto           int // for icmp.ParseMessage
	echo, reply     icmp.Type
}

var (
	pingV4 = pingFamily{"ip4:icmp", "0.0.0.0", 1, ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply}
	pingV6 = pingFamily{"ip6:ipv6-icmp", "::", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply}
)

// Resolve6 looks name up like Resolve, asking for AAAA records.
func Resolve6(ctx context.Context, netns, name string, timeout time.Duration) (*Resolution, error) {
	return resolve(ctx, netns, name, dns.TypeAAAA, timeout)
}

// InterfaceAddr6 is InterfaceAddr's IPv6 twin: ifname's first global
// IPv6 address in netns.
func InterfaceAddr6(netns, ifname string) (netip.Addr, error) {
	return interfaceAddr(netns, ifname, netlink.FAMILY_V6)
}

// queryA asks server for name's A records from inside netns.
func queryA(ctx context.Context, netns string, server netip.AddrPort, name string, timeout time.Duration) (*Resolution, error) {
	return query(ctx, netns, server, name, dns.TypeA, timeout)
}
