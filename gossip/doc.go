// Package gossip is vxmesh's cluster layer: one hashicorp/memberlist member
// per agent and, on top of it, a replicated table of records (endpoints,
// overlay address-block claims) that every member converges to. It knows
// nothing of netlink or of the agent: the agent declares its own records
// with SetLocal and reconciles the kernel from Snapshot whenever Changed
// fires. docs/gossip.md describes the protocol in full; these are the
// decisions and why.
//
// Records are keyed per owner: (owner, kind, key), where the key is the
// record's identity within its owner (an endpoint's network and IP, a
// claim's network and prefix). Only the owner ever writes its keys, so two
// hosts never fight over one row; when hosts disagree (an address moved
// while the old host is dead, two claims overlap) the snapshot resolves it
// by a rule every member applies identically, and reports the loser as a
// conflict. This avoids the classic failure of a shared key space, where a
// node writes tombstones or updates for another node's entries.
//
// Versions are Lamport timestamps whose clock starts at the start time in
// microseconds and witnesses every version seen. A restarted host therefore
// writes versions above its previous life's without persisting anything,
// and when it meets a copy of its own record that is newer than what it
// holds (clock skew, or a forgery) it refutes it by reissuing its truth
// above it, as memberlist refutes suspicion with incarnations.
//
// Delivery has three paths, all into one merge function:
//   - an owner sends each change straight to every member (one UDP packet
//     each, while the cluster is small) and queues it for epidemic gossip;
//     members that learn something new from an update queue it for gossip
//     too (relays in their own queue, behind local changes);
//   - when a member comes up (joins, returns from a partition, restarts),
//     every other member sends it its complete set over TCP (Sync);
//   - memberlist's push/pull exchanges whole tables as anti-entropy.
//
// An owner's complete set carries "asOf", its clock when the set was made:
// a receiver drops the owner's records at or below asOf that the set lacks.
// So a partition that outlived its tombstones, or a restart that dropped a
// container, leaves no stale row once the owner is reachable.
//
// Deletes are tombstones that travel with their remaining lifetime (never
// a fresh one, so two nodes cannot keep one alive between them) and are
// collected after TombstoneTTL. Records of a member declared dead or gone
// stay ReapAfter, then each member removes them; the member's return
// brings them back by Sync.
//
// memberlist does not say who sent a message, and gossip relays it anyway,
// so ownership is checked on content: every message carries one owner's
// records and that owner's VTEP; the owner must be a member memberlist told
// us about and the VTEP must be its memberlist address. A record can thus
// only ever point at its owner's own address. Encryption (memberlist's
// keyring) keeps non-members out entirely.
package gossip
