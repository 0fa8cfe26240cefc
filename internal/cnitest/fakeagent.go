// Package cnitest holds what the tests of vxmesh's runtime integrations
// share: a fake agent that speaks the attach API (agent/api/attach.go) on a
// unix socket without touching the kernel, a cnitool built from the module
// proxy, and a podman confined to a lab host's namespace and private
// directories.
//
// It is a test harness: nothing in a production package imports it.
package cnitest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
)

// FakeAgent answers the attach API from memory. Networks it knows are on
// 10.200.0.0/16 with gateway 10.200.0.1; addresses count up from .2.
type FakeAgent struct {
	// Socket is where it listens.
	Socket string

	mu       sync.Mutex
	networks map[string]bool
	atts     map[api.AttachmentKey]*api.Attachment
	next     int
	hang     bool
	notReady string
	drift    map[api.AttachmentKey]string
	calls    []string
	last     api.AttachRequest
	srv      *http.Server
}

// NewFakeAgent listens on socket (see nstest.SocketPath) and knows the
// given networks. It stops at test cleanup.
func NewFakeAgent(tb testing.TB, socket string, networks ...string) *FakeAgent {
	tb.Helper()
	f := &FakeAgent{
		Socket:   socket,
		networks: map[string]bool{},
		atts:     map[api.AttachmentKey]*api.Attachment{},
		drift:    map[api.AttachmentKey]string{},
		next:     2,
	}
	for _, n := range networks {
		f.networks[n] = true
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		tb.Fatalf("fake agent: listen on %s: %v", socket, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/attachments", f.wrap(f.attach))
	mux.HandleFunc("POST /v1/attachments/check", f.wrap(f.check))
	mux.HandleFunc("POST /v1/attachments/detach", f.wrap(f.detach))
	mux.HandleFunc("POST /v1/attachments/gc", f.wrap(f.gc))
	mux.HandleFunc("GET /v1/attachments", f.wrap(f.list))
	mux.HandleFunc("GET /v1/attachments/status", f.wrap(f.status))
	f.srv = &http.Server{Handler: mux}
	go func() { _ = f.srv.Serve(ln) }()
	tb.Cleanup(func() {
		f.SetHang(false)
		_ = f.srv.Close()
		_ = os.Remove(socket)
	})
	return f
}

// SetHang makes every request wait until the client gives up (true), or
// answer again (false).
func (f *FakeAgent) SetHang(h bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = h
}

// SetNotReady makes status answer not ready with reason ("" for ready).
func (f *FakeAgent) SetNotReady(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notReady = reason
}

// SetDrift makes check of key fail with msg, as if the kernel changed.
func (f *FakeAgent) SetDrift(key api.AttachmentKey, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drift[key] = msg
}

// Forget drops every attachment, as an agent that lost its state.
func (f *FakeAgent) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.atts)
}

// Calls are the requests served so far, as "METHOD PATH".
func (f *FakeAgent) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// LastAttach is the last attach or check request.
func (f *FakeAgent) LastAttach() api.AttachRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Attachments are the attachments it holds.
func (f *FakeAgent) Attachments() []api.Attachment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Attachment
	for _, a := range f.atts {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b api.Attachment) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return out
}

// answer is a handler's result: a status and a body.
type answer struct {
	code int
	body any
}

func errAnswer(code int, format string, a ...any) answer {
	return answer{code, api.Error{Error: fmt.Sprintf(format, a...)}}
}

func (f *FakeAgent) wrap(h func(*http.Request) answer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, r.Method+" "+r.URL.Path)
		hang := f.hang
		f.mu.Unlock()
		if hang {
			<-r.Context().Done()
			return
		}
		a := h(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.code)
		_ = json.NewEncoder(w).Encode(a.body)
	}
}

func decode[T any](r *http.Request) (T, error) {
	var v T
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("decode request: %w", err)
	}
	return v, nil
}

func (f *FakeAgent) attach(r *http.Request) answer {
	req, err := decode[api.AttachRequest](r)
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		return errAnswer(http.StatusBadRequest, "%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = req
	if !f.networks[req.Network] {
		return errAnswer(http.StatusNotFound, "network %q: no such network", req.Network)
	}
	if a, ok := f.atts[req.Key()]; ok {
		return answer{http.StatusOK, a}
	}
	for _, a := range f.atts {
		if a.Network == req.Network && a.Name == req.Name {
			return errAnswer(http.StatusConflict, "name %q: taken by %s", req.Name, a.AttachmentKey)
		}
	}
	a := f.newAttachment(req)
	f.atts[req.Key()] = a
	return answer{http.StatusCreated, a}
}

func (f *FakeAgent) newAttachment(req api.AttachRequest) *api.Attachment {
	ip := netip.AddrFrom4([4]byte{10, 200, byte(f.next >> 8), byte(f.next)})
	if req.IP != "" {
		ip = netip.MustParseAddr(req.IP)
	} else {
		f.next++
	}
	mac := req.MAC
	if mac == "" {
		b := ip.As4()
		mac = fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
	}
	a := &api.Attachment{
		AttachmentKey: req.Key(),
		Name:          req.Name, Network: req.Network, Netns: req.Netns,
		Interface: req.IfName, MAC: mac,
		HostInterface: fmt.Sprintf("vxc%08x", f.next),
		IPs:           []api.AttachIP{{Address: netip.PrefixFrom(ip, 16).String(), Gateway: "10.200.0.1"}},
		Routes:        []api.AttachRoute{{Dst: "0.0.0.0/0", Gateway: "10.200.0.1"}},
		MTU:           1450,
		DNS:           api.AttachDNS{Nameservers: []string{"127.0.0.11"}, Search: []string{"vxmesh.test"}},
		State:         api.StateOK,
	}
	for _, p := range req.Ports {
		a.Ports = append(a.Ports, api.PortMapping{
			Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort,
			ContainerIP: ip.String(), ContainerPort: p.ContainerPort,
		})
	}
	return a
}

func (f *FakeAgent) check(r *http.Request) answer {
	req, err := decode[api.AttachRequest](r)
	if err != nil {
		return errAnswer(http.StatusBadRequest, "%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = req
	a, ok := f.atts[req.Key()]
	if !ok {
		return errAnswer(http.StatusNotFound, "attachment %s: not attached", req.Key())
	}
	if d := f.drift[req.Key()]; d != "" {
		return errAnswer(http.StatusConflict, "%s", d)
	}
	return answer{http.StatusOK, a}
}

func (f *FakeAgent) detach(r *http.Request) answer {
	req, err := decode[api.DetachRequest](r)
	if err != nil {
		return errAnswer(http.StatusBadRequest, "%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.atts[req.AttachmentKey]
	if ok && (req.Network == "" || req.Network == a.Network) {
		delete(f.atts, req.AttachmentKey)
		return answer{http.StatusOK, api.Detached{Existed: true}}
	}
	return answer{http.StatusOK, api.Detached{}}
}

func (f *FakeAgent) gc(r *http.Request) answer {
	req, err := decode[api.GCRequest](r)
	if err != nil {
		return errAnswer(http.StatusBadRequest, "%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := api.GCResult{Removed: []api.AttachmentKey{}}
	for k, a := range f.atts {
		if k.Runtime == req.Runtime && a.Network == req.Network && !slices.Contains(req.Keep, k) {
			delete(f.atts, k)
			res.Removed = append(res.Removed, k)
		}
	}
	return answer{http.StatusOK, res}
}

func (f *FakeAgent) list(r *http.Request) answer {
	rt := r.URL.Query().Get("runtime")
	out := []api.Attachment{}
	for _, a := range f.Attachments() {
		if rt == "" || a.Runtime == rt {
			out = append(out, a)
		}
	}
	return answer{http.StatusOK, out}
}

func (f *FakeAgent) status(r *http.Request) answer {
	n := r.URL.Query().Get("network")
	f.mu.Lock()
	defer f.mu.Unlock()
	st := api.AttachStatus{Network: n, Ready: true}
	switch {
	case !f.networks[n]:
		st.Ready, st.Reason = false, fmt.Sprintf("network %q: no such network", n)
	case f.notReady != "":
		st.Ready, st.Reason = false, f.notReady
	}
	return answer{http.StatusOK, st}
}
