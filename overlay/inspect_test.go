package overlay

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestInspectedEntries(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:02")
	names := map[int]string{7: "vxb-mesh"}
	for _, c := range []struct {
		n    netlink.Neigh
		want InspectedFDB
	}{
		{netlink.Neigh{HardwareAddr: mac, IP: net.ParseIP("198.18.0.2"), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT},
			InspectedFDB{Line: "02:00:00:00:00:02 dst 198.18.0.2 self permanent", MAC: "02:00:00:00:00:02", Dst: "198.18.0.2", Self: true, State: "permanent"}},
		{netlink.Neigh{HardwareAddr: mac, MasterIndex: 7, Flags: netlink.NTF_MASTER | netlink.NTF_EXT_LEARNED, Vlan: 5, State: netlink.NUD_NOARP},
			InspectedFDB{Line: "02:00:00:00:00:02 vlan 5 extern_learn master vxb-mesh static", MAC: "02:00:00:00:00:02", Master: "vxb-mesh", State: "static"}},
		{netlink.Neigh{HardwareAddr: mac, MasterIndex: 9, VNI: 42, State: netlink.NUD_STALE},
			InspectedFDB{Line: "02:00:00:00:00:02 vni 42 master 9 stale", MAC: "02:00:00:00:00:02", Master: "9", State: "stale"}},
		{netlink.Neigh{HardwareAddr: mac, Flags: netlink.NTF_MASTER},
			InspectedFDB{Line: "02:00:00:00:00:02 master", MAC: "02:00:00:00:00:02"}},
	} {
		if got := fdbEntry(c.n, names); got != c.want {
			t.Errorf("fdb %+v:\n got %+v\nwant %+v", c.n, got, c.want)
		}
	}
	for _, c := range []struct {
		n    netlink.Neigh
		want InspectedNeigh
	}{
		{netlink.Neigh{IP: net.ParseIP("10.200.2.2"), HardwareAddr: mac, State: netlink.NUD_PERMANENT},
			InspectedNeigh{Line: "10.200.2.2 lladdr 02:00:00:00:00:02 PERMANENT", IP: "10.200.2.2", MAC: "02:00:00:00:00:02", State: "PERMANENT"}},
		{netlink.Neigh{IP: net.ParseIP("fd00::2"), Flags: netlink.NTF_ROUTER, State: netlink.NUD_REACHABLE | netlink.NUD_NOARP},
			InspectedNeigh{Line: "fd00::2 router REACHABLE NOARP", IP: "fd00::2", State: "REACHABLE NOARP"}},
		{netlink.Neigh{IP: net.ParseIP("10.0.0.1")},
			InspectedNeigh{Line: "10.0.0.1 NONE", IP: "10.0.0.1", State: "NONE"}},
	} {
		if got := neighEntry(c.n); got != c.want {
			t.Errorf("neigh %+v:\n got %+v\nwant %+v", c.n, got, c.want)
		}
	}
}
