// Package dockerplugin serves Docker's libnetwork remote network driver and
// remote IPAM driver protocols (HTTP POSTs with JSON bodies on a unix
// socket) and turns each call into a call on a Backend, which the agent
// implements. The package owns no state: the agent stays the one owner of
// networks, addresses, endpoints and ports, so a restarted agent answers
// Docker from its state file and nothing here has to be rebuilt.
//
// # How Docker finds and calls the plugin
//
// A socket NAME.sock under /run/docker/plugins (or a spec file under
// /etc/docker/plugins, /usr/lib/docker/plugins) makes the driver NAME. On
// first use dockerd POSTs /Plugin.Activate and reads {"Implements": [...]};
// we answer NetworkDriver and IpamDriver, so one socket is both drivers.
// Every call is a POST to /<Interface>.<Method>; a body is JSON (or "null"
// for calls without arguments). Errors go back as a non-200 status with
// {"Err": "..."}: Docker's plugin client reads Err from any non-200 body for
// both drivers, and an unknown path gets 404, which Docker treats as "not
// implemented" where that is allowed (ProgramExternalConnectivity).
//
// # Scope: local data, global connectivity
//
// NetworkDriver.GetCapabilities answers Scope "local": each engine creates
// the Docker network itself and keeps it in its own store (a "global" data
// scope needs Swarm; libnetwork refuses it otherwise with "Cannot create a
// multi-host network from a worker node"). ConnectivityScope is "global"
// because the network does reach every host; its only effect without Swarm
// is that node discovery (DiscoverNew) may be sent, which we acknowledge.
//
// # Which vxmesh network a Docker network is
//
// IPAM is asked first (RequestPool, then maybe RequestAddress for the
// gateway) and the network driver last (CreateNetwork), and the IPAM calls
// carry only --subnet, --ip-range and --ipam-opt, never the -o driver
// options or the network name. So the vxmesh network is found, in order:
//   - RequestPool: --ipam-opt vxmesh.network=NAME, else the network whose
//     subnet (subnet6) is --subnet, else the only overlay network;
//   - CreateNetwork: -o vxmesh.network=NAME (it arrives inside the
//     com.docker.network.generic option), else the network the IPAM data
//     points at (its pool, else its gateway). Every clue present must agree.
//
// The pool ID names the network ("vxmesh:mesh:v4", plus ":RANGE" for
// --ip-range), so later RequestAddress/ReleaseAddress calls need no lookup
// table, and survive agent restarts. RequestPool returns the network's
// gateway in its Data ("com.docker.network.gateway"), so Docker does not
// ask for a gateway address; a --gateway that differs is refused.
//
// Without --subnet, the IPv4 pool is answered as 0.0.0.0/0. This is not a
// shortcut: for a local-scope network created without a preferred pool,
// libnetwork checks the returned pool against the routes of dockerd's
// namespace and, on overlap, asks again in a loop with no bound. The vxmesh
// bridge holding the gateway always makes that overlap, and the one pool
// libnetwork exempts from the check is 0.0.0.0/0. `docker network inspect`
// then shows that subnet; create the network with --subnet to see the real
// one. Container addresses carry the real prefix length either way.
//
// # Endpoints
//
// CreateEndpoint brings the address IPAM gave; we answer only a MAC, and
// only when Docker did not choose one (libnetwork refuses a driver that
// changes what it supplied). Join asks the backend for a veth whose
// container end stays in dockerd's network namespace; Docker moves that end
// into the sandbox, names it eth<N> (DstPrefix "eth"), and sets address,
// MAC, gateway and routes. We always answer a gateway or, on internal
// networks, DisableGatewayService: otherwise libnetwork adds a second
// interface on a docker_gwbridge bridge it creates.
//
// Port bindings (-p, -P) reach the driver only in
// ProgramExternalConnectivity, as libnetwork's PortBinding list; Docker
// gets nothing back, so a random host port is chosen and shown by vxmesh
// (`vxmesh port`), not by `docker port`.
package dockerplugin
