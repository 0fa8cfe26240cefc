package dockerbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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

// engineContainer is the part of an entry of GET /containers/json we read.
type engineContainer struct {
	ID    string   `json:"Id"`
	Names []string `json:"Names"`
}

// Container implements Engine: the network's endpoint list names the
// container. The engine keys an endpoint whose sandbox it has not
// recorded yet "ep-ENDPOINTID" — during Join it always is, as libnetwork
// stores the endpoint's sandbox only after the driver's Join returns — and
// the container's ID then comes from the container list, by name (the
// list reads the engine's lock-free view: inspecting the container itself
// would wait for the start that is calling Join).
func (c *EngineClient) Container(ctx context.Context, dockerNetwork, endpointID string) (string, string, error) {
	var n engineNetwork
	if err := c.get(ctx, "/networks/"+url.PathEscape(dockerNetwork), &n); err != nil {
		return "", "", fmt.Errorf("ask engine %s for network %.12s: %w", c.socket, dockerNetwork, err)
	}
	for key, ep := range n.Containers {
		if ep.EndpointID != endpointID {
			continue
		}
		name := strings.TrimPrefix(ep.Name, "/")
		if !strings.HasPrefix(key, "ep-") {
			return key, name, nil
		}
		id, err := c.containerID(ctx, name)
		return id, name, err
	}
	return "", "", fmt.Errorf("engine network %.12s lists no endpoint %.12s", dockerNetwork, endpointID)
}

// containerID finds a container's ID by its name in the container list.
func (c *EngineClient) containerID(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	filter, _ := json.Marshal(map[string][]string{"name": {"^/" + regexp.QuoteMeta(name) + "$"}})
	var list []engineContainer
	if err := c.get(ctx, "/containers/json?all=1&filters="+url.QueryEscape(string(filter)), &list); err != nil {
		return "", fmt.Errorf("ask engine %s for container %q: %w", c.socket, name, err)
	}
	for _, ct := range list {
		if slices.Contains(ct.Names, "/"+name) {
			return ct.ID, nil
		}
	}
	return "", fmt.Errorf("engine %s lists no container %q", c.socket, name)
}

// get decodes the engine's JSON answer to GET path into out.
func (c *EngineClient) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}
