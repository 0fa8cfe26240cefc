package main

import (
	"fmt"
	"net"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxmesh/vxmesh/agent/api"
)

// result turns the agent's attachment into a CNI result: the host end of
// the veth, then the container end (with its sandbox), the addresses on
// the container end, the routes, and dns with the agent's resolver.
func result(att *api.Attachment, search []string) (*types100.Result, error) {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if att.HostInterface != "" {
		r.Interfaces = append(r.Interfaces, &types100.Interface{Name: att.HostInterface, Mtu: att.MTU})
	}
	r.Interfaces = append(r.Interfaces, &types100.Interface{
		Name: att.Interface, Mac: att.MAC, Mtu: att.MTU, Sandbox: att.Netns,
	})
	ctr := len(r.Interfaces) - 1
	for _, ip := range att.IPs {
		addr, err := types.ParseCIDR(ip.Address)
		if err != nil {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("agent answered address %q", ip.Address), err.Error())
		}
		c := &types100.IPConfig{Interface: types100.Int(ctr), Address: *addr}
		if ip.Gateway != "" {
			if c.Gateway = net.ParseIP(ip.Gateway); c.Gateway == nil {
				return nil, types.NewError(types.ErrInternal, fmt.Sprintf("agent answered gateway %q", ip.Gateway), "")
			}
		}
		r.IPs = append(r.IPs, c)
	}
	for _, rt := range att.Routes {
		_, dst, err := net.ParseCIDR(rt.Dst)
		if err != nil {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("agent answered route %q", rt.Dst), err.Error())
		}
		route := &types.Route{Dst: *dst}
		if rt.Gateway != "" {
			route.GW = net.ParseIP(rt.Gateway)
		}
		r.Routes = append(r.Routes, route)
	}
	r.DNS = types.DNS{
		Nameservers: slices.Clone(att.DNS.Nameservers),
		Search:      appendNew(slices.Clone(att.DNS.Search), search...),
		Options:     slices.Clone(att.DNS.Options),
	}
	return r, nil
}

// appendNew appends the values of add not yet in s.
func appendNew(s []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(s, a) {
			s = append(s, a)
		}
	}
	return s
}

// compareResult says how the agent's attachment differs from what ADD
// returned ("" when it does not): the container interface's name and MAC
// and the addresses. The agent has already compared itself with the
// kernel; this catches an agent that re-created the attachment
// differently since.
func compareResult(prev *types100.Result, att *api.Attachment) string {
	var ctr *types100.Interface
	for _, i := range prev.Interfaces {
		if i.Sandbox != "" {
			ctr = i
		}
	}
	if ctr == nil {
		return "prevResult names no interface in the container"
	}
	if ctr.Name != att.Interface {
		return fmt.Sprintf("interface %q, agent has %q", ctr.Name, att.Interface)
	}
	if ctr.Mac != "" && att.MAC != "" && !sameMAC(ctr.Mac, att.MAC) {
		return fmt.Sprintf("%s: MAC %s, agent has %s", ctr.Name, ctr.Mac, att.MAC)
	}
	var had, has []string
	for _, ip := range prev.IPs {
		had = append(had, ip.Address.String())
	}
	for _, ip := range att.IPs {
		has = append(has, ip.Address)
	}
	slices.Sort(had)
	slices.Sort(has)
	if !slices.Equal(had, has) {
		return fmt.Sprintf("%s: addresses %v, agent has %v", ctr.Name, had, has)
	}
	return ""
}

func sameMAC(a, b string) bool {
	ma, err1 := net.ParseMAC(a)
	mb, err2 := net.ParseMAC(b)
	return err1 == nil && err2 == nil && slices.Equal(ma, mb)
}
