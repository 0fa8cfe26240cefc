package dockerplugin

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Pure decisions of the IPAM and network-creation calls: which vxmesh
// network a Docker request means, and the pool IDs that name it. See the
// package comment for why the clues are read in this order.

// anyPool4 is the one IPv4 pool libnetwork does not check for overlap with
// the routes of dockerd's namespace (types.IsIPNetValid).
const anyPool4 = "0.0.0.0/0"

// poolPrefix starts every pool ID we hand out.
const poolPrefix = "vxmesh:"

// poolID is a parsed pool ID: "vxmesh:NETWORK:v4" or ":v6", with
// ":RANGE" appended for --ip-range. Network names hold no ':'.
type poolID struct {
	Network string
	V6      bool
	Range   netip.Prefix
}

// String writes the pool ID Docker stores.
func (p poolID) String() string {
	fam := "v4"
	if p.V6 {
		fam = "v6"
	}
	s := poolPrefix + p.Network + ":" + fam
	if p.Range.IsValid() {
		s += ":" + p.Range.String()
	}
	return s
}

// parsePoolID reads a pool ID written by poolID.String.
func parsePoolID(s string) (poolID, error) {
	rest, ok := strings.CutPrefix(s, poolPrefix)
	if !ok {
		return poolID{}, fmt.Errorf("pool %q is not a vxmesh pool", s)
	}
	// The range may be IPv6 and hold ':' itself: split at most twice.
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) < 2 || parts[0] == "" {
		return poolID{}, fmt.Errorf("pool %q is not a vxmesh pool", s)
	}
	p := poolID{Network: parts[0]}
	switch parts[1] {
	case "v4":
	case "v6":
		p.V6 = true
	default:
		return poolID{}, fmt.Errorf("pool %q: unknown family %q", s, parts[1])
	}
	if len(parts) == 3 {
		r, err := netip.ParsePrefix(parts[2])
		if err != nil {
			return poolID{}, fmt.Errorf("pool %q: range: %w", s, err)
		}
		p.Range = r
	}
	return p, nil
}

// subnetOf is the network's subnet of one family (invalid when absent).
func subnetOf(n Network, v6 bool) netip.Prefix {
	if v6 {
		return n.Subnet6
	}
	return n.Subnet
}

// gatewayOf is the network's gateway of one family (invalid when absent).
func gatewayOf(n Network, v6 bool) netip.Addr {
	if v6 {
		return n.Gateway6
	}
	return n.Gateway
}

// networkNames lists the names for error messages.
func networkNames(nets []Network) string {
	names := make([]string, 0, len(nets))
	for _, n := range nets {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// findNetwork returns the network named name.
func findNetwork(nets []Network, name string) (Network, error) {
	for _, n := range nets {
		if n.Name == name {
			return n, nil
		}
	}
	return Network{}, fmt.Errorf("no vxmesh network %q (vxmesh networks: %s)", name, networkNames(nets))
}

// parsePrefixArg parses a CIDR Docker passed on, naming what it is.
func parsePrefixArg(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse %s %q: %w", what, s, err)
	}
	return p, nil
}

// choosePool answers RequestPool: the network the request means, as a
// pool ID, pool and gateway.
func choosePool(nets []Network, req requestPoolRequest) (requestPoolResponse, error) {
	var pool, sub netip.Prefix
	var err error
	if req.Pool != "" {
		if pool, err = parsePrefixArg("subnet", req.Pool); err != nil {
			return requestPoolResponse{}, err
		}
	}
	if req.SubPool != "" {
		if !pool.IsValid() {
			return requestPoolResponse{}, errors.New("an ip range needs a subnet: add --subnet")
		}
		if sub, err = parsePrefixArg("ip range", req.SubPool); err != nil {
			return requestPoolResponse{}, err
		}
	}
	n, err := poolNetwork(nets, req.Options[OptNetwork], pool, req.V6)
	if err != nil {
		return requestPoolResponse{}, err
	}
	subnet := subnetOf(n, req.V6)
	if !subnet.IsValid() {
		return requestPoolResponse{}, fmt.Errorf("vxmesh network %q has no IPv6 subnet", n.Name)
	}
	if pool.IsValid() && pool.Masked() != subnet {
		return requestPoolResponse{}, fmt.Errorf("subnet %s is not vxmesh network %q's subnet %s", pool, n.Name, subnet)
	}
	if sub.IsValid() {
		sub = sub.Masked()
		if sub.Bits() < subnet.Bits() || !subnet.Contains(sub.Addr()) {
			return requestPoolResponse{}, fmt.Errorf("ip range %s is not inside vxmesh network %q's subnet %s", sub, n.Name, subnet)
		}
	}
	resp := requestPoolResponse{
		PoolID: poolID{Network: n.Name, V6: req.V6, Range: sub}.String(),
		Pool:   subnet.String(),
	}
	if !pool.IsValid() && !req.V6 {
		resp.Pool = anyPool4
	}
	if gw := gatewayOf(n, req.V6); gw.IsValid() {
		resp.Data = map[string]string{optGateway: netip.PrefixFrom(gw, subnet.Bits()).String()}
	}
	return resp, nil
}

// poolNetwork picks the network of a RequestPool: by name, else by
// subnet, else the only overlay network (of the family asked for).
func poolNetwork(nets []Network, name string, pool netip.Prefix, v6 bool) (Network, error) {
	if name != "" {
		return findNetwork(nets, name)
	}
	if pool.IsValid() {
		for _, n := range nets {
			if subnetOf(n, v6) == pool.Masked() {
				return n, nil
			}
		}
		return Network{}, fmt.Errorf("subnet %s is no vxmesh network's (vxmesh networks: %s)", pool, networkNames(nets))
	}
	var overlays []Network
	for _, n := range nets {
		if n.Driver == "overlay" && subnetOf(n, v6).IsValid() {
			overlays = append(overlays, n)
		}
	}
	if len(overlays) == 1 {
		return overlays[0], nil
	}
	return Network{}, fmt.Errorf("say which vxmesh network: --ipam-opt %s=NAME or --subnet SUBNET (vxmesh networks: %s)", OptNetwork, networkNames(nets))
}

// gatewayAddress answers a RequestAddress for a network's gateway: the
// network's own, which want (--gateway) may only repeat.
func gatewayAddress(n Network, v6 bool, want netip.Addr) (netip.Prefix, error) {
	gw := gatewayOf(n, v6)
	if !gw.IsValid() {
		return netip.Prefix{}, fmt.Errorf("vxmesh network %q has no gateway", n.Name)
	}
	if want.IsValid() && want.Unmap() != gw {
		return netip.Prefix{}, fmt.Errorf("vxmesh network %q's gateway is %s, not %s", n.Name, gw, want)
	}
	return netip.PrefixFrom(gw, subnetOf(n, v6).Bits()), nil
}

// createNetworkClue is one hint at the vxmesh network in a CreateNetwork.
type createNetworkClue struct {
	from    string // for messages: "-o vxmesh.network", "IPv4 pool", ...
	network string
}

// chooseNetwork picks the vxmesh network of a CreateNetwork: the -o
// option and the IPAM data must all point at the same one.
func chooseNetwork(nets []Network, name string, v4, v6 []ipamData) (Network, error) {
	var clues []createNetworkClue
	if name != "" {
		if _, err := findNetwork(nets, name); err != nil {
			return Network{}, err
		}
		clues = append(clues, createNetworkClue{"-o " + OptNetwork, name})
	}
	for _, fam := range []struct {
		data []ipamData
		v6   bool
	}{{v4, false}, {v6, true}} {
		for _, d := range fam.data {
			c, err := ipamClue(nets, d, fam.v6)
			if err != nil {
				return Network{}, err
			}
			if c.network != "" {
				clues = append(clues, c)
			}
		}
	}
	if len(clues) == 0 {
		return Network{}, fmt.Errorf("say which vxmesh network: -o %s=NAME (vxmesh networks: %s)", OptNetwork, networkNames(nets))
	}
	for _, c := range clues[1:] {
		if c.network != clues[0].network {
			return Network{}, fmt.Errorf("%s names vxmesh network %q but %s is vxmesh network %q's", clues[0].from, clues[0].network, c.from, c.network)
		}
	}
	return findNetwork(nets, clues[0].network)
}

// ipamClue reads the network one IPAM data entry points at: its pool when
// real, else its gateway. A pool or gateway of no vxmesh network means
// Docker's own IPAM made it.
func ipamClue(nets []Network, d ipamData, v6 bool) (createNetworkClue, error) {
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	if d.Pool != "" && d.Pool != anyPool4 {
		pool, err := parsePrefixArg(fam+" pool", d.Pool)
		if err != nil {
			return createNetworkClue{}, err
		}
		for _, n := range nets {
			if subnetOf(n, v6) == pool.Masked() {
				return createNetworkClue{fam + " subnet " + pool.Masked().String(), n.Name}, nil
			}
		}
		return createNetworkClue{}, fmt.Errorf("%s subnet %s is no vxmesh network's: create the network with --ipam-driver vxmesh", fam, pool)
	}
	if d.Gateway == "" {
		return createNetworkClue{}, nil
	}
	gw, err := parsePrefixArg(fam+" gateway", d.Gateway)
	if err != nil {
		return createNetworkClue{}, err
	}
	for _, n := range nets {
		if gatewayOf(n, v6) == gw.Addr().Unmap() {
			return createNetworkClue{fam + " gateway " + gw.Addr().String(), n.Name}, nil
		}
	}
	return createNetworkClue{}, fmt.Errorf("%s gateway %s is no vxmesh network's: create the network with --ipam-driver vxmesh", fam, gw.Addr())
}
