package api

import (
	"context"
	"net/http"
	"net/url"
)

// Attach attaches a runtime's container to a network (see attach.go) and
// returns the attachment once it is in force. The same request again
// returns the same attachment.
func (c *Client) Attach(ctx context.Context, req AttachRequest) (*Attachment, error) {
	var out Attachment
	return &out, c.do(ctx, http.MethodPost, "/v1/attachments", req, &out)
}

// CheckAttachment compares an attachment with the kernel: a 409
// StatusError names the drift, a 404 an attachment the agent does not
// know.
func (c *Client) CheckAttachment(ctx context.Context, req AttachRequest) (*Attachment, error) {
	var out Attachment
	return &out, c.do(ctx, http.MethodPost, "/v1/attachments/check", req, &out)
}

// Detach removes an attachment; it succeeds when there is none.
func (c *Client) Detach(ctx context.Context, req DetachRequest) (*Detached, error) {
	var out Detached
	return &out, c.do(ctx, http.MethodPost, "/v1/attachments/detach", req, &out)
}

// GCAttachments removes a runtime's attachments on a network that the
// runtime no longer knows.
func (c *Client) GCAttachments(ctx context.Context, req GCRequest) (*GCResult, error) {
	var out GCResult
	return &out, c.do(ctx, http.MethodPost, "/v1/attachments/gc", req, &out)
}

// Attachments lists the attachments, of one runtime when runtime is not "".
func (c *Client) Attachments(ctx context.Context, runtime string) ([]Attachment, error) {
	var out []Attachment
	p := "/v1/attachments"
	if runtime != "" {
		p += "?runtime=" + url.QueryEscape(runtime)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// AttachStatus tells whether the agent can attach to a network now.
func (c *Client) AttachStatus(ctx context.Context, network string) (*AttachStatus, error) {
	var out AttachStatus
	return &out, c.do(ctx, http.MethodGet, "/v1/attachments/status?network="+url.QueryEscape(network), nil, &out)
}
