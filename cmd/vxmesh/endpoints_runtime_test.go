package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
)

// TestPrintEndpointsRuntime: a RUNTIME column appears when a runtime
// attached an endpoint, with the container ID cut as docker ps does.
func TestPrintEndpointsRuntime(t *testing.T) {
	tests := []struct {
		name string
		eps  []api.Endpoint
		want []string // lines, trailing spaces trimmed
	}{
		{"none", []api.Endpoint{{Container: "a", Network: "web", Host: "h1", IP: "10.1.0.2"}}, []string{
			"CONTAINER  NETWORK  HOST  IP        MAC  VTEP  INTERFACE",
			"a          web      h1    10.1.0.2  -    -     -",
		}},
		{"cni", []api.Endpoint{
			{Container: "a", Network: "web", Host: "h1", IP: "10.1.0.2"},
			{Container: "web7", Network: "web", Host: "h1", IP: "10.1.0.3", Runtime: api.RuntimeCNI, RuntimeID: "0123456789abcdef0123"},
		}, []string{
			"CONTAINER  NETWORK  HOST  IP        MAC  VTEP  INTERFACE  RUNTIME",
			"a          web      h1    10.1.0.2  -    -     -          -",
			"web7       web      h1    10.1.0.3  -    -     -          cni:0123456789ab",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printEndpoints(&b, tt.eps)
			var got []string
			for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
				got = append(got, strings.TrimRight(l, " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
