package pass

import (
	"context"
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
)

// Attacher is the agent's attach path as an in-process interface, for the
// runtime plugins that live inside the agent (the Docker plugin): the same
// requests and answers as the HTTP routes of api/attach.go, without a
// socket in between. *agent.Agent implements it; call it only once
// Agent.Run has loaded the state (serve the plugin from inside Run, after
// the state file is read, as the HTTP API is): a change made before would
// be lost when Run loads state.json.
type Attacher interface {
	// Attach puts a runtime's container on a network and returns the
	// attachment once a pass has put it in force (Reserve: once the
	// address is held). The same request again returns the same
	// attachment.
	Attach(ctx context.Context, req api.AttachRequest) (api.Attachment, error)
	// Detach removes an attachment; Existed is false when there was none.
	Detach(ctx context.Context, req api.DetachRequest) (api.Detached, error)
	// Attachments lists the attachments of one runtime ("" for all).
	Attachments(runtime string) []api.Attachment
	// ReserveAddress holds an address on an overlay network through the
	// cluster IPAM (a local bridge network: the host's pool); want
	// invalid asks for any free address, v6 picks the family then.
	ReserveAddress(ctx context.Context, network string, want netip.Addr, v6 bool) (netip.Addr, error)
	// ReleaseAddress gives back an address ReserveAddress held.
	ReleaseAddress(ctx context.Context, network string, addr netip.Addr) error
	// Networks are the networks of the config in force.
	Networks() []config.Network
}
