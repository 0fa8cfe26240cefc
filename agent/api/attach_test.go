package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/cnitest"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

func TestAttachRequestValidate(t *testing.T) {
	ok := api.AttachRequest{Runtime: "cni", ID: "c1", Name: "web", Network: "mesh", Netns: "/run/netns/x", IfName: "eth0"}
	tests := []struct {
		name   string
		change func(*api.AttachRequest)
		err    string
	}{
		{"ok", func(*api.AttachRequest) {}, ""},
		{"docker join", func(r *api.AttachRequest) { r.Runtime, r.Placement, r.Netns, r.DNSMode = "docker", "host", "", "none" }, ""},
		{"reserve", func(r *api.AttachRequest) { r.Reserve, r.Netns = true, "" }, ""},
		{"runtime", func(r *api.AttachRequest) { r.Runtime = "rkt" }, "runtime:"},
		{"id", func(r *api.AttachRequest) { r.ID = "" }, "id: empty"},
		{"network", func(r *api.AttachRequest) { r.Network = "" }, "network: empty"},
		{"name", func(r *api.AttachRequest) { r.Name = "-web" }, `name: "-web" is not a DNS name`},
		{"alias", func(r *api.AttachRequest) { r.Aliases = []string{"ok", "a b"} }, "aliases[1]"},
		{"ifname", func(r *api.AttachRequest) { r.IfName = "a-very-long-ifname" }, "ifname"},
		{"netns", func(r *api.AttachRequest) { r.Netns = "" }, "netns: empty"},
		{"placement", func(r *api.AttachRequest) { r.Placement = "moon" }, "placement"},
		{"dns mode", func(r *api.AttachRequest) { r.DNSMode = "x" }, "dns_mode"},
		{"ip", func(r *api.AttachRequest) { r.IP = "10.0.0.1/8" }, "ip:"},
		{"proto", func(r *api.AttachRequest) { r.Ports = []api.PortRequest{{Proto: "sctp", ContainerPort: 1}} }, "ports[0]: proto"},
		{"container port", func(r *api.AttachRequest) { r.Ports = []api.PortRequest{{Proto: "tcp"}} }, "container_port"},
		{"range", func(r *api.AttachRequest) {
			r.Ports = []api.PortRequest{{Proto: "tcp", HostPort: 9, HostPortEnd: 8, ContainerPort: 1}}
		}, "host_port_end"},
		{"host ip", func(r *api.AttachRequest) { r.Ports = []api.PortRequest{{Proto: "udp", HostIP: "h", ContainerPort: 1}} }, "host_ip"},
	}
	for _, tt := range tests {
		r := ok
		tt.change(&r)
		err := r.Validate()
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
}

// TestAttachClient drives every client method against the fake agent.
func TestAttachClient(t *testing.T) {
	ctx := context.Background()
	fa := cnitest.NewFakeAgent(t, nstest.SocketPath(t), "mesh")
	c := api.NewClient(fa.Socket)
	req := api.AttachRequest{Runtime: "cni", ID: "c1", Name: "web", Network: "mesh", Netns: "/run/netns/x", IfName: "eth0"}
	att, err := c.Attach(ctx, req)
	if err != nil || att.Interface != "eth0" || len(att.IPs) != 1 || att.String() != "cni/c1/eth0" {
		t.Fatalf("attach: %+v, %v", att, err)
	}
	if _, err := c.CheckAttachment(ctx, req); err != nil {
		t.Errorf("check: %v", err)
	}
	if all, err := c.Attachments(ctx, "cni"); err != nil || len(all) != 1 {
		t.Errorf("attachments: %v, %v", all, err)
	}
	if none, err := c.Attachments(ctx, "docker"); err != nil || len(none) != 0 {
		t.Errorf("docker attachments: %v, %v", none, err)
	}
	if st, err := c.AttachStatus(ctx, "mesh"); err != nil || !st.Ready {
		t.Errorf("status: %+v, %v", st, err)
	}
	if st, err := c.AttachStatus(ctx, "nope"); err != nil || st.Ready || st.Reason == "" {
		t.Errorf("status of an unknown network: %+v, %v", st, err)
	}
	if gc, err := c.GCAttachments(ctx, api.GCRequest{Runtime: "cni", Network: "mesh", Keep: []api.AttachmentKey{req.Key()}}); err != nil || len(gc.Removed) != 0 {
		t.Errorf("gc keeping it: %+v, %v", gc, err)
	}
	for i, want := range []bool{true, false} {
		d, err := c.Detach(ctx, api.DetachRequest{AttachmentKey: req.Key()})
		if err != nil || d.Existed != want {
			t.Errorf("detach %d: %+v, %v; want existed %v", i+1, d, err, want)
		}
	}
	if _, err := c.CheckAttachment(ctx, req); !api.IsNotFound(err) {
		t.Errorf("check after detach: %v, want not found", err)
	}
	if n := len(fa.Calls()); n != 10 {
		t.Errorf("fake agent served %d calls, want 10: %v", n, fa.Calls())
	}
}
