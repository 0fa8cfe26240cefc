package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Entry is one remote endpoint of an overlay network: the container's
// overlay address and MAC, and the underlay address (VTEP) of the host it
// runs on.
type Entry struct {
	IP   netip.Addr
	MAC  net.HardwareAddr
	VTEP netip.Addr
}

// String formats the entry as "IP MAC via VTEP".
func (e Entry) String() string {
	return fmt.Sprintf("%s %s via %s", e.IP, e.MAC, e.VTEP)
}

// Validate checks that the entry can be programmed on a VXLAN device whose
// local address is local (skip that check with an invalid local): a valid
// unicast IP, an Ethernet unicast MAC that is not all zeros, and a unicast
// VTEP of local's family that is not local itself.
func (e Entry) Validate(local netip.Addr) error {
	switch {
	case !e.IP.IsValid() || e.IP.IsUnspecified() || e.IP.IsMulticast():
		return fmt.Errorf("entry %s: ip %q is not a unicast address", e, e.IP)
	case len(e.MAC) != 6:
		return fmt.Errorf("entry %s: mac %q is not an Ethernet address", e, e.MAC)
	case isZeroMAC(e.MAC) || e.MAC[0]&1 != 0:
		return fmt.Errorf("entry %s: mac %q is not a unicast address", e, e.MAC)
	case !e.VTEP.IsValid() || e.VTEP.IsUnspecified() || e.VTEP.IsMulticast():
		return fmt.Errorf("entry %s: vtep %q is not a unicast address", e, e.VTEP)
	case e.IP.Zone() != "" || e.VTEP.Zone() != "":
		return fmt.Errorf("entry %s: addresses must not carry a zone", e)
	}
	if local.IsValid() {
		if e.VTEP.Unmap().Is4() != local.Unmap().Is4() {
			return fmt.Errorf("entry %s: vtep %s is not of the device's family (local %s)", e, e.VTEP, local)
		}
		if e.VTEP.Unmap() == local.Unmap() {
			return fmt.Errorf("entry %s: vtep is this host's own address", e)
		}
	}
	return nil
}

// FDBEntry is a permanent FDB entry on a VXLAN device: frames to MAC go to
// the VTEP. An all-zeros MAC is one destination of the flood list.
type FDBEntry struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
	// VNI is the entry's own VNI when it differs from the device's (the
	// kernel reports it only then); 0 otherwise. vxmesh never sets it.
	VNI uint32
}

// Flood reports whether the entry belongs to the flood list (all-zeros MAC).
func (f FDBEntry) Flood() bool { return isZeroMAC(f.MAC) }

// String formats the entry the way `bridge fdb show` does.
func (f FDBEntry) String() string {
	s := fmt.Sprintf("%s dst %s", f.MAC, f.VTEP)
	if f.VNI != 0 {
		s += fmt.Sprintf(" vni %d", f.VNI)
	}
	return s + " self permanent"
}

// NeighEntry is a permanent neighbour entry on a VXLAN device, used by the
// device's ARP/ND proxy to answer for remote endpoints.
type NeighEntry struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// String formats the entry the way `ip neigh show` does.
func (n NeighEntry) String() string {
	return fmt.Sprintf("%s lladdr %s PERMANENT", n.IP, n.MAC)
}

// State is the set of entries vxmesh manages on one VXLAN device: its
// permanent NTF_SELF FDB entries (unicast and flood) and its permanent
// neighbour entries.
type State struct {
	FDB   []FDBEntry
	Neigh []NeighEntry
}

// Len is the number of kernel entries in the state.
func (s State) Len() int { return len(s.FDB) + len(s.Neigh) }

// Action is what an Op does to a kernel entry.
type Action uint8

// Actions. Add and Update are both written with replace semantics (an
// append for flood entries); they differ only in what was there before.
const (
	ActionAdd Action = iota + 1
	ActionUpdate
	ActionDelete
)

func (a Action) String() string {
	switch a {
	case ActionAdd:
		return "add"
	case ActionUpdate:
		return "update"
	case ActionDelete:
		return "delete"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Table names the kernel table an Op writes.
type Table uint8

// Tables.
const (
	TableFDB   Table = iota + 1 // bridge FDB of the VXLAN device (AF_BRIDGE, NTF_SELF)
	TableNeigh                  // neighbour table (AF_INET / AF_INET6) of the VXLAN device
)

func (t Table) String() string {
	switch t {
	case TableFDB:
		return "fdb"
	case TableNeigh:
		return "neigh"
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

// Op is one write to a VXLAN device's tables.
//
// FDB ops: MAC -> VTEP; an all-zeros MAC is a flood-list destination. A
// delete names the VTEP, so it removes exactly that destination.
// Neighbour ops: IP -> MAC (MAC is unused for deletes).
type Op struct {
	Action Action
	Table  Table
	MAC    net.HardwareAddr
	IP     netip.Addr // neighbour ops: the endpoint's address
	VTEP   netip.Addr // FDB ops: the remote host's underlay address
	// VNI is set only on deletes of FDB destinations that carry a VNI of
	// their own: the kernel deletes a destination only when the VNI matches.
	VNI uint32
}

// Flood reports whether the op writes the flood list.
func (o Op) Flood() bool { return o.Table == TableFDB && isZeroMAC(o.MAC) }

// String formats the op like the iproute2 command that would do the same,
// e.g. "replace fdb 02:42:0a:c8:00:05 dst 198.18.0.2" or "delete neigh 10.200.1.5".
func (o Op) String() string {
	verb := "replace"
	if o.Flood() {
		verb = "append"
	}
	if o.Action == ActionDelete {
		verb = "delete"
	}
	switch o.Table {
	case TableFDB:
		if o.VNI != 0 {
			return fmt.Sprintf("%s fdb %s dst %s vni %d", verb, o.MAC, o.VTEP, o.VNI)
		}
		return fmt.Sprintf("%s fdb %s dst %s", verb, o.MAC, o.VTEP)
	case TableNeigh:
		if o.Action == ActionDelete {
			return fmt.Sprintf("%s neigh %s", verb, o.IP)
		}
		return fmt.Sprintf("%s neigh %s lladdr %s", verb, o.IP, o.MAC)
	}
	return fmt.Sprintf("%s %s", o.Action, o.Table)
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

func isZeroMAC(m net.HardwareAddr) bool {
	if len(m) == 0 {
		return false
	}
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// ValidateEntries checks every entry (see Entry.Validate) and returns all
// problems joined, or nil.
func ValidateEntries(remote []Entry, local netip.Addr) error {
	var errs []error
	for _, e := range remote {
		if err := e.Validate(local); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Desired returns the kernel entries that program remote: one unicast FDB
// entry per MAC, one neighbour entry per IP, and one flood-list destination
// per distinct VTEP, each list sorted.
//
// The input may disagree with itself while the cluster converges (an IP
// reused by a new container on another host before the old record is
// reaped, a MAC seen on two hosts): for each IP and each MAC the entry that
// comes last in remote wins, so the caller orders entries oldest first.
// Conflicts counts the entries that lost. Entries must be valid.
func Desired(remote []Entry) (s State, conflicts int) {
	s, conflicts = desired(remote)
	sortState(&s)
	return s, conflicts
}

// macKey is an Ethernet address as a map key (entries are checked to be
// 6 bytes long before they get here).
type macKey [6]byte

func keyOf(m net.HardwareAddr) macKey {
	var k macKey
	copy(k[:], m)
	return k
}

// desired is Desired without sorting.
func desired(remote []Entry) (s State, conflicts int) {
	fdb := make(map[macKey]FDBEntry, len(remote))
	neigh := make(map[netip.Addr]NeighEntry, len(remote))
	for _, e := range remote {
		fdb[keyOf(e.MAC)] = FDBEntry{MAC: e.MAC, VTEP: e.VTEP.Unmap()}
		neigh[e.IP.Unmap()] = NeighEntry{IP: e.IP.Unmap(), MAC: e.MAC}
	}
	for _, e := range remote {
		// An entry lost when its MAC now leads elsewhere or its IP to
		// another MAC. Exact repeats of a winner are not conflicts.
		if fdb[keyOf(e.MAC)].VTEP != e.VTEP.Unmap() || !bytes.Equal(neigh[e.IP.Unmap()].MAC, e.MAC) {
			conflicts++
		}
	}

	vteps := map[netip.Addr]bool{}
	s.FDB = make([]FDBEntry, 0, len(fdb)+16)
	for _, f := range fdb {
		s.FDB = append(s.FDB, f)
		vteps[f.VTEP] = true
	}
	for v := range vteps {
		s.FDB = append(s.FDB, FDBEntry{MAC: zeroMAC, VTEP: v})
	}
	s.Neigh = make([]NeighEntry, 0, len(neigh))
	for _, n := range neigh {
		s.Neigh = append(s.Neigh, n)
	}
	return s, conflicts
}

func sortState(s *State) {
	slices.SortFunc(s.FDB, func(a, b FDBEntry) int {
		if c := bytes.Compare(a.MAC, b.MAC); c != 0 {
			return c
		}
		if c := a.VTEP.Compare(b.VTEP); c != 0 {
			return c
		}
		return int(a.VNI) - int(b.VNI)
	})
	slices.SortFunc(s.Neigh, func(a, b NeighEntry) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return bytes.Compare(a.MAC, b.MAC)
	})
}

// Plan returns the operations that turn actual into the entries that
// program remote (see Desired), in the order they should run: deletes that
// clear the way for a write of the same key, unicast FDB writes (so a
// neighbour entry never points at a MAC with no destination), flood-list
// appends, neighbour writes, and finally the deletes of what is no longer
// wanted (neighbour, unicast FDB, flood list).
//
// Plan is pure: it only compares values.
func Plan(actual State, remote []Entry) []Op {
	want, _ := desired(remote)
	ops, _ := plan(actual, want)
	return ops
}

// plan is Plan against the desired state want (from Desired); unchanged
// counts the entries already right.
func plan(actual, want State) (ops []Op, unchanged int) {

	// Actual unicast FDB: MAC -> destinations (normally one).
	haveFDB := make(map[macKey][]FDBEntry, len(actual.FDB))
	haveFlood := map[netip.Addr][]FDBEntry{}
	for _, f := range actual.FDB {
		f.VTEP = f.VTEP.Unmap()
		if f.Flood() {
			haveFlood[f.VTEP] = append(haveFlood[f.VTEP], f)
			continue
		}
		k := keyOf(f.MAC)
		haveFDB[k] = append(haveFDB[k], f)
	}
	haveNeigh := make(map[netip.Addr][]NeighEntry, len(actual.Neigh))
	for _, n := range actual.Neigh {
		n.IP = n.IP.Unmap()
		haveNeigh[n.IP] = append(haveNeigh[n.IP], n)
	}

	// pre: deletes that must clear the way before a write of the same key.
	var pre, fdbW, floodW, neighW, neighD, fdbD, floodD []Op
	wantFDB := make(map[macKey]bool, len(want.FDB))
	wantFlood := map[netip.Addr]bool{}
	for _, w := range want.FDB {
		if w.Flood() {
			wantFlood[w.VTEP] = true
			have := haveFlood[w.VTEP]
			exact := false
			for _, h := range have {
				if h.VNI == 0 {
					exact = true
				} else {
					// A destination with a foreign VNI: remove it, then append ours.
					pre = append(pre, Op{Action: ActionDelete, Table: TableFDB, MAC: zeroMAC, VTEP: h.VTEP, VNI: h.VNI})
				}
			}
			if exact {
				unchanged++
			} else {
				floodW = append(floodW, Op{Action: ActionAdd, Table: TableFDB, MAC: zeroMAC, VTEP: w.VTEP})
			}
			continue
		}
		wantFDB[keyOf(w.MAC)] = true
		have := haveFDB[keyOf(w.MAC)]
		switch {
		case len(have) == 0:
			fdbW = append(fdbW, Op{Action: ActionAdd, Table: TableFDB, MAC: w.MAC, VTEP: w.VTEP})
		case len(have) == 1 && have[0].VTEP == w.VTEP && have[0].VNI == 0:
			unchanged++
		case len(have) == 1:
			// Moved to another VTEP (or foreign VNI): one replace rewrites it.
			fdbW = append(fdbW, Op{Action: ActionUpdate, Table: TableFDB, MAC: w.MAC, VTEP: w.VTEP})
		default:
			// Several destinations for one unicast MAC (not something vxmesh
			// writes): drop them all, then write ours.
			for _, h := range have {
				pre = append(pre, Op{Action: ActionDelete, Table: TableFDB, MAC: h.MAC, VTEP: h.VTEP, VNI: h.VNI})
			}
			fdbW = append(fdbW, Op{Action: ActionUpdate, Table: TableFDB, MAC: w.MAC, VTEP: w.VTEP})
		}
	}
	for _, w := range want.Neigh {
		have := haveNeigh[w.IP]
		switch {
		case len(have) == 0:
			neighW = append(neighW, Op{Action: ActionAdd, Table: TableNeigh, IP: w.IP, MAC: w.MAC})
		case bytes.Equal(have[0].MAC, w.MAC):
			unchanged++
		default:
			neighW = append(neighW, Op{Action: ActionUpdate, Table: TableNeigh, IP: w.IP, MAC: w.MAC})
		}
	}

	// Deletes of what is no longer wanted.
	for _, f := range actual.FDB {
		v := f.VTEP.Unmap()
		if f.Flood() {
			if !wantFlood[v] {
				floodD = append(floodD, Op{Action: ActionDelete, Table: TableFDB, MAC: zeroMAC, VTEP: v, VNI: f.VNI})
			}
			continue
		}
		if !wantFDB[keyOf(f.MAC)] {
			fdbD = append(fdbD, Op{Action: ActionDelete, Table: TableFDB, MAC: f.MAC, VTEP: v, VNI: f.VNI})
		}
	}
	wantNeigh := make(map[netip.Addr]bool, len(want.Neigh))
	for _, w := range want.Neigh {
		wantNeigh[w.IP] = true
	}
	for ip, have := range haveNeigh {
		if !wantNeigh[ip] {
			neighD = append(neighD, Op{Action: ActionDelete, Table: TableNeigh, IP: ip, MAC: have[0].MAC})
		}
	}

	for _, group := range [][]Op{pre, fdbW, floodW, neighW, neighD, fdbD, floodD} {
		sortOps(group)
		ops = append(ops, dedupOps(group)...)
	}
	return ops, unchanged
}

func sortOps(ops []Op) {
	slices.SortFunc(ops, func(a, b Op) int {
		if a.Table != b.Table {
			return int(a.Table) - int(b.Table)
		}
		if a.Table == TableFDB {
			if c := bytes.Compare(a.MAC, b.MAC); c != 0 {
				return c
			}
			if c := a.VTEP.Compare(b.VTEP); c != 0 {
				return c
			}
			return int(a.VNI) - int(b.VNI)
		}
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return bytes.Compare(a.MAC, b.MAC)
	})
}

func dedupOps(ops []Op) []Op {
	return slices.CompactFunc(ops, func(a, b Op) bool {
		return a.Action == b.Action && a.Table == b.Table && bytes.Equal(a.MAC, b.MAC) && a.IP == b.IP && a.VTEP == b.VTEP && a.VNI == b.VNI
	})
}

// FormatOps renders ops one per line, for logs and test failures.
func FormatOps(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}
