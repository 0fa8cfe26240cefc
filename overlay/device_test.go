package overlay

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/fakekernel"
)

func deviceFake() (*fakekernel.NS, Device) {
	f := newFake()
	f.AddLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-mesh", MTU: 1500}})
	ul := f.AddLink(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "ul0", MTU: 9000}})
	f.Addrs = append(f.Addrs,
		netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.18.0.1").To4(), Mask: net.CIDRMask(16, 32)}, LinkIndex: ul.Attrs().Index},
		netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:198:18::1"), Mask: net.CIDRMask(64, 128)}, LinkIndex: ul.Attrs().Index},
	)
	return f, Device{Name: "mesh", VNI: 4200, Local: netip.MustParseAddr("198.18.0.1"), Bridge: "vxb-mesh"}
}

func TestEnsureDeviceFake(t *testing.T) {
	f, d := deviceFake()
	changed, err := EnsureDevice(f, d)
	if err != nil || !changed {
		t.Fatalf("create: changed %v, err %v", changed, err)
	}
	l, _ := f.LinkByName("vx-4200")
	vx := l.(*netlink.Vxlan)
	br, _ := f.LinkByName("vxb-mesh")
	if vx.VxlanId != 4200 || vx.Port != DefaultPort || vx.Learning || !vx.Proxy || vx.L2miss || vx.L3miss ||
		vx.MTU != 9000-50 || vx.MasterIndex != br.Attrs().Index || vx.Flags&net.FlagUp == 0 || vx.Alias != "vxmesh:vxlan net=mesh" {
		t.Fatalf("device not as wanted: %+v", vx)
	}

	f.Log = nil
	if changed, err := EnsureDevice(f, d); err != nil || changed || len(f.Log) != 0 {
		t.Fatalf("second ensure: changed %v, err %v, writes %v", changed, err, f.Log)
	}

	// MTU, master and up are fixed in place.
	f.Link("vx-4200").Attrs().MTU = 1400
	f.Link("vx-4200").Attrs().Flags = 0
	f.Link("vx-4200").Attrs().MasterIndex = 0
	f.Log = nil
	if changed, err := EnsureDevice(f, d); err != nil || !changed {
		t.Fatalf("fix in place: changed %v, err %v", changed, err)
	}
	if got := strings.Join(f.Log, ","); got != "mtu vx-4200,master vx-4200,up vx-4200" {
		t.Fatalf("fix in place wrote %s", got)
	}

	// A different port is a real difference: the device is made again.
	d.Port = 8472
	f.Log = nil
	if changed, err := EnsureDevice(f, d); err != nil || !changed {
		t.Fatalf("recreate: changed %v, err %v", changed, err)
	}
	if !strings.HasPrefix(strings.Join(f.Log, ","), "link del vx-4200,link add vx-4200") {
		t.Fatalf("recreate wrote %v", f.Log)
	}

	if err := DeleteDevice(f, d); err != nil {
		t.Fatal(err)
	}
	if err := DeleteDevice(f, d); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestEnsureDeviceRecreatesOnRealDifference(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(vx *netlink.Vxlan)
		why    string
	}{
		{"vni", func(vx *netlink.Vxlan) { vx.VxlanId = 7 }, "vni 7"},
		{"local", func(vx *netlink.Vxlan) { vx.SrcAddr = net.ParseIP("198.18.0.9").To4() }, "local 198.18.0.9"},
		{"kernel default port", func(vx *netlink.Vxlan) { vx.Port = 8472 }, "port 8472"},
		{"learning", func(vx *netlink.Vxlan) { vx.Learning = true }, "learning"},
		{"proxy", func(vx *netlink.Vxlan) { vx.Proxy = false }, "proxy"},
		{"l3miss", func(vx *netlink.Vxlan) { vx.L3miss = true }, "miss"},
		{"group", func(vx *netlink.Vxlan) { vx.Group = net.ParseIP("239.1.1.1").To4() }, "group"},
		{"none", func(vx *netlink.Vxlan) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &netlink.Vxlan{VxlanId: 4200, SrcAddr: net.ParseIP("198.18.0.1").To4(), Port: 4789, Proxy: true}
			have := *want
			tt.mutate(&have)
			got := incompatible(&have, want)
			if tt.why == "" && got != "" || tt.why != "" && !strings.Contains(got, tt.why) {
				t.Fatalf("incompatible = %q, want %q", got, tt.why)
			}
		})
	}
}

func TestEnsureDeviceMTU(t *testing.T) {
	tests := []struct {
		name string
		dev  func(d *Device)
		want int
		err  string
	}{
		{"from the link holding local", func(d *Device) {}, 8950, ""},
		{"ipv6 local", func(d *Device) { d.Local = netip.MustParseAddr("fd00:198:18::1") }, 8930, ""},
		{"explicit", func(d *Device) { d.MTU = 1400 }, 1400, ""},
		{"underlay link named", func(d *Device) { d.UnderlayLink = "vxb-mesh" }, 1450, ""},
		{"local on no link", func(d *Device) { d.Local = netip.MustParseAddr("198.18.0.77") }, 0, "no link holds"},
		{"missing bridge", func(d *Device) { d.Bridge = "nope" }, 0, `find bridge "nope"`},
		{"bridge is no bridge", func(d *Device) { d.Bridge = "ul0" }, 0, "not a bridge"},
		{"bad vni", func(d *Device) { d.VNI = 1 << 24 }, 0, "vni"},
		{"bad mtu", func(d *Device) { d.MTU = 20 }, 0, "mtu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, d := deviceFake()
			tt.dev(&d)
			_, err := EnsureDevice(f, d)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if len(f.Log) != 0 {
					t.Fatalf("failed ensure wrote %v", f.Log)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l, _ := f.LinkByName(d.LinkName())
			if l.Attrs().MTU != tt.want {
				t.Fatalf("mtu %d, want %d", l.Attrs().MTU, tt.want)
			}
			if got, err := MTUFor(f, d); err != nil || got != tt.want {
				t.Fatalf("MTUFor = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestEnsureDeviceForeignLink(t *testing.T) {
	f, d := deviceFake()
	f.AddLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vx-4200"}})
	if _, err := EnsureDevice(f, d); err == nil || !strings.Contains(err.Error(), "bridge device has that name") {
		t.Fatalf("err = %v", err)
	}
	if err := DeleteDevice(f, d); err == nil {
		t.Fatal("DeleteDevice removed a bridge")
	}
	if f.Link("vx-4200") == nil {
		t.Fatal("foreign link gone")
	}
}

func TestDevices(t *testing.T) {
	f, d := deviceFake()
	if _, err := EnsureDevice(f, d); err != nil {
		t.Fatal(err)
	}
	f.AddLink(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "other"}, VxlanId: 9})
	got, err := Devices(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "mesh" || got[0].VNI != 4200 || got[0].Bridge != "vxb-mesh" || got[0].Port != 4789 || got[0].MTU != 8950 {
		t.Fatalf("Devices = %+v", got)
	}
}

func TestLinkNameMatchesConfig(t *testing.T) {
	for _, vni := range []uint32{1, 4200, MaxVNI} {
		n := config.Network{VNI: vni}
		if got := (Device{VNI: vni}).LinkName(); got != n.VXLANName() {
			t.Fatalf("LinkName(%d) = %q, config says %q", vni, got, n.VXLANName())
		}
	}
}

func TestGatewayMAC(t *testing.T) {
	a, b := GatewayMAC("mesh"), GatewayMAC("mesh")
	if a.String() != b.String() {
		t.Fatalf("not deterministic: %s %s", a, b)
	}
	if a[0] != 0x06 || len(a) != 6 {
		t.Fatalf("gateway mac %s: want 06:... locally administered unicast", a)
	}
	if GatewayMAC("other").String() == a.String() {
		t.Fatal("two networks share a gateway mac")
	}
}
