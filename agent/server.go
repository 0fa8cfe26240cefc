package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/overlaystep"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/agent/portstep"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
)

// handler routes the API (see package api for the list).
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.hStatus)
	mux.HandleFunc("GET /v1/networks", a.hNetworks)
	mux.HandleFunc("GET /v1/endpoints", a.hEndpoints)
	mux.HandleFunc("GET /v1/peers", a.hPeers)
	mux.HandleFunc("GET /v1/inspect", a.hInspect)
	mux.HandleFunc("GET /v1/containers", a.hContainers)
	mux.HandleFunc("GET /v1/containers/{name}", a.hContainer)
	mux.HandleFunc("GET /v1/containers/{name}/exec", a.hExec)
	mux.HandleFunc("GET /v1/containers/{name}/ports", a.hPorts)
	mux.HandleFunc("POST /v1/containers", a.hRun)
	mux.HandleFunc("DELETE /v1/containers/{name}", a.hRemove)
	a.attachRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return mux
}

func (a *Agent) hPeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, overlaystep.Peers(a.snapshot().gossip()))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, a...)})
}

// snapshot is what the read endpoints describe: the last pass's value
// and how it went. Read endpoints never build or change desired state.
type snapshot struct {
	cfg     *config.Config
	d       *pass.Desired // the last pass's (an empty one before the first)
	last    *pass.Desired // the last applied pass's (nil before the first)
	results map[string]error
	macs    map[string]string
	ports   map[string]portstep.View // what the last pass published
	pending []*pass.ContainerView    // inputs the last pass had not seen yet
}

func (a *Agent) snapshot() *snapshot {
	a.mu.Lock()
	d, applied, cfg := a.last, a.lastApplied, a.cfg
	s := &snapshot{cfg: cfg, d: d, results: a.results, ports: a.ports.View()}
	a.mu.Unlock()
	if d == nil {
		s.d = &pass.Desired{Snapshot: &pass.Snapshot{Config: cfg}}
	} else {
		s.cfg = d.Config
	}
	if applied {
		s.last = d
	}
	a.store.Read(func(st *pass.State) {
		s.macs = maps.Clone(st.Bridge.MACs)
		for _, c := range st.Containers {
			if s.d.Container(c.Name) == nil {
				s.pending = append(s.pending, &pass.ContainerView{Spec: config.Container{Name: c.Name, Mode: c.Mode, Networks: c.Networks}, Source: api.SourceAPI})
			}
		}
	})
	for _, c := range cfg.Containers {
		if s.d.Container(c.Name) == nil {
			s.pending = append(s.pending, &pass.ContainerView{Spec: c, Source: api.SourceConfig})
		}
	}
	return s
}

// gossip is the last pass's gossip view (nil without a cluster).
func (s *snapshot) gossip() *pass.GossipView { return s.d.Gossip }

// applied reports whether the last pass applied v as it is now.
func (s *snapshot) applied(v *pass.ContainerView) bool {
	if s.last == nil {
		return false
	}
	w := s.last.Container(v.Spec.Name)
	if w == nil || w.Netns != v.Netns || len(w.Interfaces) != len(v.Interfaces) || (w.Err == nil) != (v.Err == nil) {
		return false
	}
	for i := range v.Interfaces {
		x, y := v.Interfaces[i], w.Interfaces[i]
		if x.Network != y.Network || x.IfName != y.IfName || x.Addr != y.Addr {
			return false
		}
	}
	return true
}

func (s *snapshot) netDriver(name string) string {
	if n := s.cfg.NetworkByName(name); n != nil {
		return n.Driver
	}
	return ""
}

func (s *snapshot) endpoints(v *pass.ContainerView) []api.Endpoint {
	var out []api.Endpoint
	for i, ifc := range v.Interfaces {
		e := api.Endpoint{
			Container: v.Spec.Name,
			Network:   ifc.Network,
			Host:      s.cfg.Host.Name,
			IP:        addrString(ifc.Addr),
			IP6:       addrString(ifc.Addr6),
			MAC:       s.macs[bridge.MACKey(v.Netns, ifc.Network)],
			Interface: ifc.IfName,
			Netns:     v.Netns,
			Local:     true,
		}
		if i < len(v.Attached) {
			e.Runtime, e.RuntimeID = v.Attached[i].Runtime, v.Attached[i].ID
		}
		switch s.netDriver(ifc.Network) {
		case config.DriverBridge:
			e.HostInterface = bridge.HostVethName(v.Netns, ifc.Network)
		case config.DriverOverlay:
			e.HostInterface = bridge.HostVethName(v.Netns, ifc.Network)
			e.VTEP = s.cfg.Host.Address.String()
		}
		out = append(out, e)
	}
	return out
}

// container describes one view with its state.
func (s *snapshot) container(v *pass.ContainerView) api.Container {
	c := api.Container{Name: v.Spec.Name, Netns: v.Netns, Mode: v.Spec.Mode, Networks: v.Spec.Networks, Source: v.Source, Endpoints: s.endpoints(v)}
	state := func(v *pass.ContainerView) (string, string) {
		switch {
		case v.Err != nil:
			return api.StateError, joinLines(v.Err)
		case s.results[v.Spec.Name] != nil && s.applied(v):
			return api.StateError, joinLines(s.results[v.Spec.Name])
		case v.Spec.Mode == config.ModeHost:
			return api.StateOK, ""
		case !s.applied(v):
			return api.StatePending, ""
		}
		return api.StateOK, ""
	}
	c.State, c.Error = state(v)
	if v.Joins != "" && v.Err == nil {
		if other := s.d.Container(v.Joins); other != nil {
			c.State, c.Error = state(other)
		}
	}
	if pv := s.ports[v.Spec.Name]; c.State == api.StateOK {
		c.Ports = apiPorts(pv.Mappings)
		if pv.Err != nil {
			c.State, c.Error = api.StateError, "ports refused: "+joinLines(pv.Err)
		}
	}
	return c
}

func (s *snapshot) containers() []api.Container {
	out := []api.Container{}
	for _, v := range s.d.Containers {
		out = append(out, s.container(v))
	}
	for _, v := range s.pending {
		out = append(out, api.Container{Name: v.Spec.Name, Mode: v.Spec.Mode, Networks: v.Spec.Networks, Source: v.Source, State: api.StatePending})
	}
	return out
}

func (s *snapshot) networks() []api.Network {
	out := []api.Network{}
	for i := range s.cfg.Networks {
		n := &s.cfg.Networks[i]
		an := api.Network{Name: n.Name, Driver: n.Driver, Subnet: prefixString(n.Subnet), Internal: n.Internal, MTU: n.MTU}
		dualStack(&an, n)
		if n.Gateway.IsValid() {
			an.Gateway = n.Gateway.String()
		}
		if n.IPRange.IsValid() {
			an.IPRange = n.IPRange.String()
		}
		bn := pass.BridgeNetwork(n)
		an.MTU = bn.MTU
		switch n.Driver {
		case config.DriverBridge:
			an.Device = bn.Device
		case config.DriverOverlay:
			an.Device, an.VNI = bn.Device, n.VNI
		default:
			an.Device = n.Parent
		}
		out = append(out, an)
	}
	return out
}

func (a *Agent) hStatus(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	a.mu.Lock()
	st := api.Status{
		Host: s.cfg.Host.Name, Config: a.opts.ConfigPath,
		Peers: []api.Peer{}, Conflicts: slices.Clone(s.d.Conflicts), LastReconcile: a.lastPass,
	}
	if a.lastErr != nil {
		st.LastError = joinLines(a.lastErr)
	}
	a.mu.Unlock()
	if s.cfg.Host.Address.IsValid() {
		st.Address = s.cfg.Host.Address.String()
	}
	if st.Conflicts == nil {
		st.Conflicts = []string{}
	}
	st.Networks = s.networks()
	st.Containers = s.containers()
	st.DNS = a.dns.Stats()
	for _, c := range st.Containers {
		st.Endpoints.Local += len(c.Endpoints)
	}
	// The cluster view (agent/overlaystep), as the last pass saw it; its
	// conflicts are in the pass's Conflicts.
	a.ovl.DecorateNetworks(s.cfg, st.Networks)
	st.Peers, st.Overlay, st.Gossip = overlaystep.Peers(s.gossip()), a.ovl.Status(s.cfg), overlaystep.GossipStatus(s.gossip())
	if s.last != nil {
		st.Endpoints.Remote = len(s.last.Remote)
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *Agent) hNetworks(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	nets := s.networks()
	a.ovl.DecorateNetworks(s.cfg, nets)
	writeJSON(w, http.StatusOK, nets)
}

func (a *Agent) hEndpoints(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	net := r.URL.Query().Get("network")
	if net != "" && s.cfg.NetworkByName(net) == nil {
		writeErr(w, http.StatusNotFound, "network %q not found", net)
		return
	}
	out := []api.Endpoint{}
	for _, v := range s.d.Containers {
		if v.Err != nil {
			continue
		}
		for _, e := range s.endpoints(v) {
			if net == "" || e.Network == net {
				out = append(out, e)
			}
		}
	}
	out = append(out, a.ovl.RemoteEndpoints(s.gossip(), net)...)
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) hContainers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.snapshot().containers())
}

func (a *Agent) hContainer(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	v := s.d.Container(r.PathValue("name"))
	if v == nil {
		writeErr(w, http.StatusNotFound, "container %q not found", r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, s.container(v))
}

func (a *Agent) hExec(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	name := r.PathValue("name")
	v := s.d.Container(name)
	if v == nil {
		writeErr(w, http.StatusNotFound, "container %q not found", name)
		return
	}
	if v.Err != nil {
		writeErr(w, http.StatusConflict, "container %q is not attached: %s", name, joinLines(v.Err))
		return
	}
	info := api.ExecInfo{Container: name, Netns: v.Netns}
	if v.Netns == "" {
		info.NetnsPath = a.hostNetnsPath()
	} else {
		info.NetnsPath = "/run/netns/" + v.Netns
		if _, err := os.Stat(info.NetnsPath); err != nil {
			writeErr(w, http.StatusConflict, "container %q has no namespace yet (netns %q)", name, v.Netns)
			return
		}
		if _, err := os.Stat(a.etcDir(v.Netns)); err == nil {
			info.EtcDir = a.etcDir(v.Netns)
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// httpError carries a status code.
type httpError struct {
	code  int
	msg   string
	cause error // what errors.Is may look for (ErrIPAMWait); nil when none
}

// Error returns the message.
func (e *httpError) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *httpError) Unwrap() error { return e.cause }

func herr(code int, format string, a ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, a...)}
}

func (a *Agent) hRun(w http.ResponseWriter, r *http.Request) {
	var spec api.ContainerSpec
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		writeErr(w, http.StatusBadRequest, "bad request: %v", err)
		return
	}
	c, err := spec.ToConfig()
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad request: %v", err)
		return
	}
	got, err := a.RunContainer(r.Context(), c)
	if err != nil {
		code := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeErr(w, code, "%s", joinLines(err))
		return
	}
	writeJSON(w, http.StatusCreated, got)
}

// RunContainer attaches a container at run time (what POST
// /v1/containers does): it validates c against the config and the other
// run-time containers, reserves its addresses, persists it, and waits for
// the pass that attaches it. A bad or clashing container changes nothing;
// one the kernel refuses is removed again and the error returned.
func (a *Agent) RunContainer(ctx context.Context, c config.Container) (*api.Container, error) {
	gen, err := a.addRuntime(c)
	if err != nil {
		return nil, err
	}
	defer a.doneRuntime(c.Name)
	wctx, cancel := context.WithTimeout(ctx, a.opts.APITimeout)
	defer cancel()
	if err := a.waitApplied(wctx, gen); err != nil {
		return nil, herr(http.StatusGatewayTimeout, "container %q: not attached within %s; it stays configured and will be retried (see status)", c.Name, a.opts.APITimeout)
	}
	s := a.snapshot()
	v := s.d.Container(c.Name)
	if v == nil {
		return nil, herr(http.StatusConflict, "container %q was removed while being attached", c.Name)
	}
	got := s.container(v)
	if got.State == api.StateError {
		// Undo: a run that failed leaves nothing behind.
		a.log.Error("run failed; removing the container again", "container", c.Name, "err", got.Error)
		if gen, rerr := a.removeRuntime(c.Name, true); rerr == nil {
			a.waitApplied(wctx, gen)
		}
		return nil, herr(http.StatusInternalServerError, "attach container %q: %s (undone)", c.Name, got.Error)
	}
	return &got, nil
}

// addRuntime validates and records a run-time container; it returns the
// input generation whose pass attaches it.
func (a *Agent) addRuntime(c config.Container) (uint64, error) {
	c = pass.WithDefaults(c)
	a.mu.Lock()
	defer a.mu.Unlock()
	snap, _ := a.takeSnapshot()
	snap.HostDNS = nil
	if c.Name != "" && (a.cfg.ContainerByName(c.Name) != nil || runtimeIndex(snap.State, c.Name) >= 0 || a.runtimeBusy[c.Name]) {
		return 0, herr(http.StatusConflict, "container %q exists", c.Name)
	}
	for _, n := range c.Networks {
		if a.cfg.NetworkByName(n) == nil {
			return 0, herr(http.StatusNotFound, "network %q not found", n)
		}
	}
	all := *a.cfg
	all.Containers = append(slices.Clone(a.cfg.Containers), snap.Runtime...)
	if err := config.ValidateContainer(&all, &c); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, config.ErrConflict) {
			code = http.StatusConflict
		}
		return 0, herr(code, "container %q: %s", c.Name, joinLines(err))
	}
	// Addresses: the container must get every one it asks for without
	// moving anybody else's.
	snap.Runtime = append(snap.Runtime, c)
	d := pass.Build(snap, a.ovl)
	v := d.Container(c.Name)
	if v == nil || v.Err != nil {
		msg := "cannot be attached"
		if v != nil {
			msg = v.Err.Error()
		}
		code := http.StatusBadRequest
		if v != nil && (errors.Is(v.Err, config.ErrConflict) || errors.Is(v.Err, bridge.ErrTaken)) {
			code = http.StatusConflict
		}
		if v != nil && errors.Is(v.Err, overlaystep.ErrIPAMWait) {
			code = http.StatusServiceUnavailable // the overlay's cluster IPAM: retry in a moment
		}
		return 0, herr(code, "container %q: %s", c.Name, msg)
	}
	if err := othersUnchanged(a.last, d, c.Name); err != nil {
		return 0, herr(http.StatusConflict, "container %q: %v", c.Name, err)
	}
	if code, err := a.ports.CheckRun(d, c.Name, snap.State.Ports.Assignments); err != nil {
		return 0, herr(code, "%s", joinLines(err))
	}
	err := a.store.Commit(func(st *pass.State) error {
		st.Containers = append(st.Containers, api.SpecFromConfig(c))
		st.Allocations = d.Allocations
		return nil
	})
	if err != nil {
		return 0, herr(http.StatusInternalServerError, "container %q: %v", c.Name, err)
	}
	a.runtimeBusy[c.Name] = true
	a.log.Info("container added through the API", "container", c.Name, "networks", c.Networks, "mode", c.Mode)
	return a.bump(), nil
}

// othersUnchanged checks that adding name moves no address of the
// containers the last pass attached.
func othersUnchanged(last, next *pass.Desired, name string) error {
	if last == nil {
		return nil
	}
	for _, v := range last.Containers {
		if v.Err != nil || v.Spec.Name == name {
			continue
		}
		w := next.Container(v.Spec.Name)
		if w == nil {
			continue // removed (rm) since the last pass: not ours to keep
		}
		if w.Err != nil {
			return fmt.Errorf("would detach container %q", v.Spec.Name)
		}
		for i, ifc := range v.Interfaces {
			if i >= len(w.Interfaces) || w.Interfaces[i].Addr != ifc.Addr {
				return fmt.Errorf("address %s is taken by container %q", ifc.Addr.Addr(), v.Spec.Name)
			}
		}
	}
	return nil
}

func (a *Agent) doneRuntime(name string) {
	a.mu.Lock()
	delete(a.runtimeBusy, name)
	a.mu.Unlock()
}

// runtimeIndex finds a run-time container in st.
func runtimeIndex(st *pass.State, name string) int {
	return slices.IndexFunc(st.Containers, func(s api.ContainerSpec) bool { return s.Name == name })
}

// removeRuntime forgets a run-time container; undo skips the busy check
// (RunContainer undoing its own add).
func (a *Agent) removeRuntime(name string, undo bool) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.store.Commit(func(st *pass.State) error {
		i := runtimeIndex(st, name)
		if i < 0 {
			if a.cfg.ContainerByName(name) != nil {
				return herr(http.StatusConflict, "container %q is defined in the config file %s; remove it there", name, a.opts.ConfigPath)
			}
			return herr(http.StatusNotFound, "container %q not found", name)
		}
		if a.runtimeBusy[name] && !undo {
			return herr(http.StatusConflict, "container %q is being attached; try again", name)
		}
		for n, m := range st.Allocations {
			delete(m, name)
			if len(m) == 0 {
				delete(st.Allocations, n)
			}
		}
		st.Containers = slices.Delete(st.Containers, i, i+1)
		return nil
	})
	var he *httpError
	if err != nil && !errors.As(err, &he) {
		err = herr(http.StatusInternalServerError, "remove container %q: %v", name, err)
	}
	if err != nil {
		return 0, err
	}
	a.log.Info("container removed through the API", "container", name)
	return a.bump(), nil
}

// RemoveContainer detaches a run-time container (DELETE
// /v1/containers/{name}) and waits for the pass that removes it.
func (a *Agent) RemoveContainer(ctx context.Context, name string) error {
	gen, err := a.removeRuntime(name, false)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, a.opts.APITimeout)
	defer cancel()
	if err := a.waitApplied(wctx, gen); err != nil {
		return herr(http.StatusGatewayTimeout, "container %q: removal not applied within %s; it will be retried", name, a.opts.APITimeout)
	}
	return nil
}

func (a *Agent) hRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.RemoveContainer(r.Context(), name); err != nil {
		code := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeErr(w, code, "%s", joinLines(err))
		return
	}
	writeJSON(w, http.StatusOK, api.Removed{Removed: name})
}

// apiPorts converts mappings for the API.
func apiPorts(ms []portmap.Mapping) []api.PortMapping {
	out := make([]api.PortMapping, 0, len(ms))
	for _, m := range ms {
		p := api.PortMapping{Proto: m.Proto, HostPort: m.HostPort, ContainerIP: m.ContainerIP.String(), ContainerPort: m.ContainerPort}
		if m.HostIP.IsValid() {
			p.HostIP = m.HostIP.String()
		}
		out = append(out, p)
	}
	return out
}

// hPorts serves GET /v1/containers/{name}/ports.
func (a *Agent) hPorts(w http.ResponseWriter, r *http.Request) {
	s := a.snapshot()
	name := r.PathValue("name")
	if s.d.Container(name) == nil {
		writeErr(w, http.StatusNotFound, "container %q not found", name)
		return
	}
	pv := s.ports[name]
	out := api.Ports{Container: name, Ports: apiPorts(pv.Mappings)}
	if pv.Err != nil {
		out.Error = joinLines(pv.Err)
	}
	writeJSON(w, http.StatusOK, out)
}
