package explain

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/overlay"
)

// Readers are the kernel handles Read reads through.
type Readers struct {
	// Kernel reads links and container namespaces.
	Kernel bridge.Kernel
	// Netns is the host namespace, for the raw link dump of the bridges'
	// attributes.
	Netns netns.NsHandle
	// Netlink is the overlay's handle in the host namespace; nil (no
	// overlay kernel) skips the bridges' attributes and the VXLAN devices.
	Netlink *netlink.Handle
	// IPT reads our iptables chains.
	IPT ipt.Iptables
	// IPT6 reads our ip6tables chains (nil: none).
	IPT6 ipt.Iptables
	// EtcDir is the name-file directory of a namespace.
	EtcDir func(ns string) string
}

// Read reads what vxmesh made from the kernel: the devices and
// namespaces c wants, and anything else carrying vxmesh's alias. What
// cannot be read goes into Problems. It only reads.
func Read(ctx context.Context, r Readers, c *Causes) Kernel {
	k := Kernel{ReadAt: time.Now()}
	problem := func(format string, args ...any) { k.Problems = append(k.Problems, fmt.Sprintf(format, args...)) }
	var err error
	if k.Links, err = r.Kernel.Links(""); err != nil {
		problem("read the host's links: %v", err)
	}
	if r.Netlink != nil {
		if k.BridgeAttrs, err = bridge.ReadBridgeAttrs(r.Netns); err != nil {
			problem("read the bridges' STP state and id: %v", err)
		}
		names := map[int]string{}
		for _, l := range k.Links {
			names[l.Index] = l.Name
		}
		var errs []error
		k.VXLANs, errs = overlay.ReadVXLANs(r.Netlink, names, c.WantedVXLANs())
		for _, e := range errs {
			problem("%v", e)
		}
	}
	chains, errs := bridge.ReadChains(r.IPT)
	k.Chains = chains
	for _, e := range errs {
		problem("%v", e)
	}
	if r.IPT6 != nil {
		k.Chains6, errs = bridge.ReadChains(r.IPT6)
		for _, e := range errs {
			problem("ip6tables: %v", e)
		}
	}
	for _, ns := range c.Namespaces() {
		if ctx.Err() != nil {
			problem("%v", ctx.Err())
			break
		}
		k.Namespaces = append(k.Namespaces, bridge.ReadNamespace(r.Kernel, ns.Netns, r.EtcDir(ns.Netns)))
	}
	return k
}
