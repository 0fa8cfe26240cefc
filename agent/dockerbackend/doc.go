// Package dockerbackend implements dockerplugin.Backend over the agent's
// attach path (pass.Attacher): a Docker endpoint is an attachment of
// runtime "docker", keyed by the engine's container ID and eth<N> (see
// Names and keys), placed in the agent's (= dockerd's) network namespace
// for Docker to move into its sandbox.
//
// # Which call does what
//
//	IpamDriver.RequestAddress    ReserveAddress (cluster-wide on overlays)
//	IpamDriver.ReleaseAddress    ReleaseAddress
//	CreateNetwork/DeleteNetwork  a binding Docker network ID -> vxmesh network
//	CreateEndpoint               a record only (the address is held by RequestAddress already)
//	Join                         Attach{Placement: host, IP, Name}: the veth; its container end is answered
//	ProgramExternalConnectivity  Attach again with the ports (RevokeExternalConnectivity: none)
//	Leave, DeleteEndpoint        Detach (both: Docker may skip Leave when a sandbox is gone)
//
// # What is kept, and where
//
// The agent keeps the attachments (state.json) and adopts their kernel
// state after its own restart; this package keeps only what no attachment
// holds, in STATE_DIR/docker.json (internal/atomicfile, written on every
// change — Docker's calls are few):
//   - the bindings of Docker networks to vxmesh networks: a Docker network
//     with no endpoint yet has no attachment, and dockerd never replays
//     CreateNetwork (measured: after a restart it only re-activates the
//     plugin);
//   - each endpoint's Docker network, vxmesh network, addresses, MAC, DNS
//     names and ports: CreateEndpoint and Join are separate calls, and
//     Join, ProgramExternalConnectivity and Leave name the endpoint only by
//     its IDs.
//
// A file of our own rather than fields in pass.State: the backend is an
// adapter and owns no part of a pass; and its records are Docker's IDs,
// which mean nothing to the rest of the agent.
//
// # Names and keys
//
// The remote driver protocol never carries the container's name or ID.
// With an engine socket, Join asks the engine: GET /networks/ID lists each
// endpoint's container name — and its ID once libnetwork has stored the
// endpoint's sandbox, which in Join it has not yet, so the ID comes from
// GET /containers/json filtered by that name (the engine's lock-free
// view; inspecting the container would wait for the start calling Join).
// The attachment gets the container name as its DNS name and the short
// container ID as an alias, as Docker's own DNS does, and is keyed by the
// container: (docker, CONTAINER-ID, eth<N>), N counting the container's
// vxmesh networks. So a container on two Docker networks is one vxmesh
// container with two interfaces (one name, like any multi-network
// container), and `vxmesh endpoints` and `vxmesh inspect` show the
// engine's container ID. The endpoint ID stays the key of this package's
// records (Docker's calls name only it). Without an engine, or if it does
// not answer in time, the name is "docker-" and the endpoint ID's first 12
// hex digits and the endpoint ID keys the attachment (interface "eth").
package dockerbackend
