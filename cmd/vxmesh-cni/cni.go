package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxmesh/vxmesh/agent/api"
)

// Plugin-specific CNI error codes (the spec leaves 100 and up to plugins).
const (
	// errConflict: the agent refused a name, address or host port another
	// container holds.
	errConflict uint = 100
	// errDrift: CHECK found the kernel no longer as ADD left it.
	errDrift uint = 101
)

// plugin runs the CNI commands; stdout takes the results.
type plugin struct {
	stdout io.Writer
}

func (p *plugin) funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.add, Del: p.del, Check: p.check, GC: p.gc, Status: p.status}
}

// call runs one request to the agent under the config's timeout.
func call[T any](c *netConf, f func(context.Context, *api.Client) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return f(ctx, api.NewClient(c.Socket))
}

func (p *plugin) add(args *skel.CmdArgs) error {
	c, req, err := request(args)
	if err != nil {
		return err
	}
	att, err := call(c, func(ctx context.Context, cl *api.Client) (*api.Attachment, error) { return cl.Attach(ctx, req) })
	if err != nil {
		return agentError(c, "attach "+req.Key().String()+" to network "+c.Network, err)
	}
	res, err := result(att, c.DNSSearch)
	if err != nil {
		return err
	}
	return printResult(p.stdout, res, c.CNIVersion)
}

func (p *plugin) check(args *skel.CmdArgs) error {
	c, req, err := request(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "check: no prevResult in the network config", "")
	}
	att, err := call(c, func(ctx context.Context, cl *api.Client) (*api.Attachment, error) {
		return cl.CheckAttachment(ctx, req)
	})
	if err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("check %s: the agent has no such attachment on network %q", req.Key(), c.Network), se.Message)
		}
		if errors.As(err, &se) && se.Code == http.StatusConflict {
			return types.NewError(errDrift, "check "+req.Key().String()+": "+se.Message, "")
		}
		return agentError(c, "check "+req.Key().String(), err)
	}
	prev, err := types100.NewResultFromResult(c.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "check: convert prevResult", err.Error())
	}
	if d := compareResult(prev, att); d != "" {
		return types.NewError(errDrift, "check "+req.Key().String()+": "+d, "")
	}
	return nil
}

func (p *plugin) del(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	req := api.DetachRequest{
		AttachmentKey: api.AttachmentKey{Runtime: api.RuntimeCNI, ID: args.ContainerID, IfName: args.IfName},
		Network:       c.Network,
	}
	_, err = call(c, func(ctx context.Context, cl *api.Client) (*api.Detached, error) { return cl.Detach(ctx, req) })
	if err != nil && !api.IsNotFound(err) {
		// DEL must succeed when the attachment is gone, but an agent that
		// does not answer may still hold it: the runtime retries.
		return agentError(c, "detach "+req.String(), err)
	}
	return nil
}

func (p *plugin) gc(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	req := api.GCRequest{Runtime: api.RuntimeCNI, Network: c.Network, Keep: []api.AttachmentKey{}}
	for _, a := range c.ValidAttachments {
		req.Keep = append(req.Keep, api.AttachmentKey{Runtime: api.RuntimeCNI, ID: a.ContainerID, IfName: a.IfName})
	}
	_, err = call(c, func(ctx context.Context, cl *api.Client) (*api.GCResult, error) { return cl.GCAttachments(ctx, req) })
	if err != nil {
		return agentError(c, "gc attachments on network "+c.Network, err)
	}
	return nil
}

func (p *plugin) status(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	st, err := call(c, func(ctx context.Context, cl *api.Client) (*api.AttachStatus, error) {
		return cl.AttachStatus(ctx, c.Network)
	})
	if err != nil {
		e := agentError(c, "status of network "+c.Network, err)
		if e.Code == types.ErrTryAgainLater {
			// STATUS has its own code for "cannot serve ADD now".
			e.Code = types.ErrPluginNotAvailable
		}
		return e
	}
	if !st.Ready {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %q not ready: %s", c.Network, st.Reason), "")
	}
	return nil
}

// request parses what ADD and CHECK share.
func request(args *skel.CmdArgs) (*netConf, api.AttachRequest, error) {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return nil, api.AttachRequest{}, err
	}
	a, err := parseArgs(args.Args)
	if err != nil {
		return nil, api.AttachRequest{}, err
	}
	req, err := attachRequest(c, args.ContainerID, args.Netns, args.IfName, a)
	return c, req, err
}

// agentError turns a failed agent request into a CNI error whose code
// tells the runtime what to do: 11 (try again later) when the agent is
// down or did not answer in time, 7 when it refused the request, 100 for
// a conflict, 999 for a kernel error it has undone.
func agentError(c *netConf, what string, err error) *types.Error {
	var se *api.StatusError
	switch {
	case errors.As(err, &se):
		switch se.Code {
		case http.StatusBadRequest, http.StatusNotFound:
			return types.NewError(types.ErrInvalidNetworkConfig, what+": "+se.Message, "")
		case http.StatusConflict:
			return types.NewError(errConflict, what+": "+se.Message, "")
		default:
			return types.NewError(types.ErrInternal, what+": agent: "+se.Message, "")
		}
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("%s: vxmesh agent at %s did not answer within %s", what, c.Socket, c.timeout), err.Error())
	case errors.Is(err, api.ErrNotRunning), isDialError(err):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("%s: vxmesh agent not reachable at %s (is it running?)", what, c.Socket), err.Error())
	default:
		return types.NewError(types.ErrTryAgainLater, what+": "+err.Error(), "")
	}
}

func isDialError(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && ne.Op == "dial"
}

// printResult writes the result in the config's spec version.
func printResult(w io.Writer, r *types100.Result, cniVersion string) error {
	out, err := r.GetAsVersion(cniVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "convert result to "+cniVersion, err.Error())
	}
	if err := out.PrintTo(w); err != nil {
		return types.NewError(types.ErrIOFailure, "print result", err.Error())
	}
	return nil
}
