package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"slices"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

// The agent's side of runtime attachments (api/attach.go): the requests
// live in the state (pass.State.Attachments, written at once), the pass
// builds them into containers like any other; these methods wait for the
// pass that puts a change in force. *Agent is the pass.Attacher of the
// in-process Docker plugin; attach_http.go serves the same over HTTP.

var _ pass.Attacher = (*Agent)(nil)

// withAttachDefaults fills the request's defaults.
func withAttachDefaults(req api.AttachRequest) api.AttachRequest {
	if req.Placement == "" {
		req.Placement = api.PlacementNetns
	}
	if req.DNSMode == "" {
		req.DNSMode = api.DNSEmbedded
	}
	return req
}

// Attach puts a runtime's container on a network and waits for the pass
// that does it (pass.Attacher; POST /v1/attachments). The same request
// again returns the attachment without a change; a new attachment the
// kernel refuses is removed again.
func (a *Agent) Attach(ctx context.Context, req api.AttachRequest) (api.Attachment, error) {
	req = withAttachDefaults(req)
	if err := req.Validate(); err != nil {
		return api.Attachment{}, herr(http.StatusBadRequest, "bad request: %v", err)
	}
	gen, isNew, err := a.addAttachment(req)
	if err != nil {
		return api.Attachment{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, a.opts.APITimeout)
	defer cancel()
	if err := a.waitApplied(wctx, gen); err != nil {
		return api.Attachment{}, herr(http.StatusGatewayTimeout, "attachment %s: not in force within %s; it stays recorded and will be retried", req.Key(), a.opts.APITimeout)
	}
	got, ok := a.attachment(a.snapshot(), req.Key())
	if !ok {
		return api.Attachment{}, herr(http.StatusConflict, "attachment %s was removed while being made", req.Key())
	}
	if got.State == api.StateError && isNew {
		a.log.Error("attach failed; removing the attachment again", "attachment", req.Key().String(), "err", got.Error)
		if gen, _, rerr := a.removeAttachments(func(r api.AttachRequest) bool { return r.Key() == req.Key() }); rerr == nil {
			a.waitApplied(wctx, gen)
		}
		return api.Attachment{}, herr(http.StatusInternalServerError, "attach %s: %s (undone)", req.Key(), got.Error)
	}
	return got, nil
}

// addAttachment validates and records an attachment; it returns the
// input generation whose pass puts it in force, and whether it is new.
func (a *Agent) addAttachment(req api.AttachRequest) (uint64, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.NetworkByName(req.Network) == nil {
		return 0, false, herr(http.StatusNotFound, "network %q not found", req.Network)
	}
	snap, _ := a.takeSnapshot()
	snap.HostDNS = nil
	i := snap.State.FindAttachment(req.Key())
	if i >= 0 && reflect.DeepEqual(snap.State.Attachments[i], req) {
		return a.gen, false, nil // the same request again: in force or on its way
	}
	if i >= 0 {
		snap.State.Attachments[i] = req
	} else {
		snap.State.Attachments = append(snap.State.Attachments, req)
	}
	d := pass.Build(snap, a.ovl)
	if v := attachedView(d, req.Key()); v == nil || v.Err != nil {
		msg, code := "cannot be attached", http.StatusBadRequest
		var cause error
		if v != nil {
			cause = v.Err
			msg = v.Err.Error()
			switch {
			case errors.Is(v.Err, config.ErrConflict) || errors.Is(v.Err, bridge.ErrTaken):
				code = http.StatusConflict
			case errors.Is(v.Err, overlaystep.ErrIPAMWait):
				code = http.StatusServiceUnavailable
			}
		}
		return 0, false, &httpError{code: code, msg: fmt.Sprintf("attachment %s: %s", req.Key(), msg), cause: cause}
	}
	if err := othersUnchanged(a.last, d, req.Name); err != nil {
		return 0, false, herr(http.StatusConflict, "attachment %s: %v", req.Key(), err)
	}
	err := a.store.Commit(func(st *pass.State) error {
		st.Attachments = snap.State.Attachments
		st.Allocations = d.Allocations
		return nil
	})
	if err != nil {
		return 0, false, herr(http.StatusInternalServerError, "attachment %s: %v", req.Key(), err)
	}
	a.log.Info("container attached by its runtime", "runtime", req.Runtime, "id", req.ID, "name", req.Name, "network", req.Network, "netns", req.Netns, "ifname", req.IfName)
	return a.bump(), i < 0, nil
}

// attachedView is the view holding the attachment k, or nil.
func attachedView(d *pass.Desired, k api.AttachmentKey) *pass.ContainerView {
	for _, v := range d.Containers {
		for _, r := range v.Attached {
			if r.Key() == k {
				return v
			}
		}
	}
	return nil
}

// removeAttachments forgets the attachments match selects and the
// addresses only they held; it returns the generation whose pass removes
// them and their keys.
func (a *Agent) removeAttachments(match func(api.AttachRequest) bool) (uint64, []api.AttachmentKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var removed []api.AttachmentKey
	err := a.store.Commit(func(st *pass.State) error {
		var keep []api.AttachRequest
		for _, r := range st.Attachments {
			if match(r) {
				removed = append(removed, r.Key())
			} else {
				keep = append(keep, r)
			}
		}
		for _, k := range removed {
			i := slices.IndexFunc(st.Attachments, func(r api.AttachRequest) bool { return r.Key() == k })
			r := st.Attachments[i]
			if !slices.ContainsFunc(keep, func(o api.AttachRequest) bool { return o.Name == r.Name && o.Network == r.Network }) {
				delete(st.Allocations[r.Network], r.Name)
			}
		}
		st.Attachments = keep
		return nil
	})
	if err != nil {
		return 0, nil, herr(http.StatusInternalServerError, "remove attachments: %v", err)
	}
	if len(removed) == 0 {
		return a.gen, nil, nil
	}
	for _, k := range removed {
		a.log.Info("container detached by its runtime", "attachment", k.String())
	}
	return a.bump(), removed, nil
}

// Detach removes an attachment and waits for the pass that does
// (pass.Attacher; POST /v1/attachments/detach). Nothing to remove is no
// error: Existed is false.
func (a *Agent) Detach(ctx context.Context, req api.DetachRequest) (api.Detached, error) {
	gen, removed, err := a.removeAttachments(func(r api.AttachRequest) bool {
		return r.Key() == req.AttachmentKey && (req.Network == "" || req.Network == r.Network)
	})
	if err != nil || len(removed) == 0 {
		return api.Detached{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, a.opts.APITimeout)
	defer cancel()
	if err := a.waitApplied(wctx, gen); err != nil {
		return api.Detached{}, herr(http.StatusGatewayTimeout, "attachment %s: removal not applied within %s; it will be retried", req.AttachmentKey, a.opts.APITimeout)
	}
	return api.Detached{Existed: true}, nil
}

// GCAttachments removes a runtime's attachments on a network that are not
// in req.Keep (POST /v1/attachments/gc).
func (a *Agent) GCAttachments(ctx context.Context, req api.GCRequest) (api.GCResult, error) {
	keep := map[api.AttachmentKey]bool{}
	for _, k := range req.Keep {
		keep[k] = true
	}
	gen, removed, err := a.removeAttachments(func(r api.AttachRequest) bool {
		return r.Runtime == req.Runtime && (req.Network == "" || r.Network == req.Network) && !keep[r.Key()]
	})
	if err != nil {
		return api.GCResult{}, err
	}
	out := api.GCResult{Removed: removed}
	if out.Removed == nil {
		out.Removed = []api.AttachmentKey{}
	}
	if len(removed) > 0 {
		wctx, cancel := context.WithTimeout(ctx, a.opts.APITimeout)
		defer cancel()
		if err := a.waitApplied(wctx, gen); err != nil {
			return out, herr(http.StatusGatewayTimeout, "gc: removal not applied within %s; it will be retried", a.opts.APITimeout)
		}
	}
	return out, nil
}

// Attachments lists the attachments of one runtime ("" for all), as the
// last pass left them (pass.Attacher; GET /v1/attachments).
func (a *Agent) Attachments(runtime string) []api.Attachment {
	s := a.snapshot()
	var reqs []api.AttachRequest
	a.store.Read(func(st *pass.State) { reqs = slices.Clone(st.Attachments) })
	out := []api.Attachment{}
	for _, r := range reqs {
		if runtime != "" && r.Runtime != runtime {
			continue
		}
		got, ok := a.attachment(s, r.Key())
		if !ok {
			got = api.Attachment{AttachmentKey: r.Key(), Name: r.Name, Network: r.Network, Netns: r.Netns, Interface: r.IfName, IPs: []api.AttachIP{}, State: api.StatePending}
		}
		out = append(out, got)
	}
	return out
}

// attachment describes attachment k as the snapshot's pass left it.
func (a *Agent) attachment(s *snapshot, k api.AttachmentKey) (api.Attachment, bool) {
	v := attachedView(s.d, k)
	if v == nil {
		return api.Attachment{}, false
	}
	i := slices.IndexFunc(v.Attached, func(r api.AttachRequest) bool { return r.Key() == k })
	r := v.Attached[i]
	out := api.Attachment{
		AttachmentKey: k, Name: r.Name, Network: r.Network, Netns: r.Netns, Interface: r.IfName,
		IPs: []api.AttachIP{}, DNS: api.AttachDNS{Nameservers: []string{"127.0.0.11"}},
	}
	c := s.container(v)
	out.State, out.Error = c.State, c.Error
	if r.DNSMode == api.DNSNone {
		out.DNS = api.AttachDNS{}
	}
	out.Ports = c.Ports
	if i >= len(v.Interfaces) {
		return out, true // not attached (v.Err says why)
	}
	ifc := v.Interfaces[i]
	out.MAC = s.macs[bridge.MACKey(v.Netns, ifc.Network)]
	if mac := bridge.AddrMAC(ifc.Addr.Addr()); out.MAC == "" && mac != nil {
		out.MAC = mac.String() // what a new interface gets (Docker's CreateEndpoint asks before Join)
	}
	out.HostInterface = bridge.HostVethName(v.Netns, ifc.Network)
	if pass.HostPlaced(r) && !r.Reserve {
		out.HostPeer = pass.HostPeerName(v.Netns, ifc.Network)
	}
	out.MTU = ifc.MTU
	ip := api.AttachIP{Address: ifc.Addr.String()}
	if n := s.cfg.NetworkByName(ifc.Network); n != nil && n.Gateway.IsValid() {
		ip.Gateway = n.Gateway.String()
	}
	out.IPs = append(out.IPs, ip)
	if ifc.Gateway.IsValid() {
		dst := "0.0.0.0/0"
		if ifc.Gateway.Is6() {
			dst = "::/0"
		}
		out.Routes = []api.AttachRoute{{Dst: dst, Gateway: ifc.Gateway.String()}}
	}
	return out, true
}

// ReserveAddress holds an address on a network through its pool (the
// cluster IPAM on overlays) until ReleaseAddress (pass.Attacher).
func (a *Agent) ReserveAddress(ctx context.Context, network string, want netip.Addr, v6 bool) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	snap, _ := a.takeSnapshot()
	ip, err := pass.ReserveAddress(snap, a.ovl, network, want, v6)
	if err != nil {
		return netip.Addr{}, err
	}
	err = a.store.Commit(func(st *pass.State) error {
		if st.Reserved == nil {
			st.Reserved = map[string][]netip.Addr{}
		}
		if !slices.Contains(st.Reserved[network], ip) {
			st.Reserved[network] = append(st.Reserved[network], ip)
		}
		return nil
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reserve %s on %q: %w", ip, network, err)
	}
	return ip, nil
}

// ReleaseAddress gives back an address ReserveAddress held
// (pass.Attacher); one not held is no error.
func (a *Agent) ReleaseAddress(ctx context.Context, network string, addr netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store.Commit(func(st *pass.State) error {
		if st.Reserved == nil {
			return nil
		}
		st.Reserved[network] = slices.DeleteFunc(st.Reserved[network], func(ip netip.Addr) bool { return ip == addr })
		if len(st.Reserved[network]) == 0 {
			delete(st.Reserved, network)
		}
		return nil
	})
}

// Networks are the networks of the config in force (pass.Attacher).
func (a *Agent) Networks() []config.Network {
	return slices.Clone(a.Config().Networks)
}
