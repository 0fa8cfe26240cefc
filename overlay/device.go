package overlay

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Defaults and limits of VXLAN devices.
const (
	// DefaultPort is the IANA VXLAN port, used when Device.Port is 0. (The
	// kernel's own default, which netlink gives when no port is sent, is the
	// pre-IANA 8472; vxmesh always sends the port.)
	DefaultPort = 4789
	// MaxVNI is the largest 24-bit VXLAN network identifier.
	MaxVNI = 1<<24 - 1
	// OverheadIPv4 and OverheadIPv6 are what VXLAN encapsulation adds to a
	// frame's IP packet: outer IP header (20 or 40) + UDP (8) + VXLAN (8) +
	// inner Ethernet header (14).
	OverheadIPv4 = 50
	OverheadIPv6 = 70
	// LinkPrefix starts the name of every VXLAN device vxmesh makes.
	LinkPrefix = "vx-"
	// AliasPrefix starts the link alias of every VXLAN device vxmesh makes.
	AliasPrefix = "vxmesh:vxlan net="
)

// Device is the VXLAN device of one overlay network on this host.
type Device struct {
	// Name is the overlay network's name; it goes into the link alias
	// ("vxmesh:vxlan net=NAME"). The link itself is named LinkName().
	Name string
	// VNI is the VXLAN network identifier, 1..MaxVNI.
	VNI uint32
	// Local is this host's underlay address (IPv4 or IPv6): the source of
	// every VXLAN packet and the VTEP other hosts send to.
	Local netip.Addr
	// Port is the VXLAN UDP destination port; 0 means DefaultPort.
	Port int
	// MTU of the device; 0 means the underlay link's MTU minus OverheadIPv4
	// (or OverheadIPv6 for an IPv6 Local).
	MTU int
	// Bridge is the overlay network's bridge; the device is enslaved to it.
	// It must exist.
	Bridge string
	// UnderlayLink names the link whose MTU the default MTU derives from;
	// empty means the link that holds Local.
	UnderlayLink string
}

// LinkName is the device's name, "vx-<VNI>" (at most 11 bytes).
func (d Device) LinkName() string { return LinkPrefix + strconv.FormatUint(uint64(d.VNI), 10) }

// Alias is the device's link alias, which marks it as vxmesh's.
func (d Device) Alias() string { return AliasPrefix + d.Name }

func (d Device) port() int {
	if d.Port == 0 {
		return DefaultPort
	}
	return d.Port
}

// Overhead is the encapsulation overhead for the family of Local.
func (d Device) Overhead() int {
	if d.Local.Unmap().Is4() {
		return OverheadIPv4
	}
	return OverheadIPv6
}

// Validate checks the device's settings without touching the kernel.
func (d Device) Validate() error {
	switch {
	case d.Name == "":
		return errors.New("vxlan device: network name is empty")
	case d.VNI == 0 || d.VNI > MaxVNI:
		return fmt.Errorf("vxlan device of %q: vni %d out of range 1..%d", d.Name, d.VNI, MaxVNI)
	case !d.Local.IsValid() || d.Local.IsUnspecified() || d.Local.IsMulticast():
		return fmt.Errorf("vxlan device of %q: local address %q is not a unicast address", d.Name, d.Local)
	case d.Port < 0 || d.Port > 65535:
		return fmt.Errorf("vxlan device of %q: port %d out of range 1..65535", d.Name, d.Port)
	case d.MTU != 0 && (d.MTU < 68 || d.MTU > 65535):
		return fmt.Errorf("vxlan device of %q: mtu %d out of range 68..65535", d.Name, d.MTU)
	case d.Bridge == "":
		return fmt.Errorf("vxlan device of %q: bridge name is empty", d.Name)
	case strings.ContainsAny(d.Name, "\x00\n"):
		return fmt.Errorf("vxlan device of %q: network name holds a control character", d.Name)
	}
	return nil
}

// EnsureDevice makes the VXLAN device of d exist as wanted: named
// LinkName(), VNI, local address and UDP port as given, learning off,
// ARP/ND proxy on, l2miss and l3miss off, the given (or derived) MTU,
// enslaved to d.Bridge, up, and carrying Alias(). It reports whether it
// changed anything.
//
// An existing device with the right name is kept unless a setting the
// kernel cannot change in place differs (VNI, local address, port,
// learning, proxy, miss notifications, a multicast group or a lower device):
// then it is deleted and made again, which drops its FDB and neighbour
// entries until the next Sync. MTU, master, alias and up are fixed in place.
// A link with the name that is not a VXLAN device is an error: vxmesh does
// not delete what it cannot recognise as its own.
func EnsureDevice(h Netlink, d Device) (changed bool, err error) {
	if err := d.Validate(); err != nil {
		return false, err
	}
	name := d.LinkName()
	mtu, err := MTUFor(h, d)
	if err != nil {
		return false, fmt.Errorf("ensure vxlan device %q: %w", name, err)
	}
	br, err := h.LinkByName(d.Bridge)
	if err != nil {
		return false, fmt.Errorf("ensure vxlan device %q: find bridge %q: %w", name, d.Bridge, err)
	}
	if br.Type() != "bridge" {
		return false, fmt.Errorf("ensure vxlan device %q: %q is a %s device, not a bridge", name, d.Bridge, br.Type())
	}

	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   int(d.VNI),
		SrcAddr:   net.IP(d.Local.Unmap().AsSlice()),
		Port:      d.port(),
		Learning:  false,
		Proxy:     true,
		L2miss:    false,
		L3miss:    false,
	}

	l, err := h.LinkByName(name)
	switch {
	case isNotFound(err):
		if err := h.LinkAdd(want); err != nil {
			return false, fmt.Errorf("create vxlan device %q: %w", name, err)
		}
		logOf(h).Info("created vxlan device", "device", name, "network", d.Name, "vni", d.VNI, "local", d.Local,
			"port", d.port(), "mtu", mtu, "reason", "overlay network has no device")
		changed = true
	case err != nil:
		return false, fmt.Errorf("find vxlan device %q: %w", name, err)
	default:
		have, ok := l.(*netlink.Vxlan)
		if !ok {
			return false, fmt.Errorf("ensure vxlan device %q: a %s device has that name", name, l.Type())
		}
		if why := incompatible(have, want); why != "" {
			if err := h.LinkDel(have); err != nil && !isNotFound(err) {
				return false, fmt.Errorf("delete vxlan device %q to recreate it (%s): %w", name, why, err)
			}
			if err := h.LinkAdd(want); err != nil {
				return true, fmt.Errorf("recreate vxlan device %q (%s): %w", name, why, err)
			}
			logOf(h).Info("recreated vxlan device", "device", name, "network", d.Name, "vni", d.VNI, "reason", why)
			changed = true
		}
	}

	l, err = h.LinkByName(name)
	if err != nil {
		return changed, fmt.Errorf("find vxlan device %q: %w", name, err)
	}
	if changed {
		// No IPv6 link-local address on the device: its own neighbour
		// discovery and MLD frames would otherwise be flooded to every
		// remote host. Set while the new device is still down.
		if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			logOf(h).Warn("could not turn off ipv6 address generation on vxlan device", "device", name, "err", err)
		}
	}
	a := l.Attrs()
	if a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return changed, fmt.Errorf("set mtu %d on %q: %w", mtu, name, err)
		}
		logOf(h).Info("set vxlan device mtu", "device", name, "mtu", mtu, "was", a.MTU, "reason", "mtu differs")
		changed = true
	}
	if a.Alias != d.Alias() {
		if err := h.LinkSetAlias(l, d.Alias()); err != nil {
			return changed, fmt.Errorf("set alias of %q: %w", name, err)
		}
		changed = true
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMaster(l, br); err != nil {
			return changed, fmt.Errorf("enslave %q to bridge %q: %w", name, d.Bridge, err)
		}
		logOf(h).Info("enslaved vxlan device", "device", name, "bridge", d.Bridge, "reason", "not on the network's bridge")
		changed = true
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return changed, fmt.Errorf("set %q up: %w", name, err)
		}
		logOf(h).Info("set vxlan device up", "device", name, "reason", "device was down")
		changed = true
	}
	return changed, nil
}

// MTUFor is the MTU EnsureDevice gives the device of d: d.MTU, or the
// underlay link's MTU minus the VXLAN overhead. Every container interface
// on the network must use it too (see docs/overlay.md, MTU).
func MTUFor(h Netlink, d Device) (int, error) {
	if d.MTU != 0 {
		return d.MTU, nil
	}
	under, err := underlayMTU(h, d)
	if err != nil {
		return 0, err
	}
	mtu := under - d.Overhead()
	if mtu < 68 {
		return 0, fmt.Errorf("underlay mtu %d leaves no room for vxlan", under)
	}
	return mtu, nil
}

// incompatible names the first setting of have that differs from want and
// cannot be changed in place, or returns "".
func incompatible(have, want *netlink.Vxlan) string {
	haveLocal, _ := netip.AddrFromSlice(have.SrcAddr)
	wantLocal, _ := netip.AddrFromSlice(want.SrcAddr)
	group, _ := netip.AddrFromSlice(have.Group)
	switch {
	case have.VxlanId != want.VxlanId:
		return fmt.Sprintf("vni %d, want %d", have.VxlanId, want.VxlanId)
	case haveLocal.Unmap() != wantLocal.Unmap():
		return fmt.Sprintf("local %s, want %s", haveLocal.Unmap(), wantLocal.Unmap())
	case have.Port != want.Port:
		return fmt.Sprintf("port %d, want %d", have.Port, want.Port)
	case have.Learning != want.Learning:
		return fmt.Sprintf("learning %t, want %t", have.Learning, want.Learning)
	case have.Proxy != want.Proxy:
		return fmt.Sprintf("proxy %t, want %t", have.Proxy, want.Proxy)
	case have.L2miss != want.L2miss || have.L3miss != want.L3miss:
		return "miss notifications on"
	case group.IsValid() && !group.IsUnspecified():
		return fmt.Sprintf("has remote or group %s", group)
	case have.VtepDevIndex != 0:
		return "bound to a lower device"
	case have.FlowBased:
		return "external (flow-based) mode"
	}
	return ""
}

// underlayMTU is the MTU of d.UnderlayLink, or of the link holding d.Local.
func underlayMTU(h Netlink, d Device) (int, error) {
	if d.UnderlayLink != "" {
		l, err := h.LinkByName(d.UnderlayLink)
		if err != nil {
			return 0, fmt.Errorf("find underlay link %q: %w", d.UnderlayLink, err)
		}
		return l.Attrs().MTU, nil
	}
	fam := unix.AF_INET
	if !d.Local.Unmap().Is4() {
		fam = unix.AF_INET6
	}
	addrs, err := dumpAddrs(h, nil, fam)
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	idx := 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == d.Local.Unmap() {
			idx = a.LinkIndex
			break
		}
	}
	if idx == 0 {
		return 0, fmt.Errorf("no link holds local address %s: set the MTU or the underlay link", d.Local)
	}
	links, err := dumpLinks(h)
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Index == idx {
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("link %d holding %s vanished", idx, d.Local)
}

// DeleteDevice removes the VXLAN device of d (by LinkName) with all its
// entries. A missing device is not an error, so deletes can run twice; a
// non-VXLAN link with that name is left alone and reported.
func DeleteDevice(h Netlink, d Device) error {
	name := d.LinkName()
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find vxlan device %q: %w", name, err)
	}
	if _, ok := l.(*netlink.Vxlan); !ok {
		return fmt.Errorf("delete vxlan device %q: a %s device has that name", name, l.Type())
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete vxlan device %q: %w", name, err)
	}
	logOf(h).Info("deleted vxlan device", "device", name, "network", d.Name, "reason", "overlay network removed")
	return nil
}

// Devices lists the VXLAN devices vxmesh made in the namespace (those with
// AliasPrefix), read back from the kernel, for inspection and for removing
// devices of networks no longer configured.
func Devices(h Netlink) ([]Device, error) {
	links, err := dumpLinks(h)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Device
	for _, l := range links {
		vx, ok := l.(*netlink.Vxlan)
		if !ok || !strings.HasPrefix(vx.Alias, AliasPrefix) {
			continue
		}
		local, _ := netip.AddrFromSlice(vx.SrcAddr)
		out = append(out, Device{
			Name:   strings.TrimPrefix(vx.Alias, AliasPrefix),
			VNI:    uint32(vx.VxlanId),
			Local:  local.Unmap(),
			Port:   vx.Port,
			MTU:    vx.MTU,
			Bridge: names[vx.MasterIndex],
		})
	}
	return out, nil
}

// GatewayMAC is the MAC address of an overlay network's shared gateway: the
// same on every host, derived from the network name alone (SHA-256), and
// locally administered unicast with first byte 0x06, a value NewMAC never
// produces.
//
// Every host's overlay bridge holds the same gateway IP with this MAC. A
// container's default route then leaves through its own host whichever host
// it runs on, and a container that moves keeps a valid ARP entry for its
// gateway. ARP for the gateway never crosses the underlay: the VXLAN
// device's proxy answers ARP only from its neighbour table, which holds
// remote endpoints, never the gateway, and the local bridge answers first.
// Set it on the bridge explicitly (which also stops the bridge from taking
// a port's MAC).
func GatewayMAC(network string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("vxmesh gateway\x00" + network))
	mac := net.HardwareAddr(sum[:6:6])
	mac[0] = gatewayMACByte
	return mac
}

// gatewayMACByte is the first byte of every gateway MAC: locally
// administered (0x02), unicast (bit 0 clear).
const gatewayMACByte = 0x06
