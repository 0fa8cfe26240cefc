package dockerbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// EngineClient reads container names from a Docker engine's API socket.
type EngineClient struct {
	socket string
	http   *http.Client
}

// NewEngineClient returns a client of the engine API on the unix socket
// path.
func NewEngineClient(path string) *EngineClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &EngineClient{socket: path, http: &http.Client{Transport: tr}}
}

// engineNetwork is the part of GET /networks/ID we read.
type engineNetwork struct {
	Containers map[string]struct {
		Name       string `json:"Name"`
		EndpointID string `json:"EndpointID"`
	} `json:"Containers"`
}

// Container implements Engine: the network's endpoint list names the
// container. The engine keys an endpoint whose sandbox it has not
// recorded yet "ep-ENDPOINTID"; its ID is then empty.
func (c *EngineClient) Container(ctx context.Context, dockerNetwork, endpointID string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/networks/"+url.PathEscape(dockerNetwork), nil)
	if err != nil {
		return "", "", fmt.Errorf("ask engine %s: %w", c.socket, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("ask engine %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", "", fmt.Errorf("ask engine %s for network %.12s: %s: %s", c.socket, dockerNetwork, resp.Status, strings.TrimSpace(string(msg)))
	}
	var n engineNetwork
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&n); err != nil {
		return "", "", fmt.Errorf("decode engine network %.12s: %w", dockerNetwork, err)
	}
	for key, ep := range n.Containers {
		if ep.EndpointID != endpointID {
			continue
		}
		if strings.HasPrefix(key, "ep-") {
			key = ""
		}
		return key, strings.TrimPrefix(ep.Name, "/"), nil
	}
	return "", "", fmt.Errorf("engine network %.12s lists no endpoint %.12s", dockerNetwork, endpointID)
}
