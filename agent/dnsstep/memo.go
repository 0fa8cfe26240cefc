package dnsstep

import (
	"net/netip"
	"reflect"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Every pass (and every gossip refresh) would otherwise compute and compile
// the view of every container again: O(containers × endpoints) work per
// pass, most of an attach's time on a host with 100 containers. A view is a
// pure function of its input (dns.ComputeView), so a namespace whose input
// is what its listener was last given, in the same namespace (not one made
// again under the same name), is skipped.

// shared is the part of a view's input every container of a pass has in
// common.
type shared struct {
	eps     []dns.Endpoint
	gone    []string
	subnets []netip.Prefix
}

// memo is what the view attached to a namespace was computed from.
type memo struct {
	ident  [2]uint64 // the namespace file's device and inode
	shared uint64    // Step.sharedGen when it was computed
	own    dns.ViewInput
}

// noteShared advances sharedGen when the shared input changed since the
// last call (caller holds s.memoMu).
func (s *Step) noteShared(sh shared) {
	if s.sharedGen > 0 && endpointsEqual(sh.eps, s.lastShared.eps) && slices.Equal(sh.gone, s.lastShared.gone) && slices.Equal(sh.subnets, s.lastShared.subnets) {
		return
	}
	s.lastShared = sh
	s.sharedGen++
}

// ownInput is in without its shared part.
func ownInput(in dns.ViewInput) dns.ViewInput {
	in.Endpoints, in.Gone, in.Subnets = nil, nil, nil
	return in
}

// nsIdent identifies a namespace file (zero when it does not exist).
func nsIdent(netns string) [2]uint64 {
	var st unix.Stat_t
	if err := unix.Stat(netnsutil.Path(netns), &st); err != nil {
		return [2]uint64{}
	}
	return [2]uint64{st.Dev, st.Ino}
}

// unchanged reports whether netns's listener already has the view of in
// (caller holds s.memoMu; attached: the server's listeners).
func (s *Step) unchanged(netns string, in dns.ViewInput, attached map[string]bool) (memo, bool) {
	m := memo{ident: nsIdent(netns), shared: s.sharedGen, own: ownInput(in)}
	old, ok := s.memos[netns]
	return m, ok && attached[netns] && m.ident != [2]uint64{} && old.ident == m.ident && old.shared == m.shared && reflect.DeepEqual(old.own, m.own)
}

// gwMemo is what a gateway listener's view was computed from.
type gwMemo struct {
	shared  uint64 // Step.sharedGen
	names   []string
	subnets []netip.Prefix
	addr    netip.Addr
	allow   netip.Prefix
}

func (m gwMemo) equal(o gwMemo) bool {
	return m.shared == o.shared && slices.Equal(m.names, o.names) && slices.Equal(m.subnets, o.subnets) && m.addr == o.addr && m.allow == o.allow
}
