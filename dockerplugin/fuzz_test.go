package dockerplugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzCalls are the calls FuzzHandlers feeds bodies to.
var fuzzCalls = []string{
	"Plugin.Activate",
	"NetworkDriver.GetCapabilities",
	"NetworkDriver.CreateNetwork",
	"NetworkDriver.DeleteNetwork",
	"NetworkDriver.CreateEndpoint",
	"NetworkDriver.DeleteEndpoint",
	"NetworkDriver.EndpointOperInfo",
	"NetworkDriver.Join",
	"NetworkDriver.Leave",
	"NetworkDriver.ProgramExternalConnectivity",
	"NetworkDriver.RevokeExternalConnectivity",
	"NetworkDriver.DiscoverNew",
	"IpamDriver.GetCapabilities",
	"IpamDriver.GetDefaultAddressSpaces",
	"IpamDriver.RequestPool",
	"IpamDriver.ReleasePool",
	"IpamDriver.RequestAddress",
	"IpamDriver.ReleaseAddress",
}

// FuzzHandlers feeds arbitrary bytes to every call: no panic, an answer of
// 200, 400 or 500, always JSON, and errors always carry a message.
func FuzzHandlers(f *testing.F) {
	seeds := []string{
		"", "null", "{}", "[]", `{"NetworkID":7}`,
		`{"NetworkID":"n1","Options":{"com.docker.network.generic":{"vxmesh.network":"mesh"}},"IPv4Data":[{"Pool":"0.0.0.0/0","Gateway":"10.200.0.1/16"}]}`,
		`{"NetworkID":"n1","EndpointID":"e1234","Interface":{"Address":"10.200.5.10/16"}}`,
		`{"NetworkID":"n1","EndpointID":"e1234","SandboxKey":"/x"}`,
		`{"NetworkID":"n1","EndpointID":"e1234","Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":8080}]}}`,
		`{"PoolID":"vxmesh:mesh:v4","Address":"10.200.5.10","Options":{"RequestAddressType":"com.docker.network.gateway"}}`,
		`{"Pool":"10.200.0.0/16","SubPool":"10.200.5.0/24","Options":{"vxmesh.network":"mesh"},"V6":false}`,
	}
	for i, s := range seeds {
		for j := range fuzzCalls {
			if (i+j)%3 == 0 {
				f.Add(j, s)
			}
		}
	}
	f.Fuzz(func(t *testing.T, call int, body string) {
		if call < 0 {
			call = -call
		}
		path := "/" + fuzzCalls[call%len(fuzzCalls)]
		fb := newFake()
		fb.bound["n1"] = "mesh"
		rec := httptest.NewRecorder()
		New(fb, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		switch rec.Code {
		case http.StatusOK:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %q: answer %q is not JSON", path, body, rec.Body)
			}
		case http.StatusBadRequest, http.StatusInternalServerError:
			var e errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Err == "" {
				t.Fatalf("%s %q: error answer %q: %v", path, body, rec.Body, err)
			}
		default:
			t.Fatalf("%s %q: status %d", path, body, rec.Code)
		}
	})
}
