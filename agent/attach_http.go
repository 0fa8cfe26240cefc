package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// attachRoutes serves the attach API (api/attach.go).
func (a *Agent) attachRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/attachments", func(w http.ResponseWriter, r *http.Request) {
		var req api.AttachRequest
		if decodeBody(w, r, &req) {
			_, known := a.knownAttachment(req.Key())
			got, err := a.Attach(r.Context(), req)
			code := http.StatusCreated
			if known {
				code = http.StatusOK
			}
			answer(w, code, got, err)
		}
	})
	mux.HandleFunc("POST /v1/attachments/check", func(w http.ResponseWriter, r *http.Request) {
		var req api.AttachRequest
		if decodeBody(w, r, &req) {
			got, err := a.CheckAttachment(r.Context(), req)
			answer(w, http.StatusOK, got, err)
		}
	})
	mux.HandleFunc("POST /v1/attachments/detach", func(w http.ResponseWriter, r *http.Request) {
		var req api.DetachRequest
		if decodeBody(w, r, &req) {
			got, err := a.Detach(r.Context(), req)
			answer(w, http.StatusOK, got, err)
		}
	})
	mux.HandleFunc("POST /v1/attachments/gc", func(w http.ResponseWriter, r *http.Request) {
		var req api.GCRequest
		if decodeBody(w, r, &req) {
			got, err := a.GCAttachments(r.Context(), req)
			answer(w, http.StatusOK, got, err)
		}
	})
	mux.HandleFunc("GET /v1/attachments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Attachments(r.URL.Query().Get("runtime")))
	})
	mux.HandleFunc("GET /v1/attachments/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.attachStatus(r.URL.Query().Get("network")))
	})
}

// decodeBody reads a JSON request body; on failure it answers 400 and
// returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad request: %v", err)
		return false
	}
	return true
}

// answer writes v with code, or err with its status (500 by default).
func answer(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		code = http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeErr(w, code, "%s", joinLines(err))
		return
	}
	writeJSON(w, code, v)
}

// knownAttachment returns attachment k's request and whether the state
// holds it.
func (a *Agent) knownAttachment(k api.AttachmentKey) (api.AttachRequest, bool) {
	var r api.AttachRequest
	found := false
	a.store.Read(func(st *pass.State) {
		if i := st.FindAttachment(k); i >= 0 {
			r, found = st.Attachments[i], true
		}
	})
	return r, found
}

// attachStatus tells whether the agent can attach to network now.
func (a *Agent) attachStatus(network string) api.AttachStatus {
	out := api.AttachStatus{Network: network}
	s := a.snapshot()
	switch {
	case s.cfg.NetworkByName(network) == nil:
		out.Reason = fmt.Sprintf("network %q not found in the agent's config", network)
	case s.last == nil:
		out.Reason = "the agent has not finished its first pass yet"
	default:
		out.Ready = true
	}
	return out
}

// CheckAttachment compares attachment req.Key() with the kernel (POST
// /v1/attachments/check): 404 when unknown, 409 with the drift named.
func (a *Agent) CheckAttachment(ctx context.Context, req api.AttachRequest) (api.Attachment, error) {
	r, found := a.knownAttachment(req.Key())
	if !found {
		return api.Attachment{}, herr(http.StatusNotFound, "attachment %s: unknown to the agent", req.Key())
	}
	if req.Network != "" && req.Network != r.Network {
		return api.Attachment{}, herr(http.StatusConflict, "attachment %s: on network %q, not %q", req.Key(), r.Network, req.Network)
	}
	s := a.snapshot()
	got, ok := a.attachment(s, req.Key())
	switch {
	case !ok || got.State == api.StatePending:
		return got, herr(http.StatusConflict, "attachment %s: not in force yet", req.Key())
	case got.State == api.StateError:
		return got, herr(http.StatusConflict, "attachment %s: %s", req.Key(), got.Error)
	}
	device := ""
	if n := s.cfg.NetworkByName(r.Network); n != nil {
		device = pass.BridgeNetwork(n).Device
	}
	if err := checkKernel(a.br.Kernel, got, device); err != nil {
		return got, herr(http.StatusConflict, "attachment %s: drift: %v", req.Key(), err)
	}
	return got, nil
}

// checkKernel compares an attachment with the kernel: the namespace, the
// container end (a veth with the MAC and address), the host end on the
// network's bridge.
func checkKernel(k bridge.Kernel, at api.Attachment, device string) error {
	if !netnsutil.Exists(at.Netns) {
		return fmt.Errorf("netns %s is gone", at.Netns)
	}
	links, err := k.Links(at.Netns)
	if err != nil {
		return fmt.Errorf("read links in %s: %w", at.Netns, err)
	}
	i := slices.IndexFunc(links, func(l bridge.Link) bool { return l.Name == at.Interface })
	if i < 0 {
		return fmt.Errorf("interface %s is missing in netns %s", at.Interface, at.Netns)
	}
	l := links[i]
	if l.Kind != "veth" {
		return fmt.Errorf("interface %s is a %s, not a veth", l.Name, l.Kind)
	}
	if at.MAC != "" && !strings.EqualFold(l.MAC.String(), at.MAC) {
		return fmt.Errorf("interface %s has MAC %s, want %s", l.Name, l.MAC, at.MAC)
	}
	for _, ip := range at.IPs {
		if !slices.ContainsFunc(l.Addrs, func(p netip.Prefix) bool { return p.String() == ip.Address }) {
			return fmt.Errorf("interface %s lacks address %s (has %v)", l.Name, ip.Address, l.Addrs)
		}
	}
	if !l.Up {
		return fmt.Errorf("interface %s is down", l.Name)
	}
	host, err := k.Links("")
	if err != nil {
		return fmt.Errorf("read host links: %w", err)
	}
	h := slices.IndexFunc(host, func(l bridge.Link) bool { return l.Name == at.HostInterface })
	if h < 0 {
		return fmt.Errorf("host end %s is missing", at.HostInterface)
	}
	br := slices.IndexFunc(host, func(l bridge.Link) bool { return l.Name == device })
	if br < 0 || host[h].MasterIndex != host[br].Index {
		return fmt.Errorf("host end %s is not on bridge %s", at.HostInterface, device)
	}
	return nil
}
