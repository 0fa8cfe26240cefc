package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

// TestAttacherAddresses: the in-process Attacher's address reservations
// go through the network's pool and survive in the state.
func TestAttacherAddresses(t *testing.T) {
	a, _, _ := startStub(t, Options{})
	ctx := context.Background()
	if err := a.Sync(ctx); err != nil { // Run has loaded the state
		t.Fatal(err)
	}
	if nets := a.Networks(); len(nets) != 1 || nets[0].Name != "web" {
		t.Fatalf("Networks() = %+v, want web", nets)
	}
	first, err := a.ReserveAddress(ctx, "web", netip.Addr{}, false)
	if err != nil || !netip.MustParsePrefix("10.1.0.0/24").Contains(first) {
		t.Fatalf("reserve any: %v, %v", first, err)
	}
	second, err := a.ReserveAddress(ctx, "web", netip.Addr{}, false)
	if err != nil || second == first {
		t.Fatalf("reserve another: %v, %v (first %v)", second, err, first)
	}
	tests := []struct {
		name    string
		network string
		want    netip.Addr
		v6      bool
		errHas  string
	}{
		{"taken", "web", first, false, "reserve"},
		{"wrong family", "web", netip.Addr{}, true, "family"},
		{"unknown network", "nope", netip.Addr{}, false, "not found"},
	}
	for _, tt := range tests {
		if _, err := a.ReserveAddress(ctx, tt.network, tt.want, tt.v6); err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: err %v, want one mentioning %q", tt.name, err, tt.errHas)
		}
	}
	if err := a.ReleaseAddress(ctx, "web", first); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ReserveAddress(ctx, "web", first, false); err != nil || got != first {
		t.Errorf("reserve the released %v again: %v, %v", first, got, err)
	}
}

// TestAttachRefusals: what Attach and Detach answer without a kernel
// change: a runtime namespace that does not exist is an error of the
// attachment and undone; host placement is refused; a detach of nothing
// is no error.
func TestAttachRefusals(t *testing.T) {
	a, _, _ := startStub(t, Options{APITimeout: 5 * time.Second})
	ctx := context.Background()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	req := api.AttachRequest{Runtime: api.RuntimeCNI, ID: "c1", Name: "pod1", Network: "web", Netns: "/run/netns/vxt-missing-ns", IfName: "eth0"}
	if _, err := a.Attach(ctx, req); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("attach to a missing namespace: %v, want it named", err)
	}
	if got := a.Attachments(""); len(got) != 0 {
		t.Errorf("attachments after the failed attach: %+v", got)
	}
	bad := req
	bad.Network = "nope"
	if _, err := a.Attach(ctx, bad); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("attach to an unknown network: %v", err)
	}
	d, err := a.Detach(ctx, api.DetachRequest{AttachmentKey: req.Key()})
	if err != nil || d.Existed {
		t.Errorf("detach of nothing: %+v, %v", d, err)
	}
}
