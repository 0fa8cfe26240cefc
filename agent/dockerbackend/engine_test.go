package dockerbackend

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestEngineClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/containers/json":
			if r.URL.Query().Get("all") != "1" {
				http.Error(w, `{"message":"not all"}`, http.StatusBadRequest)
				return
			}
			// The name filter is a regexp of "/NAME" (the engine's form);
			// the engine answers every match, here a prefix match too.
			switch r.URL.Query().Get("filters") {
			case `{"name":["^/gone$"]}`:
				_, _ = w.Write([]byte(`[]`))
				return
			case `{"name":["^/db1$"]}`:
			default:
				http.Error(w, `{"message":"bad filter"}`, http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`[{"Id":"d00d","Names":["/db10"]},{"Id":"db1d000000000000000000000000000000000000000000000000000000000001","Names":["/db1"]}]`))
		case "/networks/" + netA:
			_, _ = w.Write([]byte(`{"Name":"mesh","Containers":{
				"c0ffee1111111111111111111111111111111111111111111111111111111111":{"Name":"web1","EndpointID":"` + ep1 + `"},
				"ep-` + ep2 + `":{"Name":"db1","EndpointID":"` + ep2 + `"},
				"ep-` + ep1 + `9":{"Name":"gone","EndpointID":"` + ep1 + `9"}}}`))
		default:
			http.Error(w, `{"message":"network nope not found"}`, http.StatusNotFound)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })

	c := NewEngineClient(sock)
	tests := []struct {
		network, endpoint string
		id, name, err     string
	}{
		{netA, ep1, "c0ffee1111111111111111111111111111111111111111111111111111111111", "web1", ""},
		// In Join the engine has not stored the sandbox yet: the ID comes
		// from the container list.
		{netA, ep2, "db1d000000000000000000000000000000000000000000000000000000000001", "db1", ""},
		{netA, ep1 + "9", "", "gone", `lists no container "gone"`},
		{netA, "e3", "", "", "lists no endpoint"},
		{"nope", ep1, "", "", "404 Not Found"},
	}
	for _, tt := range tests {
		id, name, err := c.Container(context.Background(), tt.network, tt.endpoint)
		if id != tt.id || name != tt.name || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Container(%.4s, %.4s) = %q, %q, %v; want %q, %q, %q", tt.network, tt.endpoint, id, name, err, tt.id, tt.name, tt.err)
		}
	}
}
