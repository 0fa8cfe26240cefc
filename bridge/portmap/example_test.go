package portmap_test

import (
	"fmt"
	"net/netip"

	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
)

// The example of docs/ports.md.
func ExampleFormat() {
	var publish []config.PortSpec
	for _, s := range []string{"8080:80", "80", "198.18.0.1::443", "198.18.0.1:5353:53/udp", "7000-7002:7000-7002"} {
		p, _ := config.ParsePortSpec(s)
		publish = append(publish, p)
	}
	var expose []config.ExposeSpec
	for _, s := range []string{"9000", "9100/udp"} {
		e, _ := config.ParseExposeSpec(s)
		expose = append(expose, e)
	}
	web1 := portmap.Container{
		Name:     "web1",
		Networks: []portmap.Attachment{{Network: "web", Bridge: "br-web", IP: netip.MustParseAddr("172.26.0.2")}},
		Publish:  publish, PublishAll: true, Expose: expose,
	}
	res := portmap.Allocator{}.Allocate([]portmap.Container{web1})
	lines, _ := portmap.Format(res.For("web1"), "")
	for _, l := range lines {
		fmt.Println(l)
	}
	lines, _ = portmap.Format(res.For("web1"), "80")
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// 53/udp -> 198.18.0.1:5353
	// 80/tcp -> 0.0.0.0:8080
	// 80/tcp -> 0.0.0.0:32768
	// 443/tcp -> 198.18.0.1:32769
	// 7000/tcp -> 0.0.0.0:7000
	// 7001/tcp -> 0.0.0.0:7001
	// 7002/tcp -> 0.0.0.0:7002
	// 9000/tcp -> 0.0.0.0:32770
	// 9100/udp -> 0.0.0.0:32768
	// 0.0.0.0:8080
	// 0.0.0.0:32768
}
