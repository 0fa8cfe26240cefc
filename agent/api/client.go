package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// SocketPath picks the agent socket: flag when set, then $VXMESH_SOCKET,
// then DefaultSocket.
func SocketPath(flag string) string {
	if flag != "" {
		return flag
	}
	if s := os.Getenv(SocketEnv); s != "" {
		return s
	}
	return DefaultSocket
}

// ErrNotRunning means nothing answers on the socket.
var ErrNotRunning = errors.New("agent not running")

// StatusError is an error answer of the agent.
type StatusError struct {
	Code    int
	Message string
}

// Error returns the agent's message.
func (e *StatusError) Error() string { return e.Message }

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Client talks to one agent over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// Socket is the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vxmesh"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" && errors.Is(err, os.ErrPermission) {
			// The socket is 0600: an agent runs, but not for this user.
			return fmt.Errorf("talk to agent at %s: permission denied (the API socket is root's; run as root)", c.socket)
		}
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("%w at %s", ErrNotRunning, c.socket)
		}
		return fmt.Errorf("talk to agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read agent answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("agent answered %s", resp.Status)
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode agent answer: %w", err)
	}
	return nil
}

// Status returns the host's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Networks lists the networks.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	var out []Network
	return out, c.do(ctx, http.MethodGet, "/v1/networks", nil, &out)
}

// Endpoints lists the endpoints, of one network when network is not "".
func (c *Client) Endpoints(ctx context.Context, network string) ([]Endpoint, error) {
	var out []Endpoint
	p := "/v1/endpoints"
	if network != "" {
		p += "?network=" + url.QueryEscape(network)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Peers lists the cluster members as gossip sees them.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out []Peer
	return out, c.do(ctx, http.MethodGet, "/v1/peers", nil, &out)
}

// Containers lists the containers.
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	var out []Container
	return out, c.do(ctx, http.MethodGet, "/v1/containers", nil, &out)
}

// Container returns one container.
func (c *Client) Container(ctx context.Context, name string) (*Container, error) {
	var out Container
	return &out, c.do(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(name), nil, &out)
}

// Run attaches a container at run time and returns it once attached.
func (c *Client) Run(ctx context.Context, spec ContainerSpec) (*Container, error) {
	var out Container
	return &out, c.do(ctx, http.MethodPost, "/v1/containers", spec, &out)
}

// Remove detaches a run-time container.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/containers/"+url.PathEscape(name), nil, nil)
}

// Exec returns where a container lives, for `vxmesh exec`.
func (c *Client) Exec(ctx context.Context, name string) (*ExecInfo, error) {
	var out ExecInfo
	return &out, c.do(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(name)+"/exec", nil, &out)
}

// Ports returns a container's published ports.
func (c *Client) Ports(ctx context.Context, name string) (*Ports, error) {
	var out Ports
	return &out, c.do(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(name)+"/ports", nil, &out)
}
