// Package dns is vxmesh's embedded DNS server: Docker's 127.0.0.11 resolver
// for network namespaces.
//
// Design notes.
//
// One Server per agent; per container namespace one UDP and one TCP socket
// on 127.0.0.11:53, opened inside that namespace (a socket belongs to the
// namespace it was created in, whichever thread later reads it). Nothing
// listens in the host namespace, so the forwarder is not an open resolver:
// 127.0.0.0/8 is not routable from outside a namespace, and queries from a
// non-loopback source are dropped in case route_localnet was turned on.
// Docker instead listens on a random port and DNATs 53 to it with iptables
// in the container; binding 53 directly needs no rules in the container.
//
// The agent computes a View per container (a plain value: names, PTRs,
// hidden names, upstreams) and swaps it in atomically; every query is
// answered from the current view, so a removed container stops resolving
// on the next lookup. Local answers carry TTL 0 so no client cache holds
// them either. Names match exactly (case-insensitively, with or without the
// trailing dot); search-domain-qualified forms are not stripped, as in
// Docker, and ResolvConf writes "options ndots:0" so resolvers ask the bare
// name first.
//
// Everything not ours is forwarded from the agent's namespace (the host's,
// or Options.ForwardNetns), with a fresh socket (random port) and random ID
// per exchange: UDP first, TCP when the answer is truncated, upstreams in
// order, a total budget after which the client gets SERVFAIL. Forwarding
// from the host is what lets containers on internal networks resolve
// external names (as Docker does), lets a host resolver on 127.0.0.53 work,
// and means no socket in the container faces outside.
//
// The handler takes raw bytes and returns raw bytes (FuzzHandler feeds it
// random input without sockets); miekg/dns does the wire format.
package dns
